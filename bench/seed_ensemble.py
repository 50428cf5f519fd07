"""Seed ensembles from the transfer study's cached checkpoints (`xfer-jax report`'s work folder), zero-shot on one
held-out host or platform, without training anything: an ensemble averages its members' z-scored scores.

    python bench/seed_ensemble.py --by host --holdout znver3 --steps 8000
    python bench/seed_ensemble.py --by platform --holdout avx512-2t@znver5 --steps 8000 --booster --json out.json

Members: every seed of xfer and noHW whose checkpoint the study cached for that holdout and budget. `--booster` also
fits xgb+hw once (minutes on 2 cores) and blends it with each ensemble. Every row is scored on the test side of
the split built with --split-seed: held-out hardware is outside every seed's training side, so no member saw a
test program. One line per model (PCA / top-1 / top-5).
"""

from __future__ import annotations

import argparse
import json
import pathlib

from xfer_jax import dataset, splits
from xfer_jax.baselines import PackSumXGB
from xfer_jax.checkpoint import load
from xfer_jax.errors import UserError
from xfer_jax.evaluate import ranking_report
from xfer_jax.metrics import zscore
from xfer_jax.study import Study

MODELS = ("xfer", "noHW")


def cached_members(data, work: pathlib.Path, by: str, holdout: str, steps: int, split) -> dict[str, pathlib.Path]:
    """{"<model>-seed<s>": checkpoint} for every seed the study trained on this holdout."""
    members = {}
    for model in MODELS:
        for seed in range(10):
            path = Study(data, work, steps=steps, seed=seed, log=lambda _: None).checkpoint_path(model, split)
            if (path / "done").exists():
                members[f"{model}-seed{seed}"] = path
    if not members:
        raise SystemExit(f"error: no cached xfer or noHW checkpoint for by-{by} {holdout} at {steps} steps under "
                         f"{work}; compute the part first (xfer-jax report --transfer-only --{by}s {holdout})")
    return members


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--by", choices=("host", "platform"), required=True)
    parser.add_argument("--holdout", required=True)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--data", type=pathlib.Path, default=pathlib.Path("data/v1/dataset"))
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path("reports/work"))
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--booster", action="store_true", help="also fit xgb+hw and blend it with each ensemble")
    parser.add_argument("--json", type=pathlib.Path, help="write every row here")
    args = parser.parse_args()
    data = dataset.load(args.data)
    try:
        split = splits.make_split(data, f"by-{args.by}", holdout=args.holdout, shots=0, seed=args.split_seed)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    test = data.subset(split.test)
    members = cached_members(data, args.work, args.by, args.holdout, args.steps, split)
    scores = {name: zscore(load(path).predict_dataset(test)) for name, path in members.items()}
    ensembles = {name: [name] for name in scores}
    for model in MODELS:
        seeds = [name for name in scores if name.startswith(f"{model}-")]
        if len(seeds) > 1:
            ensembles[f"{model} x{len(seeds)}"] = seeds
    if len({name.split("-seed")[0] for name in scores}) > 1:
        ensembles[f"xfer+noHW x{len(scores)}"] = list(scores)
    ranked = {name: sum(scores[n] for n in names) / len(names) for name, names in ensembles.items()}
    if args.booster:  # an even blend: each ensemble's z-score and the booster's, half and half
        fit = data.subset(split.train)
        booster = PackSumXGB(seed=args.split_seed).fit(fit.features, fit.mask, fit.label, fit.hardware)
        ranked["xgb+hw"] = zscore(booster.predict(test.features, test.mask, test.hardware))
        ranked.update({f"{name} + xgb+hw": (zscore(ranked[name]) + ranked["xgb+hw"]) / 2 for name in ensembles})
    rows = {}
    for name, ranking in ranked.items():
        report = ranking_report(test, ranking)
        rows[name] = {metric: report[metric] for metric in ("pca", "top1", "top5")}
        print(f"{name:28s} {report['pca']:.4f} / {report['top1']:.3f} / {report['top5']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"by": args.by, "holdout": args.holdout, "steps": args.steps,
                                         "split_seed": args.split_seed, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
