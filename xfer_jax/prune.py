"""Dataset pruning: keep a fraction of every group's measured programs, chosen by one of a few methods.

Selection happens per group (one task on one platform), because ranking only ever compares programs within a
group. Every group keeps at least two programs so it still carries ranking signal. Failed programs carry no
ranking signal and are dropped. Tasks shared by several networks are already stored once by the featuriser.

Methods:
    random      uniform sample of each group (the baseline every method must beat)
    dedup       drop near-duplicate programs (equal features after rounding), then sample the rest uniformly
    stratified  evenly spaced latency quantiles of each group, always including its fastest program
    kcenter     greedy k-center in feature space, started from the fastest program: covers the design space
    hard        what a model does not yet know: a pack-sum booster fitted on the pool ranks every group; keep the
                fastest program, then half the quota with the largest rank errors, then a uniform sample
    disagree    the same with the disagreement of two boosters that saw different rows and features: the
                programs whose rank the data does not pin down, without needing their latency (so it can pick what
                to measure on a new host)
    easy        the opposite of hard: half the quota with the smallest rank errors. With little data kept, typical
                programs teach more than surprising ones, which are often noise (Sorscher et al., "Beyond neural
                scaling laws", NeurIPS 2022)

Pruning for collection is the other question: which of a new host's candidates to measure at all, before any
latency exists there. `choose_to_measure` answers it with COLLECT_METHODS, which never read a candidate's latency:
    random      a uniform sample of each group
    kcenter     greedy k-center over the candidates' features, started from the model's best-scored candidate
    disagree    the best-scored candidate, then the ones two boosters (fitted on the other hosts, hardware vector
                included) rank most differently, then a uniform sample
    top-spread  half the quota from the top of the model's scores (where a tuner looks), the other half evenly
                spaced over the rest of its ranking (so the group still spans slow and fast)
"""

from __future__ import annotations

import numpy as np

from .dataset import Dataset
from .errors import UserError
from .normalize import signed_log

METHODS = ("random", "dedup", "stratified", "kcenter", "hard", "disagree", "easy")
_MODEL_METHODS = ("hard", "disagree", "easy")
COLLECT_METHODS = ("random", "kcenter", "disagree", "top-spread")


def _group_quota(size: int, keep: float) -> int:
    return min(size, max(2, int(round(size * keep))))


def _embedding(data: Dataset, index: np.ndarray) -> np.ndarray:
    """One vector per program: mean and max of its signed-log store rows, standardised over `index`."""
    rows = signed_log(data.features[index])
    mask = data.mask[index][..., None]
    mean = (rows * mask).sum(1) / np.maximum(mask.sum(1), 1)
    peak = np.where(mask, rows, -np.inf).max(1)
    peak[~np.isfinite(peak)] = 0.0
    vectors = np.concatenate([mean, peak], axis=1)
    return (vectors - vectors.mean(0)) / np.where(vectors.std(0) > 1e-6, vectors.std(0), 1.0)


def _dedup(members: np.ndarray, data: Dataset, quota: int, rng: np.random.Generator) -> np.ndarray:
    rounded = np.round(signed_log(data.features[members]) * data.mask[members][..., None], 2)
    _, first = np.unique(rounded.reshape(len(members), -1), axis=0, return_index=True)
    unique = members[np.sort(first)]
    return rng.permutation(unique)[:quota]


def _stratified(members: np.ndarray, data: Dataset, quota: int) -> np.ndarray:
    ordered = members[np.argsort(data.latency[members], kind="stable")]
    return ordered[np.unique(np.round(np.linspace(0, len(ordered) - 1, quota)).astype(int))]


def _kcenter(members: np.ndarray, vectors: np.ndarray, quota: int, start: int) -> np.ndarray:
    """Greedy k-center from members[start]: each next pick is the farthest from everything picked."""
    chosen = [start]
    distance = np.linalg.norm(vectors - vectors[chosen[0]], axis=1)
    while len(chosen) < quota:
        nxt = int(np.argmax(distance))
        if distance[nxt] <= 0:
            break  # the rest duplicate what is chosen
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(vectors - vectors[nxt], axis=1))
    return members[chosen]


def _rank_in_group(values: np.ndarray) -> np.ndarray:
    """Rank percentile of each value in its group, 0 for the largest (the fastest, for a score)."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks / max(len(values) - 1, 1)


def _surprise(data: Dataset, pool: np.ndarray, method: str, seed: int) -> np.ndarray:
    """Per pool program, higher means less known: the booster's rank error ("hard"), its negation ("easy": the
    best known first) or the rank disagreement of two boosters on different halves of the rows and features
    ("disagree"), each within its group."""
    from .baselines import PackSumXGB

    subset = data.subset(pool)
    if method in ("hard", "easy"):
        boosters = [PackSumXGB(rounds=100, seed=seed)]
    else:
        boosters = [PackSumXGB(rounds=100, seed=seed + i, subsample=0.5, colsample=0.5) for i in (0, 1)]
    scores = [b.fit(subset.features, subset.mask, subset.label).predict(subset.features, subset.mask)
              for b in boosters]
    surprise = np.zeros(len(pool))
    for group in np.unique(subset.group):
        at = np.flatnonzero(subset.group == group)
        first = _rank_in_group(scores[0][at])
        other = _rank_in_group(scores[1][at] if method == "disagree" else subset.label[at])
        surprise[at] = np.abs(first - other)
    return -surprise if method == "easy" else surprise


def _surprising(members: np.ndarray, surprise: np.ndarray, fastest: int, quota: int,
                rng: np.random.Generator) -> np.ndarray:
    """The fastest program, half the quota by surprise, the rest uniformly: all-surprise sets chase label noise."""
    by_surprise = [m for m in members[np.argsort(-surprise, kind="stable")] if m != fastest][: max(quota // 2 - 1, 0)]
    chosen = [fastest, *by_surprise]
    rest = rng.permutation(np.setdiff1d(members, chosen))
    return np.concatenate([chosen, rest[: quota - len(chosen)]]).astype(members.dtype)


def select(data: Dataset, keep: float, method: str, seed: int = 0, within: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of the programs to keep; `within` restricts pruning to those indices (e.g. a train split)."""
    if method not in METHODS:
        raise UserError(f"unknown pruning method {method!r}; choose from {', '.join(METHODS)}")
    if not 0.0 < keep <= 1.0:
        raise UserError(f"--keep must be a fraction in (0, 1], got {keep}")
    rng = np.random.default_rng(seed)
    pool = np.arange(len(data)) if within is None else np.asarray(within)
    pool = pool[np.isfinite(data.latency[pool])]
    vectors = _embedding(data, pool) if method == "kcenter" else None
    surprise = _surprise(data, pool, method, seed) if method in _MODEL_METHODS else None
    position = {int(p): i for i, p in enumerate(pool)}
    kept = []
    for group in np.unique(data.group[pool]):
        members = pool[data.group[pool] == group]
        quota = _group_quota(len(members), keep)
        if method == "random":
            kept.append(rng.permutation(members)[:quota])
        elif method == "dedup":
            kept.append(_dedup(members, data, quota, rng))
        elif method == "stratified":
            kept.append(_stratified(members, data, quota))
        elif method in _MODEL_METHODS:
            kept.append(_surprising(members, surprise[[position[int(m)] for m in members]],
                                    members[np.argmin(data.latency[members])], quota, rng))
        else:
            kept.append(_kcenter(members, vectors[[position[int(m)] for m in members]], quota,
                                 start=int(np.argmin(data.latency[members]))))
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, np.int64)


def _disagreement(data: Dataset, source: np.ndarray, candidates: np.ndarray, seed: int) -> np.ndarray:
    """Per candidate, how differently two boosters fitted on `source` (different rows and features, hardware
    vector included) rank it within its group."""
    from .baselines import PackSumXGB

    fit, new = data.subset(source), data.subset(candidates)
    scores = [PackSumXGB(rounds=100, seed=seed + i, subsample=0.5, colsample=0.5)
              .fit(fit.features, fit.mask, fit.label, fit.hardware).predict(new.features, new.mask, new.hardware)
              for i in (0, 1)]
    disagreement = np.zeros(len(candidates))
    for group in np.unique(new.group):
        at = np.flatnonzero(new.group == group)
        disagreement[at] = np.abs(_rank_in_group(scores[0][at]) - _rank_in_group(scores[1][at]))
    return disagreement


def _top_spread(members: np.ndarray, scores: np.ndarray, quota: int) -> np.ndarray:
    """The best-scored half of the quota, then the rest evenly over the remaining ranking, down to its worst."""
    ordered = members[np.argsort(-scores, kind="stable")]
    top = quota - quota // 2
    rest = ordered[top:]
    # positions counted back from the worst: n of them never start at the best of the rest, which the top half borders
    back = np.floor(np.arange(quota - top) * len(rest) / max(quota - top, 1)).astype(int)
    return np.concatenate([ordered[:top], rest[len(rest) - 1 - back][::-1]]).astype(members.dtype)


def choose_to_measure(data: Dataset, candidates: np.ndarray, per_group: int, method: str, scores: np.ndarray,
                      source: np.ndarray, seed: int = 0) -> np.ndarray:
    """Sorted indices of up to `per_group` candidates of each group to measure on new hardware.

    `scores` are a model's predictions for the candidates (higher is faster) and `source` indexes the measured
    programs of other hardware; no candidate's latency is read, so this can run before measuring."""
    if method not in COLLECT_METHODS:
        raise UserError(f"unknown collection method {method!r}; choose from {', '.join(COLLECT_METHODS)}")
    if per_group < 1:
        raise UserError(f"programs per group must be at least 1, got {per_group}")
    candidates = np.asarray(candidates)
    rng = np.random.default_rng(seed)
    vectors = _embedding(data, candidates) if method == "kcenter" else None
    disagreement = _disagreement(data, source, candidates, seed) if method == "disagree" else None
    chosen = []
    for group in np.unique(data.group[candidates]):
        at = np.flatnonzero(data.group[candidates] == group)
        members, quota = candidates[at], min(per_group, len(at))
        best = int(np.argmax(scores[at]))
        if method == "random":
            chosen.append(rng.permutation(members)[:quota])
        elif method == "kcenter":
            chosen.append(_kcenter(members, vectors[at], quota, start=best))
        elif method == "disagree":
            chosen.append(_surprising(members, disagreement[at], members[best], quota, rng))
        else:
            chosen.append(_top_spread(members, scores[at], quota))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
