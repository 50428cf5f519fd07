"""Time the compiled networks of one `xfer-jax tune` job again, interleaved, to tell a real end-to-end difference
between cost models from machine noise: `tune` times each model's network once, right after its own tuning, minutes
apart on a shared VM. Run it alone on the machine.

    python bench/remeasure.py runs/tune-budgets/amx-2t@emeraldrapids-r8-s0/resnet18 [--rounds 7]

Prints one line per model (median of the rounds' means, and their min-max) and appends a JSON line to
reports/tune/remeasured.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", type=pathlib.Path, help="a tune work folder: OUT/NETWORK")
    parser.add_argument("--rounds", type=int, default=7, help="passes over every model, interleaved")
    parser.add_argument("--log", type=pathlib.Path, default=pathlib.Path("reports/tune/remeasured.jsonl"))
    args = parser.parse_args()
    settings_path = args.job / "settings.json"
    if not settings_path.exists():
        raise SystemExit(f"error: no tune job at {args.job} (settings.json missing)")
    settings = json.loads(settings_path.read_text())
    threads = settings["platform"][2]
    if threads:  # as tune sets it (Platform.runtime_env), before TVM starts its thread pool
        os.environ["TVM_NUM_THREADS"] = str(threads)

    import tvm
    from tvm import relax

    from xfer_jax.bridge.networks import Network

    # the inputs tune timed, from the job's own record: no network to rebuild (batch and --onnx jobs alike)
    network = Network(settings["network"], None, {name: (tuple(shape), dtype)
                                                  for name, (shape, dtype) in settings["inputs"].items()})
    device = tvm.cpu()
    inputs = [tvm.runtime.tensor(x, device) for x in network.random_inputs(seed=settings["seed"])]
    timers = {}
    for library in sorted(args.job.glob(f"*/{network.name}.so")):
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), device)
        vm["main"](*inputs)  # warm up
        timers[library.parent.name] = vm.time_evaluator("main", device, number=5, repeat=5)
    if not timers:
        raise SystemExit(f"error: no compiled {network.name}.so under {args.job}")
    means = {name: [] for name in timers}
    for _ in range(args.rounds):
        for name, timer in timers.items():
            means[name].append(float(np.mean(timer(*inputs).results)) * 1e3)
    result = {"job": str(args.job.resolve()), "network": network.name, "platform": settings["platform"][0],
              "seed": settings["seed"], "rounds": args.rounds, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "ms": {name: {"median": float(np.median(v)), "min": min(v), "max": max(v)} for name, v in means.items()}}
    for name, ms in result["ms"].items():
        print(f"{name:16s} {ms['median']:8.2f} ms  (min {ms['min']:.2f}, max {ms['max']:.2f}, {args.rounds} rounds)")
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a") as log:
        log.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
