"""The dataset: the one contract between `bridge` (which writes it) and the model code (which reads it).

On disk a dataset is a folder of self-describing shards `shard-*.npz`, each written once and never changed;
new measurements become new shards. No pickles: tables travel as UTF-8 JSON inside uint8 arrays and are
loaded with `allow_pickle=False`.

In memory, `Dataset` holds padded arrays (N programs, S stores, F = 164 per-store features):
    features  [N, S, F] float32   TVM PerStoreFeature rows, zero-padded
    mask      [N, S]    bool      True where a store row is real
    workload  [N, W]    float32   task features (WORKLOAD_FEATURE_NAMES)
    hardware  [N, H]    float32   hardware vector of the program's platform (xfer_jax.hardware)
    platform  [N]       int32     index into `platforms`
    task      [N]       int32     index into `tasks` (a task is a workload hash; shared by platforms)
    group     [N]       int32     one id per (task, platform): ranking happens inside a group
    latency   [N]       float32   mean seconds; +inf for a failed build or run
    latency_std [N]     float32   spread of the repeats
    label     [N]       float32   min latency in the group / latency, in (0, 1]; 0 for failures
    phase     [N]       int8      0 random sample, 1 guided search, -1 unknown
    trace_ids    [N, T]    int8     schedule-trace tokens (xfer_jax.trace); T = 0 without trace files
    trace_values [N, T, V] float32

A shard's trace tokens live beside it in `trace-<number>.npz`, derived from the same database lines (featurize
writes them, also for shards written before traces were read).

`measured_hardware.jsonl` holds what was timed on each platform (the reference matmul of every collection), one
appended line per measurement; a platform's descriptor gets its best timing when the dataset loads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import zipfile
import zlib
from typing import Any

import numpy as np

from .errors import UserError
from .hardware import NUM_HARDWARE_FEATURES, HardwareDescriptor, hardware_vector
from .trace import MAX_TOKENS, TOKEN_VALUES

SCHEMA_VERSION = 1
MEASURED_HARDWARE_FILE = "measured_hardware.jsonl"
NUM_STORE_FEATURES = 164
# MetaSchedule's 8 workload flags, then ours (log scales keep tiny and huge tasks comparable)
WORKLOAD_FEATURE_NAMES = (
    *(f"ms_workload_{i}" for i in range(8)),
    "log2(1+flops)", "log2(1+input_bytes)", "log2(1+output_bytes)", "num_inputs",
    "op_conv", "op_matmul", "op_pool", "op_softmax", "op_norm", "op_attention", "op_elementwise", "op_reduce",
)
NUM_WORKLOAD_FEATURES = len(WORKLOAD_FEATURE_NAMES)
PHASES = {"random": 0, "search": 1}


class DatasetError(UserError):
    """A dataset that is missing, of another schema, or malformed."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    features: np.ndarray
    mask: np.ndarray
    workload: np.ndarray
    hardware: np.ndarray
    platform: np.ndarray
    task: np.ndarray
    group: np.ndarray
    latency: np.ndarray
    latency_std: np.ndarray
    label: np.ndarray
    phase: np.ndarray
    trace_ids: np.ndarray
    trace_values: np.ndarray
    platforms: tuple[dict, ...]  # {"name", "descriptor", "vector"}
    tasks: tuple[dict, ...]  # {"hash", "name", "flops"}
    networks: dict[str, dict[str, dict[str, float]]]  # network -> platform -> task hash -> weight
    provenance: dict[str, Any]

    def __len__(self) -> int:
        return len(self.latency)

    @property
    def failed(self) -> np.ndarray:
        return ~np.isfinite(self.latency)

    @property
    def has_traces(self) -> bool:
        return self.trace_ids.shape[1] > 0

    @property
    def platform_names(self) -> list[str]:
        return [p["name"] for p in self.platforms]

    def subset(self, index: np.ndarray) -> "Dataset":
        """Programs at `index` (bool mask or int indices), with labels renormalised within the subset."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        arrays = {f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)
                  if isinstance(getattr(self, f.name), np.ndarray)}
        arrays["label"] = group_labels(arrays["latency"], arrays["group"])
        tables = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if not isinstance(getattr(self, f.name), np.ndarray)}
        return Dataset(**arrays, **tables)

    def network_weights(self, network: str, platform: str) -> dict[int, float]:
        """task index -> weight for one network on one platform."""
        by_hash = {t["hash"]: i for i, t in enumerate(self.tasks)}
        return {by_hash[h]: w for h, w in self.networks.get(network, {}).get(platform, {}).items() if h in by_hash}

    def task_networks(self) -> dict[int, set[str]]:
        """task index -> every network it belongs to (on any platform)."""
        by_hash = {t["hash"]: i for i, t in enumerate(self.tasks)}
        members: dict[int, set[str]] = {}
        for network, per_platform in self.networks.items():
            for weights in per_platform.values():
                for h in weights:
                    if h in by_hash:
                        members.setdefault(by_hash[h], set()).add(network)
        return members


def store_bucket(stores: int, max_stores: int) -> int:
    """Store slots a program with `stores` stores is padded to: a power of two, at least 4, at most
    `max_stores`. Batches padded per bucket compile once per bucket instead of padding every program to the
    dataset's maximum (17 here, while nearly all programs have 1-3 stores)."""
    return min(max_stores, max(4, 1 << max(int(stores) - 1, 0).bit_length()))


def group_labels(latency: np.ndarray, group: np.ndarray) -> np.ndarray:
    """min latency of the group / latency; failures (inf) get 0."""
    finite = np.isfinite(latency)
    best = np.full(group.max(initial=-1) + 1, np.inf)
    np.minimum.at(best, group[finite], latency[finite])
    label = np.where(finite, best[group] / np.where(finite, latency, 1.0), 0.0)
    return label.astype(np.float32)


# --- shards ---------------------------------------------------------------------------------------------------


def _json_array(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)


def _from_json_array(array: np.ndarray) -> Any:
    return json.loads(array.tobytes().decode())


def write_shard(path: pathlib.Path, *, store_rows: np.ndarray, store_count: np.ndarray, workload: np.ndarray,
                latency: np.ndarray, latency_std: np.ndarray, phase: np.ndarray, record: np.ndarray,
                platform: dict, task_hashes: list[str], tables: dict) -> None:
    """One shard: programs of one platform; `task_hashes[i]` names program i's task.

    `tables` holds "tasks" ({hash: {"name", "flops"}}), "networks" ({network: {hash: weight}}) and "source".
    """
    if store_rows.shape[1] != NUM_STORE_FEATURES or workload.shape[1] != NUM_WORKLOAD_FEATURES:
        raise ValueError(f"shard {path}: features {store_rows.shape}, workload {workload.shape}")
    if path.exists():
        raise DatasetError(f"{path} exists; shards are written once and never replaced")
    meta = {"schema_version": SCHEMA_VERSION, "platform": platform, "task_hashes": task_hashes, **tables}
    temporary = path.with_suffix(".tmp.npz")
    np.savez_compressed(temporary, store_rows=store_rows.astype(np.float32), store_count=store_count.astype(np.int32),
                        workload=workload.astype(np.float32), latency=latency.astype(np.float32),
                        latency_std=latency_std.astype(np.float32), phase=phase.astype(np.int8),
                        record=record.astype(np.int64), meta=_json_array(meta))
    temporary.replace(path)


SHARD_ARRAYS = ("store_rows", "store_count", "workload", "latency", "latency_std", "phase", "record", "meta")


def read_shard(path: pathlib.Path, arrays: tuple[str, ...] = SHARD_ARRAYS) -> dict:
    """The shard's arrays named (meta always) with its meta decoded and checked; a damaged file is one
    DatasetError."""
    try:
        with np.load(path, allow_pickle=False) as shard:
            part = {k: shard[k] for k in {*arrays, "meta"}}
        part["meta"] = _from_json_array(part["meta"])
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, zipfile.BadZipFile, zlib.error) as err:
        reason = f"array {err} is missing" if isinstance(err, KeyError) else type(err).__name__
        raise DatasetError(f"{path} is not a valid dataset shard ({reason}); move it away or featurize "
                           "its collection again") from None
    part["meta"] = _check_meta(path, part["meta"])
    return part


def trace_path(shard: pathlib.Path) -> pathlib.Path:
    return shard.with_name(shard.name.replace("shard-", "trace-", 1))


def write_traces(shard: pathlib.Path, ids: np.ndarray, values: np.ndarray) -> None:
    """The trace tokens of `shard`'s programs, in its order; written once, beside it."""
    path = trace_path(shard)
    if path.exists():
        raise DatasetError(f"{path} exists; trace files are written once and never replaced")
    temporary = path.with_suffix(".tmp.npz")
    np.savez_compressed(temporary, ids=ids.astype(np.int8), values=values.astype(np.float16))
    temporary.replace(path)


def _read_traces(shard: pathlib.Path, programs: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The shard's trace tokens, or None when it has no trace file (or one that does not match it)."""
    path = trace_path(shard)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as traces:
            ids, values = traces["ids"], traces["values"].astype(np.float32)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None
    if ids.shape != (programs, MAX_TOKENS) or values.shape != (programs, MAX_TOKENS, TOKEN_VALUES):
        return None
    return ids, values


def _check_meta(path: pathlib.Path, meta: dict) -> dict:
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(f"{path} has dataset schema {meta.get('schema_version')}, this xfer-jax reads "
                           f"{SCHEMA_VERSION}; featurize the databases again")
    return meta


def shard_files(root: pathlib.Path) -> list[pathlib.Path]:
    """The finished shards under `root` (a write killed midway leaves a shard-*.tmp.npz, which is not one)."""
    return sorted(p for p in pathlib.Path(root).glob("**/shard-*.npz") if not p.name.endswith(".tmp.npz"))


def shard_paths(root: pathlib.Path) -> list[pathlib.Path]:
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DatasetError(f"no dataset at {root} (expected a folder of shard-*.npz)")
    paths = shard_files(root)
    if not paths:
        raise DatasetError(f"{root} holds no shard-*.npz files; run `xfer-jax featurize` first")
    return paths


def read_measured_hardware(root: str | pathlib.Path) -> list[dict]:
    """Every measurement line under `root` ({"platform", "collection", "reference_gflops"}); a torn line, or a
    value that is not a finite positive number, is skipped."""
    lines = []
    for path in sorted(pathlib.Path(root).glob(f"**/{MEASURED_HARDWARE_FILE}")):
        for text in path.read_text(errors="replace").splitlines():
            try:
                value = json.loads(text)
                line = {"platform": str(value["platform"]), "collection": str(value["collection"]),
                        "reference_gflops": float(value["reference_gflops"])}
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if math.isfinite(line["reference_gflops"]) and line["reference_gflops"] > 0:
                lines.append(line)
    return lines


def append_measured_hardware(root: str | pathlib.Path, lines: list[dict]) -> None:
    if not lines:
        return
    path = pathlib.Path(root) / MEASURED_HARDWARE_FILE
    torn = path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n")  # a killed writer
    with open(path, "a") as f:
        f.write("\n" * torn + "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))


def _with_measurements(platform: dict, measured: list[dict]) -> dict:
    """The platform with its best timed reference in the descriptor, and the vector computed from that
    descriptor (shards written before a hardware feature existed get it this way)."""
    timed = [m["reference_gflops"] for m in measured if m["platform"] == platform["name"]]
    descriptor = dict(platform["descriptor"])
    descriptor["reference_gflops"] = max([descriptor.get("reference_gflops", 0.0), *timed])
    try:
        vector = hardware_vector(HardwareDescriptor.from_dict(descriptor))
    except ValueError as err:
        raise DatasetError(f"platform {platform['name']} in the dataset's shards: {err}") from None
    return {**platform, "descriptor": descriptor, "vector": vector.tolist()}


def load(root: str | pathlib.Path, max_stores: int | None = None) -> Dataset:
    """Read every shard under `root` into one padded Dataset (stores padded to the largest, or max_stores)."""
    root = pathlib.Path(root)
    parts = []
    for path in shard_paths(root):
        part = read_shard(path)
        if part["store_rows"].shape[1:] != (NUM_STORE_FEATURES,):
            raise DatasetError(f"{path}: store features have {part['store_rows'].shape[1:]} columns, "
                               f"expected {NUM_STORE_FEATURES}")
        part["traces"] = _read_traces(path, len(part["latency"]))
        parts.append(part)
    provenance = {"root": str(root), "shards": len(parts)}
    derived = [part["meta"]["derived_from"] for part in parts if "derived_from" in part["meta"]]
    if derived:
        provenance["derived_from"] = {k: v for k, v in derived[0].items() if k != "shard"}
    return _assemble(parts, max_stores, provenance, read_measured_hardware(root))


def write_subset(root: str | pathlib.Path, keep: np.ndarray, out: str | pathlib.Path, provenance: dict) -> int:
    """Write the programs of `root` at `keep` (indices in `load(root)` order) as a new dataset at `out`.

    Shards keep their tables; each records `provenance` under "derived_from". Returns the programs written.
    A dataset is never rewritten in place, so `out` must not hold shards yet.
    """
    root, out = pathlib.Path(root), pathlib.Path(out)
    if out.resolve().is_relative_to(root.resolve()):  # load reads subfolders: the source would grow
        raise DatasetError(f"--out {out} lies inside the source dataset {root}; choose a folder outside it")
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is a file; choose a new folder")
    if out.exists() and any(out.glob("**/shard-*.npz")):
        raise DatasetError(f"{out} already holds a dataset; choose a new --out (datasets are never rewritten)")
    out.mkdir(parents=True, exist_ok=True)
    offset, written = 0, 0
    for number, path in enumerate(shard_paths(pathlib.Path(root))):
        part = read_shard(path)
        meta = part.pop("meta")
        n = len(part["latency"])
        chosen = np.isin(np.arange(offset, offset + n), keep)
        offset += n
        if not chosen.any():
            continue
        starts = np.concatenate([[0], np.cumsum(part["store_count"])])
        rows = np.concatenate([part["store_rows"][starts[i]:starts[i + 1]] for i in np.flatnonzero(chosen)])
        tables = {k: v for k, v in meta.items() if k not in ("schema_version", "platform", "task_hashes")}
        tables["derived_from"] = {**provenance, "shard": str(path.relative_to(root))}
        write_shard(out / f"shard-{number:05d}.npz", store_rows=rows, store_count=part["store_count"][chosen],
                    workload=part["workload"][chosen], latency=part["latency"][chosen],
                    latency_std=part["latency_std"][chosen], phase=part["phase"][chosen],
                    record=part["record"][chosen], platform=meta["platform"],
                    task_hashes=[h for h, c in zip(meta["task_hashes"], chosen) if c], tables=tables)
        traces = _read_traces(path, n)
        if traces is not None:
            write_traces(out / f"shard-{number:05d}.npz", traces[0][chosen], traces[1][chosen])
        written += int(chosen.sum())
    append_measured_hardware(out, read_measured_hardware(root))
    return written


def _assemble(parts: list[dict], max_stores: int | None, provenance: dict, measured: list[dict]) -> Dataset:
    platform_index: dict[str, int] = {}
    platforms: list[dict] = []
    task_index: dict[str, int] = {}
    tasks: list[dict] = []
    networks: dict[str, dict[str, dict[str, float]]] = {}
    columns: dict[str, list] = {k: [] for k in ("workload", "latency", "latency_std", "phase", "platform", "task")}
    rows, counts = [], []
    for part in parts:
        meta = part["meta"]
        name = meta["platform"]["name"]
        if name not in platform_index:
            platform_index[name] = len(platforms)
            platforms.append(_with_measurements(meta["platform"], measured))
        for h, info in meta["tasks"].items():
            if h not in task_index:
                task_index[h] = len(tasks)
                tasks.append({"hash": h, **info})
        for network, weights in meta["networks"].items():
            networks.setdefault(network, {}).setdefault(name, {}).update(weights)
        n = len(part["latency"])
        columns["platform"].append(np.full(n, platform_index[name], np.int32))
        columns["task"].append(np.array([task_index[h] for h in meta["task_hashes"]], np.int32))
        for key in ("workload", "latency", "latency_std", "phase"):
            columns[key].append(part[key])
        rows.append(part["store_rows"])
        counts.append(part["store_count"])
    store_count = np.concatenate(counts)
    n_programs = len(store_count)
    stores = int(max_stores or max(int(store_count.max(initial=1)), 1))
    features = np.zeros((n_programs, stores, NUM_STORE_FEATURES), np.float32)
    mask = np.zeros((n_programs, stores), bool)
    all_rows = np.concatenate(rows) if rows else np.zeros((0, NUM_STORE_FEATURES), np.float32)
    offsets = np.concatenate([[0], np.cumsum(store_count)])
    for i in range(n_programs):  # ~1 µs each; datasets here are 10^4-10^5 programs
        take = min(store_count[i], stores)
        features[i, :take] = all_rows[offsets[i]: offsets[i] + take]
        mask[i, :take] = True
    data = {k: np.concatenate(v) for k, v in columns.items()}
    traced = bool(parts) and all(part.get("traces") is not None for part in parts)  # all or nothing
    tokens = MAX_TOKENS if traced else 0
    trace_ids = np.concatenate([p["traces"][0] for p in parts]) if traced else np.zeros((n_programs, 0), np.int8)
    trace_values = (np.concatenate([p["traces"][1] for p in parts]) if traced
                    else np.zeros((n_programs, tokens, TOKEN_VALUES), np.float32))
    latency = data["latency"].astype(np.float32)
    group = (data["task"].astype(np.int64) * max(len(platforms), 1) + data["platform"])
    _, group = np.unique(group, return_inverse=True)
    group = group.astype(np.int32)
    vectors = np.stack([np.asarray(p["vector"], np.float32) for p in platforms]) if platforms else \
        np.zeros((0, NUM_HARDWARE_FEATURES), np.float32)
    return Dataset(
        features=features, mask=mask, workload=data["workload"].astype(np.float32),
        hardware=vectors[data["platform"]], platform=data["platform"], task=data["task"], group=group,
        latency=latency, latency_std=data["latency_std"].astype(np.float32),
        label=group_labels(latency, group), phase=data["phase"].astype(np.int8),
        trace_ids=trace_ids, trace_values=trace_values,
        platforms=tuple(platforms), tasks=tuple(tasks), networks=networks, provenance=provenance,
    )


def distinct_programs(arrays: tuple[np.ndarray, ...], members: np.ndarray) -> int:
    """How many different programs `members` holds, read from per-program `arrays` (store rows, store mask, trace
    tokens): one schedule measured again counts once."""
    rows = np.concatenate([x[members].reshape(len(members), -1).astype(np.float32) for x in arrays], axis=1)
    rows = np.ascontiguousarray(rows + np.float32(0.0))  # -0.0 becomes 0.0, as a comparison of values has it
    # each row as one opaque value: 35x faster than np.unique(rows, axis=0), which sorts column by column
    return len(np.unique(rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize)))))


def summary(data: Dataset) -> dict:
    """What `xfer-jax info --json` prints."""
    from .splits import hosts  # splits reads datasets

    ok = ~data.failed
    names = data.platform_names
    per_platform = {n: int(np.sum(ok & (data.platform == i))) for i, n in enumerate(names)}
    groups_ok = np.unique(data.group[ok])
    program_arrays = (data.features, data.mask, data.trace_ids, data.trace_values)
    distinct = [distinct_programs(program_arrays, np.flatnonzero(ok & (data.group == g))) for g in groups_ok]
    per_network = {}
    for network in sorted(data.networks):
        tasks = {t for p in names for t in data.network_weights(network, p)}
        per_network[network] = int(np.sum(ok & np.isin(data.task, list(tasks))))
    return {
        "schema_version": SCHEMA_VERSION,
        "programs": int(ok.sum()),
        "failed": int((~ok).sum()),
        "tasks": len(np.unique(data.task)),
        "groups": len(groups_ok),
        "platforms": names,
        "hosts": hosts(data),
        "networks": sorted(data.networks),
        "programs_per_platform": per_platform,
        "programs_per_network": per_network,
        "reference_gflops_per_platform": {p["name"]: p["descriptor"].get("reference_gflops", 0.0)
                                          for p in data.platforms},
        "mean_programs_per_group": round(float(ok.sum()) / max(len(groups_ok), 1), 1),
        # a tiny task with nothing to tune yields one schedule, timed again and again: no ranking signal
        "distinct_programs": int(sum(distinct)),
        "one_schedule_groups": int(sum(d == 1 for d in distinct)),
        "max_stores": int(data.mask.shape[1]),
        "trace_tokens": data.has_traces,
        **({"derived_from": data.provenance["derived_from"]} if "derived_from" in data.provenance else {}),
    }
