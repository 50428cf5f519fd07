"""Scores of a model on a test set (PCA, top-1 and top-5, overall, per network and per platform), and of a
checkpoint on its own split."""

from __future__ import annotations

import numpy as np

from . import dataset, metrics, splits
from .checkpoint import CheckpointError, load
from .dataset import Dataset
from .errors import UserError


def ranking_report(data: Dataset, scores: np.ndarray) -> dict:
    """{"pca", "top1", "top5", "per_platform": {...}, "per_network": {...}} on `data` (a test set).

    top-k per (network, platform) follows METRICS.md; the network and overall values average over the
    (network, platform) pairs present in the test set.
    """
    per_platform, per_network, pairs = {}, {}, []
    for p, name in enumerate(data.platform_names):
        on_platform = data.platform == p
        if not on_platform.any():
            continue
        per_platform[name] = {"pca": metrics.pca(scores[on_platform], data.latency[on_platform],
                                                 data.group[on_platform])}
        for network in sorted(data.networks):
            weights = data.network_weights(network, name)
            top = {k: metrics.topk_score(scores[on_platform], data.latency[on_platform],
                                         data.task[on_platform], weights, k) for k in (1, 5)}
            if top[1] is not None:
                pairs.append((network, name, top))
    for network in sorted({n for n, _, _ in pairs}):
        mine = [top for n, _, top in pairs if n == network]
        tasks = [t for p in data.platform_names for t in data.network_weights(network, p)]
        in_net = np.isin(data.task, tasks)
        per_network[network] = {"pca": metrics.pca(scores[in_net], data.latency[in_net], data.group[in_net]),
                                "top1": float(np.mean([t[1] for t in mine])),
                                "top5": float(np.mean([t[5] for t in mine]))}
    for name in per_platform:
        mine = [top for _, p, top in pairs if p == name]
        per_platform[name].update({"top1": float(np.mean([t[1] for t in mine])) if mine else None,
                                   "top5": float(np.mean([t[5] for t in mine])) if mine else None})
    return {
        "pca": metrics.pca(scores, data.latency, data.group),
        "top1": float(np.mean([t[1] for _, _, t in pairs])) if pairs else None,
        "top5": float(np.mean([t[5] for _, _, t in pairs])) if pairs else None,
        "programs": int(np.isfinite(data.latency).sum()),
        "per_platform": per_platform,
        "per_network": per_network,
    }


def checkpoint_split(checkpoint_path, data_path, *, split=None) -> tuple[Dataset, splits.Split]:
    """(dataset as the checkpoint saw it, its split rebuilt): the programs it trained on are split.train."""
    predictor = load(checkpoint_path)
    info = predictor.metadata.get("split", {})
    name = split or info.get("name")
    if name is None:
        raise CheckpointError(f"{checkpoint_path} records no split, so which programs it trained on is unknown")
    if info.get("name") and name != info["name"]:
        raise UserError(f"{checkpoint_path} was trained on the {info['name']} split; its {name} test set would "
                        f"hold training programs (evaluate it on {info['name']}, or train on {name})")
    data = _as_trained_on(dataset.load(data_path), predictor.metadata.get("data", {}), checkpoint_path, data_path)
    return data, splits.make_split(data, name, seed=info.get("seed", 0), holdout=splits.recorded_holdout(info),
                                   shots=info.get("shots", 0))


def evaluate_checkpoint(checkpoint_path, data_path, *, split=None) -> dict:
    """Scores on the test side of the checkpoint's own split, rebuilt on the dataset it was trained on."""
    data, chosen = checkpoint_split(checkpoint_path, data_path, split=split)
    test = data.subset(chosen.test)
    scores = load(checkpoint_path).predict_dataset(test)
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
