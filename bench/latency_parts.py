"""Where a tune job's estimated network latency and its end-to-end time part, per model. Run it alone.

`tune`'s estimate is the sum over tasks of weight x the best latency measured while tuning: each kernel alone (on
cold caches, or warm in a job tuned with --no-cache-flush), at the minute its model tuned. The end-to-end time runs
every kernel between its neighbours. This times, interleaved across the job's models, each model's best kernels again
alone ("alone now": drift of the VM between the models' tuning runs), the same kernels inside its compiled network
("in network"), and the whole network ("end to end"), so the gap between estimate and end-to-end splits into those
parts.

    python bench/latency_parts.py runs/tune-budgets/amx-2t@emeraldrapids-r8-s0/mobilenet_v2 [--onnx PATH] [--rounds 5]

Prints one table row per model and the tasks that grow most inside the network; appends a JSON line per job to
reports/tune/latency_parts.jsonl.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import shutil
import time

import numpy as np
from remeasure import job_settings, use_job_threads  # bench/ is this script's folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", type=pathlib.Path, help="a tune work folder (OUT/NETWORK)")
    parser.add_argument("--onnx", type=pathlib.Path, help="the ONNX model an --onnx job tuned")
    parser.add_argument("--rounds", type=int, default=5, help="passes over every model, interleaved")
    parser.add_argument("--cache-flush", action=argparse.BooleanOptionalAction, help="time the kernels alone on "
                        "cold caches (flushed before each of 10 single runs) or warm [default: as the job tuned]")
    parser.add_argument("--log", type=pathlib.Path, default=pathlib.Path("reports/tune/latency_parts.jsonl"))
    args = parser.parse_args()
    settings = job_settings(args.job)
    use_job_threads(settings)

    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms
    from tvm.tirx import PrimFunc

    from xfer_jax.bridge import records
    from xfer_jax.bridge.check import OutputCheck
    from xfer_jax.bridge.measure import MeasureConfig, SyncRunner, make_builder, make_runner, run_artifacts
    from xfer_jax.bridge.networks import get_network, unbatched_name
    from xfer_jax.bridge.platforms import get_platform
    from xfer_jax.bridge.tasks import extract_tasks, fuse_for_tuning, workload_hash
    from xfer_jax.bridge.tune import best_records, records_to_compile, untuned_candidate

    name, batch = unbatched_name(settings["network"])
    network = get_network(name if args.onnx is None else None, args.onnx, batch)
    if network.name != settings["network"]:
        raise SystemExit(f"error: {args.job} tuned {settings['network']}, not {network.name}")
    platform = get_platform(settings["platform"][0])
    target = platform.tvm_target()
    tasks = extract_tasks(network, target)
    task_of = {t.workload_hash: i for i, t in enumerate(tasks)}
    task_of_symbol = {gv.name_hint: task_of.get(workload_hash(tvm.IRModule({"main": f.with_attr("global_symbol", "main")})))
                      for gv, f in fuse_for_tuning(network.mod, target).functions.items() if isinstance(f, PrimFunc)}
    untuned = json.loads((args.job / "untuned_task_seconds.json").read_text())

    cold = settings.get("cpu_cache_flush", False) if args.cache_flush is None else args.cache_flush
    measure = MeasureConfig.cold_cache() if cold else MeasureConfig()
    builder, runner = make_builder(measure), SyncRunner(make_runner(platform, measure))
    device = tvm.cpu()
    inputs = [tvm.runtime.tensor(x, device) for x in network.random_inputs(seed=settings["seed"])]
    models = {}  # name -> what its job left and the artifacts built from it
    for library in sorted(args.job.glob(f"*/{network.name}.so")):
        result_path = library.parent / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        if not result.get("output_matches_untuned"):  # unfinished, or its output disagreed with the untuned build
            continue
        database = ms.database.JSONDatabase(work_dir=str(library.parent))
        check = (OutputCheck(tasks, target, library.parent / records.OUTPUT_CHECKS_FILE)  # compiled as tune did
                 if "wrong_output_programs" in result else None)
        if "tasks_left_untuned" in result:  # tuned since tune compiles untuned code where that measured faster
            database = records_to_compile(database, tasks, untuned, check)
        best = best_records(database, tasks)
        candidates = {i: record.as_measure_candidate() if record is not None else untuned_candidate(t)  # as the .so
                      for i, (record, t) in enumerate(zip(best, tasks))}
        built = builder.build([ms.builder.BuilderInput(c.sch.mod, target) for c in candidates.values()])
        models[library.parent.name] = {
            "tuned_s": [untuned[i] if record is None else records.latency_s(record.run_secs)
                        for i, record in enumerate(best)],
            "artifacts": [(i, b.artifact_path, c.args_info)
                          for (i, c), b in zip(candidates.items(), built) if not b.error_msg],
            "vm": relax.VirtualMachine(tvm.runtime.load_module(str(library)), device)}
    if not models:
        raise SystemExit(f"error: no compiled {network.name}.so under {args.job}")

    alone = {m: collections.defaultdict(list) for m in models}  # task -> seconds per round
    in_network = {m: collections.defaultdict(list) for m in models}
    end_to_end = {m: [] for m in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            for (task, _, _), (secs, _) in zip(model["artifacts"], run_artifacts(runner, platform, [
                    (path, info) for _, path, info in model["artifacts"]])):
                alone[name][task].append(records.latency_s(secs))
            _kernel_seconds(model["vm"], inputs, task_of_symbol, in_network[name])
            timer = model["vm"].time_evaluator("main", device, number=5, repeat=5)
            end_to_end[name].append(float(np.mean(timer(*inputs).results)))
    for model in models.values():
        for _, path, _ in model["artifacts"]:
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)

    weights = np.array([t.weight for t in tasks], float)
    rows = {}
    for name, model in models.items():
        tuned = np.array(model["tuned_s"])
        now = np.array([np.median(alone[name][i]) if alone[name][i] else tuned[i] for i in range(len(tasks))])
        inside = np.array([np.median(in_network[name][i]) if in_network[name][i] else np.nan
                           for i in range(len(tasks))])
        rows[name] = {"estimate_ms": 1e3 * float(weights @ tuned), "alone_now_ms": 1e3 * float(weights @ now),
                      "in_network_ms": 1e3 * float(np.nansum(inside)),
                      "end_to_end_ms": 1e3 * float(np.median(end_to_end[name])),
                      "tasks": [{"task": t.name, "weight": t.weight, "tuned_ms": 1e3 * tuned[i],
                                 "alone_now_ms": 1e3 * now[i], "in_network_ms": 1e3 * inside[i]}
                                for i, t in enumerate(tasks)]}
    print(f"{'model':16s} {'estimate':>9s} {'alone now':>10s} {'in network':>11s} {'end to end':>11s}  (ms)")
    for name, row in rows.items():
        print(f"{name:16s} {row['estimate_ms']:9.2f} {row['alone_now_ms']:10.2f} {row['in_network_ms']:11.2f} "
              f"{row['end_to_end_ms']:11.2f}")
    for name, row in rows.items():
        grown = sorted(row["tasks"], key=lambda t: -(t["in_network_ms"] - t["weight"] * t["alone_now_ms"]))[:3]
        print(f"{name}: grows most inside the network: " + ", ".join(
            f"{t['task'][:28]} x{t['weight']} {t['weight'] * t['alone_now_ms']:.3f} -> {t['in_network_ms']:.3f}"
            for t in grown))
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a") as log:
        log.write(json.dumps({"job": str(args.job.resolve()), "network": network.name,
                              "platform": settings["platform"][0], "rounds": args.rounds,
                              "cache_flush": cold,
                              "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "models": rows}) + "\n")


def _kernel_seconds(vm, inputs, task_of_symbol: dict, seconds: dict, passes: int = 10) -> None:
    """Appends to `seconds` per task the seconds its kernels take in one pass of the network (mean of `passes`)."""
    total, started = collections.defaultdict(float), {}

    def instrument(func, symbol, before_run, ret_value, *args):
        if before_run:
            started[symbol] = time.perf_counter()
        elif task_of_symbol.get(symbol) is not None:
            total[task_of_symbol[symbol]] += time.perf_counter() - started[symbol]
        return 0  # carry on

    vm.set_instrument(instrument)
    for _ in range(passes):
        vm["main"](*inputs)
    vm.set_instrument(None)
    for task, secs in total.items():
        seconds[task].append(secs / passes)


if __name__ == "__main__":
    main()
