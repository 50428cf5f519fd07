"""Zero-shot ranking of a checkpoint, of pack-sum XGBoost fitted on the same training programs (xgb-pretrained's
booster), and of the two together as `xfer-jax tune --compare xfer+xgb` ranks: z-scores added per task and platform.

    python bench/partner_screen.py runs/ck-without-znver5 --booster BOOSTER.json [--data data/v1/dataset]

On the checkpoint's own test set (a by-host checkpoint: the held-out host). BOOSTER.json is read when it exists (a tune
job keeps one under <job>/xgb-pretrained/), else fitted on the checkpoint's training programs and written there.
Prints PCA, top-1 and top-5, overall and per network, for weights 0.3 / 0.5 / 0.7 on xfer.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

from xfer_jax import metrics
from xfer_jax.baselines import PackSumXGB
from xfer_jax.checkpoint import load
from xfer_jax.evaluate import checkpoint_split, ranking_report


def per_group_zscore(scores: np.ndarray, group: np.ndarray) -> np.ndarray:
    out = np.empty(len(scores))
    for g in np.unique(group):
        at = group == g
        out[at] = metrics.zscore(scores[at])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=pathlib.Path)
    parser.add_argument("--booster", type=pathlib.Path, required=True)
    parser.add_argument("--data", default="data/v1/dataset")
    args = parser.parse_args()
    data, split = checkpoint_split(args.checkpoint, args.data)
    if args.booster.exists():
        booster = PackSumXGB.load(args.booster)
    else:
        fit = data.subset(split.train)
        booster = PackSumXGB().fit(fit.features, fit.mask, fit.label)
        booster.save(args.booster)
    test = data.subset(split.test)
    xfer = per_group_zscore(load(args.checkpoint).predict_dataset(test), test.group)
    xgb = per_group_zscore(booster.predict(test.features, test.mask), test.group)
    print(f"{split.describe()}: {int(np.isfinite(test.latency).sum())} test programs")
    for name, scores in [("xfer", xfer), ("xgb-pretrained", xgb), *[(f"xfer+xgb, {w:g} xfer", w * xfer + (1 - w) * xgb)
                                                                      for w in (0.3, 0.5, 0.7)]]:
        r = ranking_report(test, scores)
        networks = " ".join(f"{n} {v['pca']:.3f}/{v['top1']:.2f}" for n, v in r["per_network"].items())
        print(f"{name:22s} PCA {r['pca']:.3f} top-1 {r['top1']:.3f} top-5 {r['top5']:.3f} | PCA/top-1: {networks}")


if __name__ == "__main__":
    main()
