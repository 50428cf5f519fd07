"""Model-shape ablations on one split: each variant is a set of ModelConfig fields, trained and tested alike.

    python bench/ablate_model.py --split by-task --steps 1500 "" "store_hidden=128" "store_hidden=128,dim=64,seed=1"

A variant is comma-separated FIELD=INT pairs of ModelConfig (`seed` sets the training seed); "" is the default
model. One JSON line per variant on stdout: validation PCA, and test PCA / top-1 / top-5 on the split's test side.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

import xfer_jax
from xfer_jax import dataset, splits, train
from xfer_jax.evaluate import ranking_report
from xfer_jax.model import ModelConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--data", default="data/v1/dataset")
    parser.add_argument("--split", default="by-task")
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    data = dataset.load(args.data)
    split = splits.make_split(data, args.split, seed=0)
    fit, valid = splits.early_stopping_split(split.train, 0)
    test = data.subset(split.test)
    for variant in args.variants:
        fields = {key: int(value) for key, value in (pair.split("=") for pair in variant.split(",") if pair)}
        seed = fields.pop("seed", 0)
        start = time.time()
        with tempfile.TemporaryDirectory() as out:
            result = train.train(data, fit, valid, ModelConfig(**fields), train.TrainConfig(steps=args.steps, seed=seed),
                                 pathlib.Path(out), {"name": args.split, "holdout": [], "shots": 0, "seed": 0},
                                 show_progress=False)
            predictor = xfer_jax.load(out)
        scores = predictor.predict(test.features, test.mask, test.workload, test.hardware)
        report = ranking_report(test, scores)
        print(json.dumps({"variant": variant or "default", "seed": seed, "split": args.split, "steps": args.steps,
                          "valid_pca": round(result["best"]["pca"], 4),
                          **{k: round(report[k], 4) for k in ("pca", "top1", "top5")},
                          "seconds": round(time.time() - start)}), flush=True)


if __name__ == "__main__":
    main()
