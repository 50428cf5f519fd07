"""Glue the CLI calls: train a model on a named split, evaluate a checkpoint on its split."""

from __future__ import annotations

import pathlib

import numpy as np

from . import dataset, splits, train
from .checkpoint import CheckpointError, load
from .errors import UserError
from .evaluate import ranking_report
from .model import ModelConfig


def train_on_split(data_path, split_name: str, out, *, holdout=None, shots=0, steps=3000, loss="lambdarank",
                   use_hardware=True, size="base", seed=0, show_progress=True) -> dict:
    if loss not in ("lambdarank", "pairwise", "mse"):
        raise UserError(f"unknown loss {loss!r}; choose lambdarank, pairwise or mse")
    if size not in ("base", "small"):
        raise UserError(f"unknown model size {size!r}; choose base or small")
    data = dataset.load(data_path)
    split = splits.make_split(data, split_name, seed=seed, holdout=holdout, shots=shots)
    print(split.describe())
    fit, valid = splits.early_stopping_split(split.train, seed)
    model_config = ModelConfig() if size == "base" else ModelConfig.small()
    if not use_hardware:
        model_config = ModelConfig(**{**model_config.to_dict(), "use_hardware": False})
    config = train.TrainConfig(steps=steps, loss=loss, seed=seed)
    split_info = {"name": split_name, "holdout": list(split.held_out), "shots": shots, "seed": seed,
                  "train_programs": int(len(split.train)), "test_programs": int(len(split.test))}
    return train.train(data, fit, valid, model_config, config, pathlib.Path(out), split_info, show_progress)


def evaluate_checkpoint(checkpoint_path, data_path, *, split=None) -> dict:
    """Scores on the test side of the checkpoint's own split, rebuilt on the dataset it was trained on."""
    predictor = load(checkpoint_path)
    info = predictor.metadata.get("split", {})
    name = split or info.get("name")
    if name is None:
        raise CheckpointError(f"{checkpoint_path} records no split; pass --split")
    if info.get("name") and name != info["name"]:
        raise UserError(f"{checkpoint_path} was trained on the {info['name']} split; its {name} test set would "
                        f"hold training programs (evaluate it on {info['name']}, or train on {name})")
    data = _as_trained_on(dataset.load(data_path), predictor.metadata.get("data", {}), checkpoint_path, data_path)
    holdout = (info.get("holdout") or [None])[0]
    chosen = splits.make_split(data, name, seed=info.get("seed", 0), holdout=holdout, shots=info.get("shots", 0))
    test = data.subset(chosen.test)
    scores = predictor.predict(test.features, test.mask, test.workload, test.hardware)
    return {"split": chosen.describe(), **ranking_report(test, scores)}


def _as_trained_on(data: dataset.Dataset, trained_on: dict, checkpoint_path, data_path) -> dataset.Dataset:
    """The dataset as the checkpoint saw it. Datasets only grow by appended shards, so a grown one starts with
    the training dataset; anything else would rebuild a different split and leak training programs."""
    def same(candidate: dataset.Dataset) -> bool:
        here = dataset.summary(candidate)
        here["programs_per_platform"] = {p: n for p, n in here["programs_per_platform"].items() if n}
        return all(here[k] == trained_on[k] for k in ("programs", "failed", "tasks", "groups", "programs_per_platform"))

    if not trained_on or same(data):
        return data
    size = trained_on["programs"] + trained_on["failed"]
    if len(data) > size and same(prefix := data.subset(np.arange(size))):
        return prefix
    raise UserError(f"{checkpoint_path} was trained on a dataset of {trained_on['programs']} programs that "
                    f"{data_path} ({dataset.summary(data)['programs']}) does not begin with: its split would differ "
                    "and leak training programs into the test set; evaluate on that dataset or retrain")


def plot_comparison(results: dict, path: pathlib.Path) -> None:
    """Grouped bars: PCA and top-5 of each model on each split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results)
    models = sorted({m for row in results.values() for m in row})
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 0.6 * len(labels) * len(models)), 7), sharex=True)
    width = 0.8 / max(len(models), 1)
    for axis, metric in zip(axes, ("pca", "top5")):
        for i, model in enumerate(models):
            values = [(results[label].get(model) or {}).get(metric) or 0.0 for label in labels]
            axis.bar(np.arange(len(labels)) + i * width, values, width, label=model)
        axis.set_ylabel(metric)
        axis.set_ylim(0.4 if metric == "pca" else 0.0, 1.0)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(ncol=len(models))
    axes[1].set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=45, ha="right")
    fig.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
