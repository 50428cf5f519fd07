"""Ranking metrics exactly as ../shared/METRICS.md defines them. numpy in, floats out.

A group is one task on one hardware config. Failed programs (latency inf) are never among the pairs that
count, and never the best of a group.
"""

from __future__ import annotations

import numpy as np


def zscore(scores: np.ndarray) -> np.ndarray:
    """Scores on a common scale (mean 0, spread 1), so that two models' scores can be added."""
    scores = np.asarray(scores, np.float64)
    return (scores - scores.mean()) / max(scores.std(), 1e-9)


def _groups(group: np.ndarray):
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    return np.split(order, bounds)


def group_pca(scores: np.ndarray, latency: np.ndarray) -> tuple[float, int]:
    """(fraction of correctly ordered pairs, number of pairs) in one group; ties in latency are excluded."""
    ok = np.isfinite(latency)
    s, lat = scores[ok], latency[ok]
    if len(lat) < 2:
        return 0.5, 0
    faster = lat[:, None] < lat[None, :]  # i truly faster than j
    pairs = int(faster.sum())
    if pairs == 0:
        return 0.5, 0
    correct = (s[:, None] > s[None, :]) & faster
    tied = (s[:, None] == s[None, :]) & faster
    return float((correct.sum() + 0.5 * tied.sum()) / pairs), pairs


def pca(scores: np.ndarray, latency: np.ndarray, group: np.ndarray) -> float:
    """Mean group PCA weighted by the number of test programs in each group (groups of n <= 1 weigh 0)."""
    total, weight = 0.0, 0.0
    for index in _groups(group):
        value, pairs = group_pca(scores[index], latency[index])
        if pairs:
            n = int(np.isfinite(latency[index]).sum())
            total += value * n
            weight += n
    return total / weight if weight else 0.5


def topk_score(scores: np.ndarray, latency: np.ndarray, task: np.ndarray, weights: dict[int, float],
               k: int) -> float | None:
    """sum_t w_t L*(t) / sum_t w_t L_k(t) over the network's tasks present in the data; None if none are."""
    numerator = denominator = 0.0
    for t, w in weights.items():
        index = np.flatnonzero((task == t) & np.isfinite(latency))
        if len(index) == 0:
            continue
        best = latency[index].min()
        top = index[np.argsort(-scores[index], kind="stable")[:k]]
        numerator += w * best
        denominator += w * latency[top].min()
    return numerator / denominator if denominator else None
