"""Ranking candidates for a search: scores it can sample by, and the two-stage cascade of `xfer-jax tune --prescreen`
(a cheap ranking for every candidate, the whole model for the best few)."""

from __future__ import annotations

import numpy as np


def search_weights(scores: np.ndarray) -> np.ndarray:
    """A model's scores as MetaSchedule's evolutionary search reads them: positive, in the same order.

    The search clips every score at 0 (PredictNormalizedScore) and draws parents in proportion to the scores
    (MakeMultinomialSampler). A ranking model's scores have no fixed zero: under the shipped model, in 39% of
    200 (task, config) groups of data/v1 half the programs or more score below 0 (all tied at 0 for the search),
    and in 1.5% all do, so such a task always breeds from its first candidate. softplus keeps the order and
    leaves scores above ~3 nearly as they are."""
    return np.logaddexp(0.0, np.asarray(scores, np.float64))


def prescreen(cheap: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """(top, rest): the indices of the best `keep` fraction of the candidates by `cheap` (at least one), and of
    the others, best first."""
    order = np.argsort(-np.asarray(cheap), kind="stable")
    return np.split(order, [max(1, int(np.ceil(keep * len(order))))])


def cascade_scores(cheap: np.ndarray, top: np.ndarray, rest: np.ndarray, full_top: np.ndarray) -> np.ndarray:
    """Search weights for a prescreened set: `top` ordered by the whole model's `full_top`, every one above all of
    `rest`, which keep their `cheap` order far below (rarely parents)."""
    scores = np.empty(len(cheap), np.float64)
    below = search_weights(np.asarray(cheap)[rest])
    scores[rest] = 1e-3 * below / max(below.max(initial=0.0), 1e-12)
    scores[top] = 1e-3 + search_weights(full_top)
    return scores
