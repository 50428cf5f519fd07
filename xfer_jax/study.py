"""Models side by side on the very same splits: xfer, its noHW ablation, the TenSet MLP and XGBoost."""

from __future__ import annotations

import pathlib
import tempfile

import numpy as np

from . import dataset, splits, train
from .baselines import PackSumXGB
from .checkpoint import load
from .evaluate import ranking_report
from .model import ModelConfig

MODELS = ("xfer", "noHW", "mlp", "xgb")
SHOTS = (0, 8, 32, 64)


def split_specs(data: dataset.Dataset, names: list[str], seed: int = 0) -> list[splits.Split]:
    """Every requested split; by-platform expands to each platform x each few-shot budget."""
    chosen = []
    for name in names:
        if name == "by-platform":
            chosen += [splits.by_platform(data, p, shots=k, seed=seed) for p in data.platform_names for k in SHOTS]
        else:
            chosen.append(splits.make_split(data, name, seed=seed))
    return chosen


def _model_config(name: str) -> ModelConfig:
    return {"xfer": ModelConfig(), "noHW": ModelConfig(use_hardware=False),
            "mlp": ModelConfig(kind="mlp", use_hardware=False)}[name]


def scores_of(name: str, data: dataset.Dataset, split: splits.Split, steps: int, seed: int,
              work: pathlib.Path) -> np.ndarray:
    """Train model `name` on split.train and score split.test."""
    test = data.subset(split.test)
    if name == "xgb":
        fit = data.subset(split.train)
        model = PackSumXGB(seed=seed).fit(fit.features, fit.mask, fit.label)
        return model.predict(test.features, test.mask)
    rng = np.random.default_rng(seed + 1)
    valid = rng.random(len(split.train)) < 0.1
    config = train.TrainConfig(steps=steps, seed=seed, eval_every=max(steps // 5, 1))
    out = work / f"{name}-{split.name}-{'-'.join(split.held_out)}"
    train.train(data, split.train[~valid], split.train[valid], _model_config(name), config, out,
                show_progress=False)
    return load(out).predict(test.features, test.mask, test.workload, test.hardware)


def compare(data: dataset.Dataset, names: list[str], models: list[str], steps: int = 1500, seed: int = 0,
            work: pathlib.Path | None = None, log=print) -> dict:
    """{split label: {model: {"pca", "top1", "top5", ...}}}; by-platform labels name the held-out platform."""
    results: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = pathlib.Path(work or scratch)
        for split in split_specs(data, names, seed):
            label = split.name + (f"/{split.held_out[0]}" if split.name.startswith("by-platform") else "")
            log(split.describe())
            results[label] = {}
            test = data.subset(split.test)
            for name in models:
                report = ranking_report(test, scores_of(name, data, split, steps, seed, work))
                results[label][name] = report
                log(f"  {name:5s} pca {report['pca']:.4f} top1 {report['top1'] or 0:.4f} top5 {report['top5'] or 0:.4f}")
    return results
