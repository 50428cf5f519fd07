"""`xfer-jax featurize`: collected MetaSchedule databases become dataset shards (see xfer_jax.dataset).

Incremental and deterministic: every shard records which database lines it covers, so a rerun featurizes only
lines appended since, and the same databases always give the same shards.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import pathlib

import numpy as np
import tqdm
import tvm
from tvm.s_tir import meta_schedule as ms

from xfer_jax import dataset as ds
from xfer_jax.hardware import HardwareDescriptor, hardware_vector, reference_gflops
from xfer_jax.trace import batch_tokens

from . import records
from .check import program_key, read_verdicts
from .tasks import workload_hash

SHARD_PROGRAMS = 4096
_OP_KEYWORDS = (("conv", ("conv",)), ("matmul", ("matmul", "dense")), ("pool", ("pool",)),
                ("softmax", ("softmax",)), ("norm", ("norm",)), ("attention", ("attention",)),
                ("elementwise", ("add", "multiply", "relu", "clip", "gelu", "tanh", "divide", "subtract")),
                ("reduce", ("mean", "sum", "max")))


@dataclasses.dataclass
class FeaturizeSummary:
    shards_written: int = 0
    programs: int = 0
    failed: int = 0
    skipped_corrupt: int = 0  # unparsable database lines
    skipped_nonfinite: int = 0  # missing, empty, NaN, inf or non-positive latencies
    skipped_unknown_workload: int = 0
    wrong_output: int = 0  # measured, but judged to compute a wrong output (bridge/check.py): kept as failures
    trace_files_written: int = 0
    references_recorded: int = 0  # new lines in measured_hardware.jsonl
    tasks_all_failed: int = 0
    damaged_files: list[str] = dataclasses.field(default_factory=list)  # skipped: damaged segments, platform.json


def workload_features(mod: tvm.IRModule, name: str, ms_flags: np.ndarray) -> np.ndarray:
    buffers = ms.arg_info.ArgInfo.from_prim_func(mod["main"])  # TensorInfo per argument; outputs come last

    def nbytes(info) -> float:
        return float(np.prod([int(d) for d in info.shape])) * tvm.DataType(str(info.dtype)).bits / 8

    try:
        flops = float(tvm.s_tir.analysis.estimate_tir_flops(mod))
    except Exception:  # data-dependent loops; such tasks are memory-bound anyway
        flops = 0.0
    flags = [float(any(k in name for k in keys)) for _, keys in _OP_KEYWORDS]
    ours = [math.log2(1 + flops), math.log2(1 + sum(nbytes(b) for b in buffers[:-1])),
            math.log2(1 + (nbytes(buffers[-1]) if buffers else 0.0)), float(len(buffers) - 1), *flags]
    return np.concatenate([ms_flags, np.array(ours)]).astype(np.float32)


def _collections(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p.parent for p in pathlib.Path(root).glob("**/platform.json"))


def _done_ranges(out: pathlib.Path) -> dict[str, int]:
    """source -> number of record lines already featurized."""
    done: dict[str, int] = {}
    for path in ds.shard_files(out):
        meta = ds.read_shard(path, ("meta",))["meta"]
        source = meta["source"]
        done[source["name"]] = max(done.get(source["name"], 0), source["records_end"])
    return done


def featurize(root: pathlib.Path, out: pathlib.Path, show_progress: bool = True) -> FeaturizeSummary:
    root, out = pathlib.Path(root), pathlib.Path(out)
    dirs = _collections(root)
    if not dirs:
        raise ds.DatasetError(f"no collections under {root} (expected <platform>/<network>/platform.json)")
    out.mkdir(parents=True, exist_ok=True)
    done = _done_ranges(out)
    summary = FeaturizeSummary()
    damaged: list[pathlib.Path] = []
    todo = {d: records.count_complete_lines(d / records.RECORD_FILE, damaged) - done.get(_source_name(root, d), 0)
            for d in dirs}
    bar = tqdm.tqdm(total=sum(max(n, 0) for n in todo.values()), unit="prog", desc="featurize",
                    disable=not show_progress, dynamic_ncols=True)
    for net_dir in dirs:
        try:
            _featurize_collection(root, net_dir, out, done.get(_source_name(root, net_dir), 0), summary, bar, damaged)
        except PlatformFileError as err:
            damaged.append(err.path)
    bar.close()
    summary.trace_files_written = add_traces(root, out, damaged)
    summary.references_recorded = add_references(root, out, dirs, damaged)
    summary.damaged_files = sorted({str(path) for path in damaged})
    return summary


def add_traces(root: pathlib.Path, out: pathlib.Path, damaged: list) -> int:
    """Write the trace tokens of every shard under `out` that has none yet, from the database lines it was
    featurized from (shards written before traces were read get theirs this way). Returns files written."""
    by_source: dict[str, list[tuple[pathlib.Path, list[int]]]] = collections.defaultdict(list)
    for shard in ds.shard_files(out):
        if not ds.trace_path(shard).exists():
            part = ds.read_shard(shard, ("record",))
            by_source[part["meta"]["source"]["name"]].append((shard, part["record"].tolist()))
    written = 0
    for source, shards in tqdm.tqdm(by_source.items(), desc="trace tokens", unit="collection",
                                    disable=len(by_source) < 2, dynamic_ncols=True):
        net_dir = root / source if (root / source).is_dir() else root
        traces = {n: line[1][0] for n, line in records.iter_json_lines(net_dir / records.RECORD_FILE, damaged)
                  if isinstance(line, list) and len(line) > 1 and isinstance(line[1], list) and line[1]}
        for shard, numbers in shards:
            if not all(n in traces for n in numbers):
                continue  # its database lines are gone or damaged: the dataset loads without traces
            ds.write_traces(shard, *batch_tokens([traces[n] for n in numbers]))
            written += 1
    return written


def add_references(root: pathlib.Path, out: pathlib.Path, dirs: list[pathlib.Path], damaged: list) -> int:
    """Record each collection's best reference-matmul timing (its least loaded one) in the dataset, unless that
    value is recorded already. Returns the lines appended."""
    recorded = {(m["platform"], m["collection"], m["reference_gflops"]) for m in ds.read_measured_hardware(out)}
    lines = []
    for net_dir in dirs:
        best = records.best_reference_seconds(net_dir, damaged)
        try:
            name = json.loads((net_dir / "platform.json").read_text())["platform"]["name"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # featurizing it noted the damage
        if best is not None:
            line = {"platform": name, "collection": _source_name(root, net_dir),
                    "reference_gflops": reference_gflops(best)}
            if (line["platform"], line["collection"], line["reference_gflops"]) not in recorded:
                lines.append(line)
    ds.append_measured_hardware(out, lines)
    return len(lines)


class PlatformFileError(Exception):
    def __init__(self, path: pathlib.Path):
        super().__init__(str(path))
        self.path = path


def _source_name(root: pathlib.Path, net_dir: pathlib.Path) -> str:
    return str(net_dir.relative_to(root)) if net_dir != root else net_dir.name


def _platform_networks(platform_dir: pathlib.Path) -> tuple[dict, dict]:
    """({network: {hash: weight}}, {hash: {"name", "flops"}}) from every tasks.json of the platform."""
    networks, tasks = {}, {}
    for path in sorted(platform_dir.glob("*/tasks.json")):
        spec = json.loads(path.read_text())
        networks[spec["network"]] = {t["hash"]: t["weight"] for t in spec["tasks"]}
        for t in spec["tasks"]:
            tasks.setdefault(t["hash"], {"name": t["name"], "flops": t["flops"]})
    return networks, tasks


def _featurize_collection(root, net_dir, out, start, summary, bar, damaged: list) -> None:
    """Featurize the records of one collection past `start`; damaged segments are skipped and noted in `damaged`,
    a damaged platform.json skips the collection (PlatformFileError)."""
    try:
        spec = json.loads((net_dir / "platform.json").read_text())["platform"]
        descriptor = HardwareDescriptor.from_dict(spec["descriptor"])
    except (OSError, ValueError, KeyError, TypeError):
        raise PlatformFileError(net_dir / "platform.json") from None
    platform = {"name": spec["name"], "descriptor": descriptor.to_dict(),
                "vector": hardware_vector(descriptor).tolist(), "target": spec["target"]}
    networks, task_info = _platform_networks(net_dir.parent)
    source = _source_name(root, net_dir)

    workloads = {}
    for number, value in records.iter_json_lines(net_dir / records.WORKLOAD_FILE, damaged):
        if value is None:
            continue
        try:
            workloads[number] = ms.database.Workload.from_json(value)
        except Exception:  # a line that parses as JSON but not as a workload is corrupt too
            continue
    provenance = {v["record"]: v for _, v in records.iter_json_lines(net_dir / records.MEASUREMENTS_FILE, damaged)
                  if isinstance(v, dict) and "record" in v}
    phases = {k: v.get("phase") for k, v in provenance.items()}
    repeats = {k: v.get("costs_s") for k, v in provenance.items()}
    wrong = {key for key, matches in read_verdicts(net_dir / records.OUTPUT_CHECKS_FILE).items() if not matches}

    batch: list[tuple[int, int, ms.database.TuningRecord]] = []
    end = start
    complete = records.count_complete_lines(net_dir / records.RECORD_FILE, damaged)
    for number, line in records.iter_json_lines(net_dir / records.RECORD_FILE, damaged):
        if number < start:
            continue
        if number >= complete:
            break
        end = number + 1
        if line is None:
            summary.skipped_corrupt += 1
            continue
        workload = workloads.get(line[0]) if isinstance(line, list) and line else None
        if workload is None:
            summary.skipped_unknown_workload += 1
            continue
        secs = records.run_secs_of(line)
        if not secs or not all(math.isfinite(s) and s > 0 for s in secs):
            summary.skipped_nonfinite += 1
            continue
        try:
            batch.append((number, line[0], ms.database.TuningRecord.from_json(line[1], workload)))
        except Exception:
            summary.skipped_corrupt += 1
            continue
        if len(batch) >= SHARD_PROGRAMS:
            _write(out, source, platform, networks, task_info, workloads, batch, phases, repeats, wrong,
                   batch[0][0], number + 1, summary)
            bar.update(number + 1 - batch[0][0])
            batch = []
    if batch or end > start:
        first = batch[0][0] if batch else start
        _write(out, source, platform, networks, task_info, workloads, batch, phases, repeats, wrong, first, end,
               summary)
        bar.update(end - first)


def _write(out, source, platform, networks, task_info, workloads, batch, phases, repeats, wrong, first, end,
           summary) -> None:
    """One shard of `batch`; programs whose key is in `wrong` (judged to compute a wrong output) become failures: a
    fast wrong program must not teach a model that its schedule is fast."""
    rows, counts, workload_rows, latency, spread, phase, record_ids, hashes = [], [], [], [], [], [], [], []
    by_workload = collections.defaultdict(list)
    for number, workload_idx, record in batch:
        by_workload[workload_idx].append((number, record))
    task_features = {}
    for workload_idx in sorted(by_workload):
        items = by_workload[workload_idx]
        workload = workloads[workload_idx]
        task_hash = workload_hash(workload.mod)
        ctx = ms.TuneContext(workload.mod, target=items[0][1].target)
        candidates = [r.as_measure_candidate() for _, r in items]
        extracted = ms.feature_extractor.PerStoreFeature(extract_workload=True).extract_from(ctx, candidates)
        name = task_info.get(task_hash, {}).get("name", "unknown")
        for (number, record), candidate, feats in zip(items, candidates, extracted):
            feats = feats.numpy()
            if task_hash not in task_features:
                task_features[task_hash] = workload_features(workload.mod, name, feats[0, ds.NUM_STORE_FEATURES:])
            rows.append(feats[:, : ds.NUM_STORE_FEATURES])
            counts.append(len(feats))
            workload_rows.append(task_features[task_hash])
            secs = [float(s) for s in record.run_secs]
            latency.append(records.latency_s(secs))
            if wrong and program_key(name, candidate.sch.mod) in wrong:
                latency[-1] = math.inf
                summary.wrong_output += 1
            failed = not np.isfinite(latency[-1])
            costs = repeats.get(number) or secs
            spread.append(0.0 if failed else float(np.std(costs)))
            phase.append(ds.PHASES.get(phases.get(number), -1))
            record_ids.append(number)
            hashes.append(task_hash)
            summary.failed += int(failed)
            summary.programs += int(not failed)
    for task_hash in set(hashes):
        summary.tasks_all_failed += all(np.isinf(lat) for lat, h in zip(latency, hashes) if h == task_hash)
    index = max((int(path.stem.split("-")[1]) + 1 for path in ds.shard_files(out)), default=0)
    ds.write_shard(
        out / f"shard-{index:05d}.npz",
        store_rows=np.concatenate(rows) if rows else np.zeros((0, ds.NUM_STORE_FEATURES), np.float32),
        store_count=np.array(counts, np.int32),
        workload=np.array(workload_rows, np.float32).reshape(-1, ds.NUM_WORKLOAD_FEATURES),
        latency=np.array(latency), latency_std=np.array(spread), phase=np.array(phase), record=np.array(record_ids),
        platform=platform, task_hashes=hashes,
        tables={"tasks": task_info, "networks": networks,
                "source": {"name": source, "records_begin": first, "records_end": end}},
    )
    summary.shards_written += 1
