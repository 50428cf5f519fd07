"""Named hardware configs: a TVM Target, the runtime settings that go with it, and a hardware descriptor.

Several configs share one physical host: they differ in the ISA the compiler may use (SSE2, AVX, AVX2,
AVX-512, AMX) and in the thread count, which gives genuinely different performance landscapes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import time
import tomllib
from typing import Any

import numpy as np

from xfer_jax.errors import UserError
from xfer_jax.hardware import HardwareDescriptor, peak_cpu_gflops


class PlatformError(UserError):
    """A platform that is unknown, malformed or not runnable here. The CLI turns it into one line, exit 2."""


@dataclasses.dataclass(frozen=True)
class Platform:
    name: str
    target: dict[str, Any]  # TVM Target as a dict, e.g. {"kind": "llvm", "mcpu": "core-avx2", "num-cores": 2}
    num_threads: int  # TVM_NUM_THREADS for the runner (CPU); 0 leaves the runtime default (GPU)
    descriptor: HardwareDescriptor
    required_cpu_flags: tuple[str, ...] = ()  # /proc/cpuinfo flags the generated code needs

    @property
    def device_type(self) -> str:
        return "cuda" if self.target["kind"] == "cuda" else "cpu"

    def tvm_target(self):
        from tvm.target import Target

        return Target(self.target)

    def runtime_env(self) -> dict[str, str]:
        return {"TVM_NUM_THREADS": str(self.num_threads)} if self.num_threads else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "num_threads": self.num_threads,
            "descriptor": self.descriptor.to_dict(),
            "required_cpu_flags": list(self.required_cpu_flags),
        }

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> "Platform":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(spec) - known
        if unknown:  # a misspelled key would otherwise be ignored silently (num_thread -> 0 threads)
            raise ValueError(f"unknown platform fields {sorted(unknown)}; known: {sorted(known)}")
        if not isinstance(spec.get("target"), dict) or spec["target"].get("kind") not in ("llvm", "cuda"):
            raise ValueError(f"target must be a table with kind 'llvm' or 'cuda', got {spec.get('target')!r}")
        if not isinstance(spec.get("num_threads", 0), int) or isinstance(spec.get("num_threads", 0), bool):
            raise ValueError(f"num_threads must be an integer, got {spec['num_threads']!r}")
        return cls(
            name=spec["name"],
            target=spec["target"],
            num_threads=int(spec.get("num_threads", 0)),
            descriptor=HardwareDescriptor.from_dict(spec["descriptor"]),
            required_cpu_flags=tuple(spec.get("required_cpu_flags", ())),
        )

    def missing_requirement(self) -> str | None:
        """Why this host cannot run code built for this platform, or None when it can."""
        if self.device_type == "cuda":
            import tvm

            return None if tvm.cuda().exist else "a CUDA GPU, and this host has none"
        missing = sorted(set(self.required_cpu_flags) - host_cpu_flags())
        if missing:
            return f"CPU flags {missing} that this host ({host_cpu_model()}) lacks"
        if self.num_threads > (os.cpu_count() or 1):
            return f"{self.num_threads} threads, and this host has {os.cpu_count()} cores"
        return None

    def check_runnable(self) -> None:
        reason = self.missing_requirement()
        if reason:
            raise PlatformError(f"platform {self.name!r} needs {reason}; runnable here: "
                                f"{', '.join(runnable_platform_names())}")


# --- the host -------------------------------------------------------------------------------------------


@functools.cache
def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def host_cpu_flags() -> set[str]:
    return set(_cpuinfo().get("flags", "").split())


def host_cpu_model() -> str:
    return _cpuinfo().get("model name", "unknown CPU")


def _cache_kib(level: int, kind: str) -> float:
    for index in sorted(pathlib.Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if int((index / "level").read_text()) == level and (index / "type").read_text().strip() in kind:
                size = (index / "size").read_text().strip()
                return float(size[:-1]) * (1024 if size.endswith("M") else 1) if size[-1] in "KM" else float(size)
        except (OSError, ValueError):
            continue
    return 0.0


def _clock_ghz() -> float:
    """The nominal clock: cpufreq's maximum where the kernel has one (the current "cpu MHz" moves with load)."""
    try:
        return round(int(pathlib.Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e6, 1)
    except (OSError, ValueError):
        pass
    try:
        return round(float(_cpuinfo().get("cpu MHz", "0")) / 1000.0, 1)
    except ValueError:
        return 0.0


def _measure_mem_bw_gbs() -> float:
    """Single-stream copy bandwidth, best of 5; cached per host so descriptors stay stable across runs."""
    key = hashlib.sha1((host_cpu_model() + str(sorted(host_cpu_flags()))).encode()).hexdigest()[:12]
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "xfer-jax"
    path = cache / f"host-{key}.json"
    if path.exists():
        return float(json.loads(path.read_text())["mem_bw_gbs"])
    src = np.ones(32 * 1024 * 1024 // 8)  # 32 MiB: well past any L3 here
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    bandwidth = round(2 * src.nbytes / best / 1e9, 1)  # read + write
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cpu": host_cpu_model(), "mem_bw_gbs": bandwidth}))
    return bandwidth


# ISA levels this project knows: (name, LLVM mcpu, vector bits, descriptor flags, /proc/cpuinfo flags needed)
_ISA_LEVELS = (
    ("sse2", "x86-64", 128, {}, ()),
    ("avx", "sandybridge", 256, {"avx": True}, ("avx",)),
    ("avx2", "core-avx2", 256, {"avx": True, "avx2": True, "fma": True}, ("avx", "avx2", "fma")),
    ("avx512", "skylake-avx512", 512, {"avx": True, "avx2": True, "fma": True, "avx512": True},
     ("avx", "avx2", "fma", "avx512f")),
    ("amx", "sapphirerapids", 512, {"avx": True, "avx2": True, "fma": True, "avx512": True, "amx": True},
     ("avx", "avx2", "fma", "avx512f", "amx_tile")),
)


def cpu_platform(name: str, mcpu: str, threads: int, vector_bits: int, isa: dict[str, bool],
                 required_flags: tuple[str, ...]) -> Platform:
    clock = _clock_ghz()
    descriptor = HardwareDescriptor(
        kind="cpu",
        model=host_cpu_model(),
        vector_bits=vector_bits,
        threads=threads,
        l1_kib=_cache_kib(1, "Data Unified"),
        l2_kib=_cache_kib(2, "Unified"),
        l3_kib=_cache_kib(3, "Unified"),
        clock_ghz=clock,
        peak_gflops=round(peak_cpu_gflops(clock, threads, vector_bits, isa.get("fma", False)), 1),
        mem_bw_gbs=_measure_mem_bw_gbs(),
        **isa,
    )
    target = {"kind": "llvm", "mcpu": mcpu, "num-cores": threads}
    return Platform(name, target, threads, descriptor, required_flags)


H100 = Platform(
    name="h100",
    target={"kind": "cuda", "arch": "sm_90", "max_threads_per_block": 1024, "max_shared_memory_per_block": 49152,
            "thread_warp_size": 32},
    num_threads=0,
    descriptor=HardwareDescriptor(
        kind="gpu", model="NVIDIA H100 80GB HBM3", l3_kib=51200, clock_ghz=1.98, peak_gflops=66900,
        mem_bw_gbs=3350, sm_count=132, shared_mem_kib=48, max_threads_per_block=1024, warp_size=32,
        compute_capability=9.0,
    ),
)


def _fp32_lanes_per_sm(compute_capability: float) -> int:
    """fp32 lanes per SM: 64 up to the A100 (8.0), 128 from Ampere's GA10x (8.6) on."""
    return 64 if compute_capability < 8.6 else 128


def _measure_gpu_bw_gbs(device) -> float:
    """Device-to-device copy bandwidth, best of 5 copies of 256 MiB, counting bytes read and written."""
    import tvm

    floats = 64 * 1024 * 1024
    src, dst = (tvm.runtime.empty((floats,), "float32", device) for _ in range(2))
    best = float("inf")
    for _ in range(5):
        device.sync()
        start = time.perf_counter()
        src.copyto(dst)
        device.sync()
        best = min(best, time.perf_counter() - start)
    return round(2 * 4 * floats / best / 1e9, 1)


def local_gpu_platform() -> Platform:
    """This host's first CUDA GPU, described from what the driver reports: `cuda@nvidia-h100-80gb-hbm3`."""
    import tvm

    device = tvm.cuda(0)
    if not device.exist:
        raise PlatformError(f"platform 'cuda' describes this host's GPU, and it has none; runnable here: "
                            f"{', '.join(runnable_platform_names())}")
    model = str(device.device_name)
    capability = float(device.compute_version)
    clock = round(device.max_clock_rate / 1e6, 2)  # kHz
    descriptor = HardwareDescriptor(
        kind="gpu", model=model, l3_kib=round(device.l2_cache_size_bytes / 1024), clock_ghz=clock,
        peak_gflops=round(2 * clock * device.multi_processor_count * _fp32_lanes_per_sm(capability)),
        mem_bw_gbs=_measure_gpu_bw_gbs(device), sm_count=device.multi_processor_count,
        shared_mem_kib=device.max_shared_memory_per_block / 1024, max_threads_per_block=device.max_threads_per_block,
        warp_size=device.warp_size, compute_capability=capability)
    arch = "sm_" + str(device.compute_version).replace(".", "")
    target = {"kind": "cuda", "arch": arch, "max_threads_per_block": device.max_threads_per_block,
              "max_shared_memory_per_block": device.max_shared_memory_per_block,
              "thread_warp_size": device.warp_size}
    slug = "-".join("".join(ch if ch.isalnum() else " " for ch in model.lower()).split())
    return Platform(f"cuda@{slug}", target, 0, descriptor)


def builtin_platform_names() -> list[str]:
    return [f"{isa[0]}-{t}t" for isa in _ISA_LEVELS for t in (1, 2)] + [H100.name]


def runnable_platform_names() -> list[str]:
    return [name for name in builtin_platform_names() if get_platform(name).missing_requirement() is None]


def auto_platform() -> Platform:
    """The local host at its best ISA level and all of its cores, labelled with the host (`avx2-2t@znver3`):
    the same ISA x threads on another machine is other hardware."""
    flags = host_cpu_flags()
    level = [lvl for lvl in _ISA_LEVELS if set(lvl[4]) <= flags][-1]
    threads = os.cpu_count() or 1
    return cpu_platform(f"{level[0]}-{threads}t@{host_cpu_name()}", level[1], threads, level[2], level[3], level[4])


def load_platform_file(path: pathlib.Path) -> Platform:
    """A user's machine from JSON or TOML: name, target, num_threads, descriptor (see HardwareDescriptor)."""
    try:
        text = path.read_text()
        spec = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        return Platform.from_dict(spec)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PlatformError(f"cannot read platform file {path}: {err}") from None


def host_cpu_name() -> str:
    """LLVM's name for the host CPU (e.g. znver5, sapphirerapids): a short, stable label for this machine."""
    from tvm.target import codegen

    return str(codegen.llvm_get_system_cpu())


def get_platform(name: str) -> Platform:
    """A built-in name (see builtin_platform_names), 'auto' (this CPU), 'cuda' (this host's GPU), or the path
    of a .json/.toml platform file.

    A built-in name may carry a host label, `avx2-2t@znver5`, which names this ISA x threads config on one
    particular machine: a dataset measured on several hosts keeps their configs apart. `@host` stands for
    this host's LLVM CPU name.
    """
    base, at, label = name.partition("@")
    if at and not name.endswith((".json", ".toml")):
        if not label or base not in builtin_platform_names() or base == H100.name:
            raise PlatformError(f"bad platform {name!r}: a host label follows a built-in CPU config, "
                                "e.g. avx2-2t@host or avx2-2t@znver5")
        return dataclasses.replace(get_platform(base), name=f"{base}@{host_cpu_name() if label == 'host' else label}")
    if name == "auto":
        return auto_platform()
    if name == "cuda":
        return local_gpu_platform()
    if name == H100.name:
        return H100
    if name.endswith((".json", ".toml")):
        return load_platform_file(pathlib.Path(name))
    for level in _ISA_LEVELS:
        for threads in (1, 2):
            if name == f"{level[0]}-{threads}t":
                return cpu_platform(name, level[1], threads, level[2], level[3], level[4])
    raise PlatformError(f"unknown platform {name!r}; choose from {', '.join(builtin_platform_names())}, "
                        "auto, cuda (this host's GPU), or a .json/.toml platform file")
