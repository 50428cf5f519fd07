"""Time the compiled networks of `xfer-jax tune` jobs again, interleaved, to tell a real end-to-end difference
between cost models from machine noise: `tune` times each model's network once, right after its own tuning, minutes
apart on a shared VM. Run it alone on the machine.

    python bench/remeasure.py runs/tune-budgets/amx-2t@emeraldrapids-r8-s0/resnet18 [more jobs] [--rounds 7]

Prints one line per model (median of the rounds' means, and their min-max) and appends a JSON line per job to
reports/tune/remeasured.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np


def job_settings(job: pathlib.Path) -> dict:
    """What a tune job recorded of itself (bench/latency_parts.py reads it too)."""
    path = job / "settings.json"
    if not path.exists():
        raise SystemExit(f"error: no tune job at {job} (settings.json missing)")
    return json.loads(path.read_text())


def use_job_threads(settings: dict) -> None:
    """The job's thread count, as tune sets it (Platform.runtime_env): call before TVM starts its thread pool."""
    threads = settings["platform"][2]
    if threads:
        os.environ["TVM_NUM_THREADS"] = str(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", type=pathlib.Path, nargs="+", help="tune work folders (OUT/NETWORK) of one network "
                        "on one platform, e.g. runs with other settings: every model of every job is interleaved")
    parser.add_argument("--rounds", type=int, default=7, help="passes over every model, interleaved")
    parser.add_argument("--log", type=pathlib.Path, default=pathlib.Path("reports/tune/remeasured.jsonl"))
    args = parser.parse_args()
    settings = {job: job_settings(job) for job in args.jobs}
    first = settings[args.jobs[0]]
    if any((s["network"], s["inputs"], s["platform"]) != (first["network"], first["inputs"], first["platform"])
           for s in settings.values()):
        raise SystemExit("error: the jobs tuned different networks, inputs or platforms; remeasure them apart")
    use_job_threads(first)

    import tvm
    from tvm import relax

    from xfer_jax.bridge.networks import Network

    # the inputs tune timed, from the job's own record: no network to rebuild (batch and --onnx jobs alike)
    network = Network(first["network"], None, {name: (tuple(shape), dtype)
                                               for name, (shape, dtype) in first["inputs"].items()})
    device = tvm.cpu()
    timers = {}  # (job, model) -> a timer with its inputs bound
    for job in args.jobs:
        inputs = [tvm.runtime.tensor(x, device) for x in network.random_inputs(seed=settings[job]["seed"])]
        for library in sorted(job.glob(f"*/{network.name}.so")):
            vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), device)
            vm["main"](*inputs)  # warm up
            timer = vm.time_evaluator("main", device, number=5, repeat=5)
            timers[job, library.parent.name] = lambda timer=timer, inputs=inputs: timer(*inputs).results
    if not timers:
        raise SystemExit(f"error: no compiled {network.name}.so under {', '.join(map(str, args.jobs))}")
    means = {key: [] for key in timers}
    for _ in range(args.rounds):
        for key, timed in timers.items():
            means[key].append(float(np.mean(timed())) * 1e3)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    for job in args.jobs:
        ms = {name: {"median": float(np.median(v)), "min": min(v), "max": max(v)}
              for (at, name), v in means.items() if at == job}
        for name, m in ms.items():
            print(f"{job.parent.name}/{name:16s} {m['median']:8.2f} ms  (min {m['min']:.2f}, max {m['max']:.2f}, "
                  f"{args.rounds} rounds)")
        with args.log.open("a") as log:
            log.write(json.dumps({"job": str(job.resolve()), "network": network.name,
                                  "platform": first["platform"][0], "seed": settings[job]["seed"],
                                  "rounds": args.rounds, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                  "with": [str(j.resolve()) for j in args.jobs if j != job], "ms": ms}) + "\n")


if __name__ == "__main__":
    main()
