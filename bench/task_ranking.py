"""Zero-shot ranking of one platform's measured programs, task by task, for several checkpoints (and optionally
xgb-pretrained's booster): which operator families a model ranks well, and which at chance.

    python bench/task_ranking.py --data data/v1/dataset --platform avx2-2t@znver3 --tasks attention \
        --checkpoint A=runs/ck-a --checkpoint B=runs/ck-b [--booster-on-programs 102616]

Per checkpoint, one JSON line: PCA, top-1 and top-5 (METRICS.md's top-k score, of the task alone) of
each task whose name contains --tasks, and their mean over every other task of the platform. No TVM. The platform
should be one the checkpoints never trained on, or the numbers are not zero-shot. --booster-on-programs N adds
xgb-pretrained's pack-sum booster fitted on every other platform's programs among the dataset's first N rows (N: the
rows, measured and failed, of the dataset a checkpoint trained on; repeat the flag for several).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from xfer_jax import dataset
from xfer_jax.baselines import PackSumXGB
from xfer_jax.checkpoint import load
from xfer_jax.metrics import group_pca, topk_score


def per_task(data: dataset.Dataset, scores: np.ndarray) -> dict:
    """{task name:hash: {n, pca, top1, top5}} over the tasks of `data` (one platform's programs)."""
    out = {}
    for t in np.unique(data.task):
        mine = data.task == t
        s, latency = scores[mine], data.latency[mine]
        if len(latency) < 2:
            continue
        one_task = np.zeros(len(latency), int)  # METRICS.md's top-k score of this task alone
        out[f"{data.tasks[t]['name']}:{data.tasks[t]['hash'][:8]}"] = {
            "n": int(len(latency)), "pca": round(group_pca(s, latency)[0], 3),
            **{f"top{k}": round(float(topk_score(s, latency, one_task, {0: 1.0}, k)), 3) for k in (1, 5)}}
    return out


def summary(label: str, rows: dict, tasks: str) -> dict:
    chosen = {k: v for k, v in rows.items() if tasks in k.split(":")[0]}
    rest = [v for k, v in rows.items() if k not in chosen]
    return {"model": label, "tasks": chosen, "other_tasks": len(rest),
            "other_mean": {m: round(float(np.mean([v[m] for v in rest])), 3) for m in ("pca", "top1", "top5")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--platform", required=True, help="the held-out platform whose programs are ranked")
    parser.add_argument("--tasks", required=True, help="report the tasks whose name contains this")
    parser.add_argument("--checkpoint", action="append", default=[], help="LABEL=PATH (repeat)")
    parser.add_argument("--booster-on-programs", type=int, action="append", default=[])
    args = parser.parse_args()
    data = dataset.load(args.data)
    if args.platform not in data.platform_names:
        raise SystemExit(f"error: {args.platform} is not in {args.data} ({', '.join(data.platform_names)})")
    platform = data.platform_names.index(args.platform)
    test = np.flatnonzero((data.platform == platform) & np.isfinite(data.latency))
    held = data.subset(test)
    for spec in args.checkpoint:
        label, _, path = spec.partition("=")
        print(json.dumps(summary(label, per_task(held, load(path or label).predict_dataset(held)), args.tasks)), flush=True)
    for programs in args.booster_on_programs:
        fit = data.subset(np.flatnonzero(data.platform[:programs] != platform))
        booster = PackSumXGB().fit(fit.features, fit.mask, fit.label)
        scores = booster.predict(held.features, held.mask)
        print(json.dumps(summary(f"xgb-pretrained on the first {programs} programs", per_task(held, scores),
                                 args.tasks)), flush=True)


if __name__ == "__main__":
    main()
