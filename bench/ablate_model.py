"""Model ablations on one split: each variant is a set of ModelConfig / TrainConfig fields, trained and tested alike.

    python bench/ablate_model.py --split by-task --steps 1500 "" "store_hidden=128" "store_hidden=128,dim=64,seed=1"
    python bench/ablate_model.py --split by-host --holdout znver5 xgb xgb+hw "hardware_in_stores=true,loss=pairwise"

A variant is comma-separated FIELD=VALUE pairs of ModelConfig or TrainConfig (`seed` sets the training seed;
values are ints, floats, true/false or words; `ensemble=N` averages N seeds); "" is the default model; a bare `xgb` or `xgb+hw` names the
pack-sum baseline without or with the hardware vector (`xgb+hw,seed=1`); "A | B" blends variants by averaging their
z-scored scores (each variant trains once per run, however many blends name it). One JSON line per variant on stdout:
validation PCA, and test PCA / top-1 / top-5 on the split's test side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import tempfile
import time

import numpy as np

import xfer_jax
from xfer_jax import dataset, splits, train
from xfer_jax.baselines import PackSumXGB
from xfer_jax.cascade import cascade_scores, prescreen
from xfer_jax.evaluate import ranking_report
from xfer_jax.hardware import HARDWARE_FEATURE_NAMES
from xfer_jax.metrics import zscore
from xfer_jax.model import ModelConfig


def parse_value(text: str):
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def scores_file(split_name: str, holdout, split_seed: int, steps: int, variant: str) -> str:
    """The .npy name under which --save-scores keeps a variant's test scores (bench/blend_scores.py reads it)."""
    name = f"{split_name}-{holdout}-split{split_seed}-{steps}-{variant or 'default'}"
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", name) + ".npy"


def blended_scores(variant: str, data, split, steps: int, trained: dict,
                   keep: pathlib.Path | None = None) -> tuple[np.ndarray, dict]:
    """Scores of one variant, or the mean z-score of the " | "-separated variants it names; `trained` keeps
    every variant's scores so that each trains once."""
    parts = [part.strip() for part in variant.split("|")]
    if len(parts) == 1:
        if variant not in trained:
            trained[variant] = scores_of(variant, data, split, steps, keep)
        return trained[variant]
    runs = [blended_scores(part, data, split, steps, trained, keep) for part in parts]
    return sum(zscore(s) for s, _ in runs) / len(runs), {"members": [extra for _, extra in runs]}


def two_stage_scores(cheap: np.ndarray, full: np.ndarray, group: np.ndarray, keep: float) -> np.ndarray:
    """Tuning's cascade (`xfer-jax tune --prescreen`) on a test set, group by group."""
    out = np.zeros(len(full))
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        top, rest = prescreen(cheap[members], keep)
        out[members] = cascade_scores(cheap[members], top, rest, full[members][top])
    return out


def trace_only_reports(predictor, test) -> dict:
    """For a model trained with store_dropout: its ranking from trace tokens alone (every store masked), and the
    cascade that featurizes only the best quarter by that ranking."""
    cheap = predictor.predict_from_traces(test.workload, test.hardware, test.trace_ids, test.trace_values)
    full = predictor.predict_dataset(test)
    reports = {"trace_only": ranking_report(test, cheap),
               "cascade_25": ranking_report(test, two_stage_scores(cheap, full, test.group, 0.25))}
    return {name: {k: round(r[k], 4) for k in ("pca", "top1", "top5")} for name, r in reports.items()}


def scores_of(variant: str, data, split, steps: int, keep: pathlib.Path | None = None) -> tuple[np.ndarray, dict]:
    """(test scores, extra fields of the JSON line); a trained model's checkpoint goes to keep/<variant> if given."""
    fields = {}
    for pair in filter(None, variant.split(",")):
        key, _, value = pair.partition("=")
        fields.update({key: parse_value(value)} if value else {"kind": key})  # a bare word names a baseline
    seed = fields.pop("seed", 0)
    members = fields.pop("ensemble", 1)
    test = data.subset(split.test)
    if members > 1:  # z-scored scores of `members` seeds, averaged
        text = lambda v: str(v).lower() if isinstance(v, bool) else str(v)  # noqa: E731
        runs = [scores_of(",".join(f"{k}={text(v)}" for k, v in {**fields, "seed": seed + i}.items()), data, split,
                          steps, keep)
                for i in range(members)]
        return sum(zscore(s) for s, _ in runs) / members, {"members": [extra for _, extra in runs]}
    if fields.get("kind") in ("xgb", "xgb+hw"):
        fit = data.subset(split.train)
        hw = fields["kind"] == "xgb+hw"
        model = PackSumXGB(seed=43 + seed).fit(fit.features, fit.mask, fit.label, fit.hardware if hw else None)
        return model.predict(test.features, test.mask, test.hardware if hw else None), {}
    train_names = {f.name for f in dataclasses.fields(train.TrainConfig)}
    train_fields = {k: v for k, v in fields.items() if k in train_names}
    model_fields = {k: v for k, v in fields.items() if k not in train_names}
    config = train.TrainConfig(**{"steps": steps, **train_fields, "seed": seed})
    fit, valid = splits.early_stopping_split(data, split, seed, config.validation)
    with tempfile.TemporaryDirectory() as scratch:
        out = keep / re.sub(r"[^A-Za-z0-9.=+-]+", "_", variant or "default") if keep else pathlib.Path(scratch)
        result = train.train(data, fit, valid, ModelConfig(**model_fields), config, out,
                             {"name": split.name, "holdout": list(split.held_out), "seed": seed},
                             show_progress=False)
        predictor = xfer_jax.load(out)
    extra = {"valid_pca": round(result["best"]["pca"], 4), "best_step": result["best"]["step"]}
    if config.store_dropout and predictor.config.trace_tokens:  # a model without traces trained on every store
        extra.update(trace_only_reports(predictor, test))
    return predictor.predict_dataset(test), extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--data", default="data/v1/dataset")
    parser.add_argument("--split", default="by-task")
    parser.add_argument("--holdout", default=None, help="network, platform or host the split holds out")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--shots", type=int, default=0, help="programs per task of the held-out hardware in training")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--drop-hardware", action="append", default=[], metavar="NAME",
                        help="set this hardware-vector entry (xfer_jax.hardware.HARDWARE_FEATURE_NAMES) to 0 on every "
                             "platform, for every variant: what the models learn without it (repeatable)")
    parser.add_argument("--save-checkpoints", type=pathlib.Path, default=None, metavar="DIR",
                        help="keep each trained variant's checkpoint in DIR/<variant> (e.g. to tune with it)")
    parser.add_argument("--save-scores", type=pathlib.Path, default=None,
                        help="also save each variant's test scores here (.npy), to blend or ensemble them later")
    args = parser.parse_args()
    data = dataset.load(args.data)
    for name in args.drop_hardware:
        if name not in HARDWARE_FEATURE_NAMES:
            parser.error(f"--drop-hardware {name!r}: not one of {', '.join(HARDWARE_FEATURE_NAMES)}")
        hardware = data.hardware.copy()
        hardware[:, HARDWARE_FEATURE_NAMES.index(name)] = 0.0
        data = dataclasses.replace(data, hardware=hardware)
    split = splits.make_split(data, args.split, seed=args.split_seed, holdout=args.holdout, shots=args.shots)
    print(split.describe(), flush=True)
    trained = {}
    for variant in args.variants:
        start = time.time()
        scores, extra = blended_scores(variant, data, split, args.steps, trained, args.save_checkpoints)
        report = ranking_report(data.subset(split.test), scores)
        if args.save_scores:
            args.save_scores.mkdir(parents=True, exist_ok=True)
            np.save(args.save_scores / scores_file(split.name, args.holdout, args.split_seed, args.steps, variant),
                    scores)
        print(json.dumps({"variant": variant or "default", "split": split.name, "holdout": args.holdout,
                          "shots": args.shots, "steps": args.steps, "dropped_hardware": args.drop_hardware, **extra,
                          **{k: round(report[k], 4) for k in ("pca", "top1", "top5")},
                          "seconds": round(time.time() - start)}), flush=True)


if __name__ == "__main__":
    main()
