"""Rank blends of saved test scores (`bench/ablate_model.py --save-scores DIR`) without training anything: each
blend averages the z-scored scores of the variants it names, as `ablate_model.py`'s "A | B" does in one run.

    python bench/blend_scores.py --scores DIR --split by-host --holdout znver5 --steps 3000 "seed=0 | seed=1" \
        "hardware_noise=0.5,seed=0 | xgb+hw"

One JSON line per blend: test PCA / top-1 / top-5 on the split's test side (the split must be the one the scores
were saved under: same data, split, holdout and split seed).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from ablate_model import scores_file
from xfer_jax import dataset, splits
from xfer_jax.evaluate import ranking_report
from xfer_jax.metrics import zscore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("blends", nargs="+")
    parser.add_argument("--scores", type=pathlib.Path, required=True)
    parser.add_argument("--data", default="data/v1/dataset")
    parser.add_argument("--split", default="by-task")
    parser.add_argument("--holdout", default=None)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    data = dataset.load(args.data)
    split = splits.make_split(data, args.split, seed=args.split_seed, holdout=args.holdout)
    test = data.subset(split.test)
    for blend in args.blends:
        members = []
        for variant in (part.strip() for part in blend.split("|")):
            path = args.scores / scores_file(split.name, args.holdout, args.split_seed, args.steps, variant)
            if not path.exists():
                parser.error(f"no saved scores {path}")
            members.append(np.load(path))
        report = ranking_report(test, sum(zscore(s) for s in members) / len(members))
        print(json.dumps({"blend": blend, "split": split.name, "holdout": args.holdout,
                          **{k: round(report[k], 4) for k in ("pca", "top1", "top5")}}), flush=True)


if __name__ == "__main__":
    main()
