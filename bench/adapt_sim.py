"""Online adaptation replayed on a host's measured programs, without TVM: what XferCostModel.update does while
tuning one network, scored after every round on programs it never trained on.

    python bench/adapt_sim.py --checkpoint runs/ck-without-emeraldrapids --platform avx512-2t@emeraldrapids \
        --network resnet18 --guards frozen,newest,quarter,none,blend,booster-only,residual [--rounds 8] [--seed 0]

Each of the network's tasks on the platform is split in halves: a stream, from which every round measures 8
programs of each task (tasks in a shuffled order, as MetaSchedule's rounds go), and a test half. An update is
tried every 32 new measurements, as in tuning. Differences from tuning: the stream is a random sample of what
the dataset's search measured, not this model's own picks. One JSON line per guard on stdout: test PCA and the
network's top-1 / top-5 score (METRICS.md) after each round, and the updates kept of tried.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import xfer_jax
from xfer_jax import dataset, metrics
from xfer_jax.adapt import GUARDS, HeadAdapter, Measurements, OnlineAdapter, OnlineBooster, ResidualBooster, fit_booster

PER_ROUND, ADAPT_EVERY = 8, 32  # tune's trials per round, XferCostModel's measurements per update
VARIANTS = ("frozen", *GUARDS, "head", "blend", "booster-only", "residual")


def _measurements(data: dataset.Dataset, index: np.ndarray) -> Measurements:
    return Measurements(data.features[index], data.mask[index], data.workload[index], data.hardware[index],
                        data.trace_ids[index], data.trace_values[index], data.latency[index])


def _score(predictor, data: dataset.Dataset, test: np.ndarray, weights: dict[int, float], rescore=None) -> dict:
    m = _measurements(data, test)
    scores = m.scored_by(predictor)
    task = data.task[test]
    if rescore is not None:  # per task, as tuning scores one task's candidates at a time
        scores = np.array(scores, np.float64)
        for t in np.unique(task):
            scores[task == t] = rescore(t, scores[task == t], m.features[task == t], m.mask[task == t])
    top = {f"top{k}": metrics.topk_score(scores, m.latency, task, weights, k) for k in (1, 5)}
    return {"pca": float(metrics.pca(scores, m.latency, task)),
            **{name: None if value is None else float(value) for name, value in top.items()}}


def replay(checkpoint: str, data: dataset.Dataset, tasks: dict[int, float], guard: str, rounds: int,
           seed: int, **adapter_options) -> dict:
    predictor = xfer_jax.load(checkpoint)  # fresh parameters for every guard
    rng = np.random.default_rng(seed)
    streams, test = {}, []
    for t in tasks:  # the same halves for every guard: the rng is seeded the same
        members = rng.permutation(np.flatnonzero((data.task == t) & np.isfinite(data.latency)))
        streams[t], test = members[: len(members) // 2], test + list(members[len(members) // 2:])
    test = np.array(sorted(test))
    adapter = HeadAdapter(predictor, seed=seed) if guard == "head" else \
        OnlineAdapter(predictor, seed=seed, guard=guard if guard in GUARDS else "newest", **adapter_options)
    booster = OnlineBooster() if guard in ("blend", "booster-only") else ResidualBooster() if guard == "residual" \
        else None
    only = {}  # booster-only: the booster fitted on everything measured so far, alone

    def rescore(task, model, features, mask):
        if guard == "residual":
            return booster.score(task, model, features, mask)
        if guard == "blend":
            return booster.blend(model, features, mask)
        return only["booster"].predict(features, mask) if "booster" in only else model

    history: dict[int, Measurements] = {}
    curve, since, start = [_score(predictor, data, test, tasks)], 0, time.perf_counter()
    for r in range(rounds):
        for t in rng.permutation(list(tasks)):
            batch = streams[t][r * PER_ROUND: (r + 1) * PER_ROUND]
            if not len(batch):
                continue
            newest = _measurements(data, batch)
            since += len(batch)
            if guard in GUARDS and since >= ADAPT_EVERY:  # as XferCostModel.update: before `newest` joins
                adapter.update(list(history.values()), newest)
            if guard == "head":
                adapter.observe(t, newest, since >= ADAPT_EVERY)
            history[t] = history[t].extend(newest) if t in history else newest
            if guard == "blend" and since >= ADAPT_EVERY:
                booster.refit(list(history.values()), lambda m: m.scored_by(predictor))
            if guard == "residual" and since >= ADAPT_EVERY:
                booster.refit(history, lambda m: m.scored_by(predictor))
            if guard == "booster-only" and since >= ADAPT_EVERY:
                only["booster"] = fit_booster([m for m in history.values() if m.usable])
            since = 0 if since >= ADAPT_EVERY else since
        point = _score(predictor, data, test, tasks, rescore if booster is not None else None)
        curve.append({**point, "weight": booster.weight} if guard == "blend" else point)
    return {"guard": guard, "seed": seed, **adapter_options, "test_programs": len(test), "tasks": len(tasks),
            "updates": {"tried": adapter.tried, "kept": adapter.kept, "seconds": round(adapter.seconds, 1)},
            **({"booster": {"refits": booster.refits, "weight": getattr(booster, "weight", None),
                            "slope": getattr(booster, "slope", None), "seconds": round(booster.seconds, 1)}}
               if booster is not None else {}),
            "wall_s": round(time.perf_counter() - start, 1), "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", default="data/v1/dataset")
    parser.add_argument("--platform", required=True, help="a platform of the dataset, e.g. avx512-2t@emeraldrapids")
    parser.add_argument("--network", default="resnet18")
    parser.add_argument("--guards", default=",".join(VARIANTS),
                        help="frozen, an OnlineAdapter guard, head (HeadAdapter: the readout alone), blend (frozen "
                             "model + OnlineBooster), booster-only or residual (frozen model + ResidualBooster)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=3e-4, help="OnlineAdapter's")
    parser.add_argument("--budget-s", type=float, default=1.5, help="seconds of fine-tuning per update")
    args = parser.parse_args()
    predictor = xfer_jax.load(args.checkpoint)
    data = dataset.load(args.data, max_stores=predictor.max_stores)
    if args.platform not in data.platform_names:
        raise SystemExit(f"error: no platform {args.platform!r} in {args.data}")
    on_platform = data.subset(data.platform == data.platform_names.index(args.platform))
    weights_by_hash = data.networks.get(args.network, {}).get(args.platform, {})
    task_of = {t["hash"]: i for i, t in enumerate(on_platform.tasks)}
    tasks = {task_of[h]: w for h, w in weights_by_hash.items() if h in task_of}
    if not tasks:
        raise SystemExit(f"error: {args.network} has no measured tasks on {args.platform}")
    guards = [g.strip() for g in args.guards.split(",")]
    unknown = [g for g in guards if g not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown guard {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    for guard in guards:
        print(json.dumps(replay(args.checkpoint, on_platform, tasks, guard, args.rounds, args.seed,
                                learning_rate=args.learning_rate, time_budget_s=args.budget_s)), flush=True)


if __name__ == "__main__":
    main()
