"""Hardware descriptors and the fixed-length vector the model sees.

The vector is what lets the model score programs for hardware it never trained on, so every entry is a
physical quantity (or a flag) that a user can write down for a new machine, or time on it in a second (the
reference matmul). Pure Python: no TVM needed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class HardwareDescriptor:
    """What a compiled program can use on one hardware config. GPU fields stay 0 on a CPU and vice versa."""

    kind: str  # "cpu" or "gpu"
    model: str = ""  # free text, e.g. "AMD EPYC"; not part of the vector
    vector_bits: int = 0  # SIMD width the generated code may use (128 SSE, 256 AVX/AVX2, 512 AVX-512)
    fma: bool = False  # fused multiply-add available to the generated code
    avx: bool = False
    avx2: bool = False
    avx512: bool = False
    amx: bool = False
    threads: int = 1  # worker threads the runtime uses (CPU); 1 on a GPU, where it means nothing
    l1_kib: float = 0.0  # per-core L1 data cache
    l2_kib: float = 0.0  # per-core L2
    l3_kib: float = 0.0  # shared last-level cache (GPU: L2)
    clock_ghz: float = 0.0
    peak_gflops: float = 0.0  # fp32, for the threads used
    mem_bw_gbs: float = 0.0  # main-memory bandwidth (GPU: HBM)
    sm_count: int = 0
    shared_mem_kib: float = 0.0  # per block
    max_threads_per_block: int = 0
    warp_size: int = 0
    compute_capability: float = 0.0  # e.g. 9.0 for sm_90
    # measured, not written down: the fixed 256x256x256 fp32 matmul that collect and tune time on this config
    # (its ISA and threads; bridge.measure.LoadGuard), in GFLOP/s; 0 when it was never timed
    reference_gflops: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> "HardwareDescriptor":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"unknown hardware descriptor fields: {sorted(unknown)}; known: {sorted(known)}")
        if fields.get("kind") not in ("cpu", "gpu"):
            raise ValueError(f"hardware descriptor 'kind' must be 'cpu' or 'gpu', got {fields.get('kind')!r}")
        for field in dataclasses.fields(cls):
            if field.name in fields and not _fits(fields[field.name], field.type):
                raise ValueError(f"hardware descriptor field {field.name!r} must be of type {field.type}, "
                                 f"got {fields[field.name]!r}")
        return cls(**fields)


def _fits(value: Any, kind: str) -> bool:
    """Whether a JSON/TOML value may fill a descriptor field annotated `kind` (an int is a fine float)."""
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, str)


def _log2p(x: float) -> float:
    return math.log2(1.0 + max(float(x), 0.0))


# (name, how the descriptor becomes a number). Log scales keep machines of very different size comparable.
HARDWARE_FEATURES: tuple[tuple[str, Any], ...] = (
    ("is_gpu", lambda d: float(d.kind == "gpu")),
    ("vector_bits/512", lambda d: d.vector_bits / 512.0),
    ("fma", lambda d: float(d.fma)),
    ("avx", lambda d: float(d.avx)),
    ("avx2", lambda d: float(d.avx2)),
    ("avx512", lambda d: float(d.avx512)),
    ("amx", lambda d: float(d.amx)),
    ("log2(1+threads)", lambda d: _log2p(d.threads)),
    ("log2(1+l1_kib)", lambda d: _log2p(d.l1_kib)),
    ("log2(1+l2_kib)", lambda d: _log2p(d.l2_kib)),
    ("log2(1+l3_kib)", lambda d: _log2p(d.l3_kib)),
    ("clock_ghz", lambda d: float(d.clock_ghz)),
    ("log2(1+peak_gflops)", lambda d: _log2p(d.peak_gflops)),
    ("log2(1+mem_bw_gbs)", lambda d: _log2p(d.mem_bw_gbs)),
    ("log2(1+sm_count)", lambda d: _log2p(d.sm_count)),
    ("log2(1+shared_mem_kib)", lambda d: _log2p(d.shared_mem_kib)),
    ("log2(1+max_threads_per_block)", lambda d: _log2p(d.max_threads_per_block)),
    ("warp_size/32", lambda d: d.warp_size / 32.0),
    ("compute_capability/10", lambda d: d.compute_capability / 10.0),
    # appended last: a checkpoint trained before it reads the entries it knows (Normalizer.apply)
    ("log2(1+reference_gflops)", lambda d: _log2p(d.reference_gflops)),
)
HARDWARE_FEATURE_NAMES = tuple(name for name, _ in HARDWARE_FEATURES)
NUM_HARDWARE_FEATURES = len(HARDWARE_FEATURES)


def hardware_vector(descriptor: HardwareDescriptor) -> np.ndarray:
    """The descriptor as a float32 vector of length NUM_HARDWARE_FEATURES, in HARDWARE_FEATURE_NAMES order."""
    return np.array([fn(descriptor) for _, fn in HARDWARE_FEATURES], dtype=np.float32)


REFERENCE_MATMUL_SIZE = 256  # the reference program: an n x n x n float32 matmul (bridge.measure)


def reference_gflops(seconds: float) -> float:
    """The reference matmul's speed from its best time."""
    return round(2 * REFERENCE_MATMUL_SIZE**3 / seconds / 1e9, 3)


def peak_cpu_gflops(clock_ghz: float, threads: int, vector_bits: int, fma: bool) -> float:
    """fp32 peak, assuming two vector pipes per core (true of every x86 core since Haswell and Zen)."""
    lanes = max(vector_bits, 32) // 32
    return clock_ghz * threads * lanes * (2 if fma else 1) * 2


# Where PerStoreFeature (TVM 0.27, 164 per store, already log2(1+x)) keeps what the relative features compare
PARALLEL_PROD, VECTOR_LENGTH, ALLOCATION_BYTES = 39, 18, 157
BUFFERS, BUFFER_BASE, BUFFER_WIDTH = 5, 57, 18  # per accessed buffer: 18 features from column 57
UNIQUE_BYTES, REUSE_DISTANCE_BYTES = 4, 11  # offsets inside one buffer's 18
CACHES = ("l1", "l2", "l3")
RELATIVE_FEATURE_NAMES = (
    "parallel_prod/threads", "vector_length/lanes",
    *(f"buffer{b}_{what}" for b in range(BUFFERS)
      for what in (*(f"reuse_distance_bytes/{c}" for c in CACHES), "unique_bytes/l2")),
    *(f"allocation_bytes/{c}" for c in CACHES[:2]),
)


def relative_store_features(features, hardware, xp=np):
    """[..., len(RELATIVE_FEATURE_NAMES)]: log2 ratios of a store's parallel work, vector length and memory
    footprints to this machine's threads, vector lanes and cache sizes. features [..., 164] and hardware
    [..., NUM_HARDWARE_FEATURES] (raw: log2 sizes) share their leading axes, or broadcast. "Does this tile's reuse
    fit in L2" means the same on every host; a model sees it directly instead of learning to subtract two inputs."""
    entry = lambda name: hardware[..., HARDWARE_FEATURE_NAMES.index(name)]  # noqa: E731
    caches = [entry(f"log2(1+{c}_kib)") + 10.0 for c in CACHES]  # KiB -> bytes, as the program's log2 bytes
    lanes = xp.log2(1.0 + 16.0 * xp.maximum(entry("vector_bits/512"), 0.0))  # 32-bit lanes
    columns = [features[..., PARALLEL_PROD] - entry("log2(1+threads)"), features[..., VECTOR_LENGTH] - lanes]
    for b in range(BUFFERS):
        base = BUFFER_BASE + b * BUFFER_WIDTH
        columns += [features[..., base + REUSE_DISTANCE_BYTES] - cache for cache in caches]
        columns.append(features[..., base + UNIQUE_BYTES] - caches[1])
    columns += [features[..., ALLOCATION_BYTES] - cache for cache in caches[:2]]
    return xp.stack(columns, axis=-1)
