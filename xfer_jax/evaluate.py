"""Scores of a model on a test set: PCA, top-1 and top-5, overall, per network and per platform."""

from __future__ import annotations

import numpy as np

from . import metrics
from .dataset import Dataset


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
