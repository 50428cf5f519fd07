"""Compute chosen parts of `xfer-jax report`'s study in parallel processes before a deadline, the most important
first: for a lent GPU, where device minutes are few (bench/gpu_session.sh parts). Each part caches its result in
the study's work folder, where a later `xfer-jax report` reads it instead of training. A part that would start too
late to finish is not started.

    python bench/study_parts.py --steps 8000 --seeds 0,1 --jobs 12 --deadline-s 520 \\
        split:by-task prune:by-task:random:0.2 prune:by-host:disagree:0.2 network:squeezenet host:znver3

Parts (each once per seed, in the order given):
    split:NAME                  the split table's row NAME (within-task, by-task) for --models
    network:NET                 the split table's by-network row holding NET out, for --models
    host:H, platform:P          the zero-shot transfer row holding H (P) out, for --transfer-models
    prune:SPLIT:METHOD:KEEP     --prune-model trained on KEEP (< 1) of SPLIT's (by-task, by-host) training programs,
                                chosen by METHOD; by-host holds out the report's pruning host
One JSON line per part: its name, seed, "done", "failed" or "skipped", and seconds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import pathlib
import time
import traceback

from xfer_jax import dataset, prune, report, study
from xfer_jax.errors import UserError

KINDS = ("split", "network", "host", "platform", "prune")


def parse_part(spec: str) -> tuple[str, tuple[str, ...]]:
    kind, *args = spec.split(":")
    arity = 3 if kind == "prune" else 1
    if kind not in KINDS or len(args) != arity:
        raise SystemExit(f"bad part {spec!r}: one of split:NAME, network:NET, host:H, platform:P, "
                         "prune:SPLIT:METHOD:KEEP")
    if kind == "prune" and (args[0] not in ("by-task", "by-host") or args[1] not in prune.METHODS
                            or not args[2].startswith("0.") or not args[2][2:].isdigit()):
        raise SystemExit(f"bad part {spec!r}: SPLIT is by-task or by-host, METHOD one of {', '.join(prune.METHODS)}, "
                         "KEEP a fraction below 1 (the full set is the split:by-task or host:H part's model)")
    return kind, tuple(args)


def report_part(kind: str, args: tuple[str, ...], seed: int, plan: report.Plan, prune_host: str | None):
    """The (part, plan) pair report.compute_part takes for one spec."""
    if kind == "prune":
        split, method, keep = args
        holdout = prune_host if split == "by-host" else None
        return (seed, "prune", ((split, holdout), method)), dataclasses.replace(plan, fractions=(float(keep),))
    if kind == "split":
        return (seed, kind, args[0]), dataclasses.replace(plan, splits=(args[0],))
    return (seed, kind, args[0]), dataclasses.replace(plan, **{f"{kind}s": (args[0],)})


def run_part(spec: str, part: tuple, plan: report.Plan, data: pathlib.Path, work: pathlib.Path,
             start_after: float, last_start: float) -> dict:
    time.sleep(max(start_after - time.time(), 0.0))  # the first wave starts staggered: loading peaks in memory
    if time.time() > last_start:
        return {"part": spec, "seed": part[0], "status": "skipped", "seconds": 0}
    began = time.time()
    try:
        report.compute_part(part, data, work, plan)
        status = "done"
    except Exception:  # one failed part must not lose the others' results
        traceback.print_exc()
        status = "failed"
    return {"part": spec, "seed": part[0], "status": status, "seconds": round(time.time() - began)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="+", help="split:NAME, network:NET, host:H, platform:P, prune:SPLIT:METHOD:KEEP")
    parser.add_argument("--data", type=pathlib.Path, default=pathlib.Path("data/v1/dataset"))
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path("reports/work"))
    parser.add_argument("--steps", type=int, default=report.Plan.steps)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--models", default="xfer", help="the split table's models")
    parser.add_argument("--transfer-models", default="xfer,noHW,xgb,xgb+hw")
    parser.add_argument("--prune-model", default="xfer")
    parser.add_argument("--jobs", type=int, default=1, help="parts at once (processes)")
    parser.add_argument("--deadline-s", type=float, default=None, help="no part starts after this many seconds "
                        "minus --min-left-s")
    parser.add_argument("--min-left-s", type=float, default=300.0, help="time a part needs at least")
    parser.add_argument("--stagger-s", type=float, default=5.0, help="between the starts of the first wave")
    args = parser.parse_args()

    data = dataset.load(args.data)
    try:
        plan = report.Plan(steps=args.steps, seeds=report.parse_list(args.seeds, int, "--seeds"), shots=(0,),
                           split_models=report.parse_list(args.models, str, "--models"),
                           transfer_models=report.parse_list(args.transfer_models, str, "--transfer-models"),
                           prune_model=args.prune_model)
        prune_host = plan.prune_host_of(data)
        jobs = [(spec, *report_part(*parse_part(spec), seed, plan, prune_host))
                for spec in args.parts for seed in plan.seeds]
        for _, _, part_plan in jobs:
            part_plan.check(data)  # unknown names and bad fractions fail here, before anything trains
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"{len(jobs)} parts, {args.jobs} at once, {args.steps} steps, dataset {study.fingerprint(data)}", flush=True)
    del data

    now = time.time()
    last_start = now + args.deadline_s - args.min_left_s if args.deadline_s else float("inf")
    context = multiprocessing.get_context("spawn")  # JAX does not survive a fork
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = [pool.submit(run_part, spec, part, part_plan, args.data, args.work,
                               now + args.stagger_s * min(i, args.jobs - 1), last_start)
                   for i, (spec, part, part_plan) in enumerate(jobs)]
        for future in concurrent.futures.as_completed(futures):
            print(json.dumps(future.result()), flush=True)


if __name__ == "__main__":
    main()
