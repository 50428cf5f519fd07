"""Ranking losses over groups, shaped like optax's: (scores, labels, *, where=None) -> scalar. The pairwise
terms come from rax (google/rax); tests/test_losses.py checks them against hand-computed cases.

Inputs are [G, n]: G groups (one task on one hardware config) of n programs each. `where` marks real
programs; padded positions never contribute. A group with fewer than two real programs contributes nothing.
Labels are normalised throughput in [0, 1], higher is faster.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import rax


def pairwise_logistic(scores, labels, *, where=None):
    """Mean over ordered pairs (i better than j) of log(1 + exp(-(s_i - s_j))).

    Example: scores [[2., 0.]], labels [[1., .5]] -> log(1 + e^-2) = 0.1269.
    """
    return rax.pairwise_logistic_loss(scores, labels, where=where, reduce_fn=jnp.mean)


# |delta DCG| of swapping two programs, with the labels themselves as gains and normalised by the ideal DCG
_DELTA_NDCG = functools.partial(rax.dcg_lambdaweight, normalize=True, gain_fn=lambda labels: labels)


def lambdarank(scores, labels, *, where=None):
    """LambdaRank: pairwise logistic loss, each pair weighted by |delta NDCG| of swapping the two programs.

    Gains are the labels, discounts 1 / log2(1 + rank) with ranks from the current scores (no gradient
    through the ranks), normalised by the ideal DCG of the group. Pairs near the top of the ranking, where a
    tuner picks its candidates, weigh most. Summed over pairs, averaged over the groups that have a pair.

    Example: scores [[0., 1.]], labels [[1., .5]] (the worse program is ranked first). Ranks are (2, 1),
    discounts (1/log2 3, 1), ideal DCG = 1 + .5/log2 3 = 1.3155; swapping changes DCG by
    |(1 - .5) * (1/log2 3 - 1)| = .1845, so |dNDCG| = .1403 and the loss is .1403 * log(1 + e) = .1842.
    """
    where = jnp.ones_like(labels, bool) if where is None else where
    total = rax.pairwise_logistic_loss(scores, labels, where=where, lambdaweight_fn=_DELTA_NDCG, reduce_fn=jnp.sum)
    has_pair = (where[:, :, None] & where[:, None, :] & (labels[:, :, None] > labels[:, None, :])).any((-2, -1))
    # rax scales its lambdaweights by the list size (to keep them away from zero); undo that
    return total / labels.shape[-1] / jnp.maximum(has_pair.sum(), 1)


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
