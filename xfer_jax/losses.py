"""Ranking losses over groups, shaped like optax's: (scores, labels, *, where=None) -> scalar.

Inputs are [G, n]: G groups (one task on one hardware config) of n programs each. `where` marks real
programs; padded positions never contribute. A group with fewer than two real programs contributes nothing.
Labels are normalised throughput in [0, 1], higher is faster.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _pair_mask(labels, where):
    """[G, n, n]: True where i is strictly better than j and both are real."""
    valid = where[:, :, None] & where[:, None, :]
    return valid & (labels[:, :, None] > labels[:, None, :])


def _mean_over_pairs(per_pair, pairs):
    count = pairs.sum()
    return jnp.where(count > 0, jnp.where(pairs, per_pair, 0.0).sum() / jnp.maximum(count, 1), 0.0)


def pairwise_logistic(scores, labels, *, where=None):
    """Mean over ordered pairs (i better than j) of log(1 + exp(-(s_i - s_j))).

    Example: scores [[2., 0.]], labels [[1., .5]] -> log(1 + e^-2) = 0.1269.
    """
    where = jnp.ones_like(labels, bool) if where is None else where
    pairs = _pair_mask(labels, where)
    diff = scores[:, :, None] - scores[:, None, :]
    return _mean_over_pairs(jax.nn.softplus(-diff), pairs)


def lambdarank(scores, labels, *, where=None):
    """LambdaRank: pairwise logistic loss, each pair weighted by |delta NDCG| of swapping the two programs.

    Gains are the labels, discounts 1 / log2(1 + rank) with ranks from the current scores (no gradient
    through the ranks), normalised by the ideal DCG of the group. Pairs near the top of the ranking, where a
    tuner picks its candidates, weigh most.

    Example: scores [[0., 1.]], labels [[1., .5]] (the worse program is ranked first). Ranks are (2, 1),
    discounts (1/log2 3, 1), ideal DCG = 1 + .5/log2 3 = 1.3155; swapping changes DCG by
    |(1 - .5) * (1/log2 3 - 1)| = .1845, so |dNDCG| = .1403 and the loss is .1403 * log(1 + e) = .1842.
    """
    where = jnp.ones_like(labels, bool) if where is None else where
    pairs = _pair_mask(labels, where)
    masked_scores = jnp.where(where, scores, -jnp.inf)
    order = jnp.argsort(-jax.lax.stop_gradient(masked_scores), axis=-1)
    ranks = jnp.argsort(order, axis=-1) + 1  # 1-based rank of each program
    discount = 1.0 / jnp.log2(1.0 + ranks)
    gains = jnp.where(where, labels, 0.0)
    ideal_order = jnp.sort(gains, axis=-1)[:, ::-1]
    ideal = (ideal_order / jnp.log2(2.0 + jnp.arange(labels.shape[-1]))).sum(-1)
    delta = jnp.abs((gains[:, :, None] - gains[:, None, :]) * (discount[:, :, None] - discount[:, None, :]))
    delta = delta / jnp.maximum(ideal, 1e-9)[:, None, None]
    diff = scores[:, :, None] - scores[:, None, :]
    per_pair = jax.lax.stop_gradient(delta) * jax.nn.softplus(-diff)
    count = pairs.sum()
    return jnp.where(count > 0, jnp.where(pairs, per_pair, 0.0).sum() / jnp.maximum(pairs.any(-1).any(-1).sum(), 1), 0.0)


def mse(scores, labels, *, where=None):
    """Mean squared error between scores and normalised throughput over real programs."""
    where = jnp.ones_like(labels, bool) if where is None else where
    err = jnp.where(where, (scores - labels) ** 2, 0.0)
    return err.sum() / jnp.maximum(where.sum(), 1)


def lambdarank_pairwise(scores, labels, *, where=None):
    """LambdaRank (the top of each group) plus the plain pairwise loss (every pair, which is what PCA counts)."""
    return lambdarank(scores, labels, where=where) + pairwise_logistic(scores, labels, where=where)


LOSSES = {"lambdarank": lambdarank, "pairwise": pairwise_logistic, "lambdarank+pairwise": lambdarank_pairwise,
          "mse": mse}
