"""Online adaptation: a few time-bounded fine-tuning steps on measurements from the hardware being tuned.

Guarded against negative transfer: an update is kept only if it ranks the newest measurements (held out from
that update) at least as well as the parameters before it.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from . import losses, metrics
from .checkpoint import Predictor
from .normalize import Normalizer

GROUPS, PROGRAMS = 4, 64  # fixed step shape: compile once


@dataclasses.dataclass
class Measurements:
    """Raw inputs and latencies of one task's measured programs on the target hardware."""

    features: np.ndarray  # [n, S, F]
    mask: np.ndarray  # [n, S]
    workload: np.ndarray  # [n, W]
    hardware: np.ndarray  # [n, H]
    trace_ids: np.ndarray  # [n, T]; T = 0 for a model that reads no trace
    trace_values: np.ndarray  # [n, T, V]
    latency: np.ndarray  # [n] seconds, inf for failures

    def extend(self, other: "Measurements") -> "Measurements":
        return Measurements(*(np.concatenate([a, b]) for a, b in zip(dataclasses.astuple(self),
                                                                      dataclasses.astuple(other))))


def _adapt_loss(params, features, mask, workload, hardware, trace_ids, trace_values, labels, where, *, graphdef,
                normalizer):
    g, n = labels.shape
    flat = lambda x: x.reshape((g * n,) + x.shape[2:])  # noqa: E731
    inputs = normalizer.apply(flat(features), flat(mask), flat(workload), flat(hardware), xp=jnp)
    scores = nnx.merge(graphdef, params)(*inputs, flat(trace_ids), flat(trace_values)).reshape(g, n)
    return losses.lambdarank(scores, labels, where=where)


def _adapt_step(params, opt_state, batch, *, graphdef, normalizer: Normalizer, optimizer):
    loss, grads = jax.value_and_grad(_adapt_loss)(params, *batch, graphdef=graphdef, normalizer=normalizer)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


class OnlineAdapter:
    """Owns a Predictor's parameters during tuning and decides which fine-tuning updates to keep."""

    def __init__(self, predictor: Predictor, learning_rate: float = 3e-4, max_steps: int = 32,
                 time_budget_s: float = 1.5, seed: int = 0):
        self.predictor = predictor
        self.max_steps, self.time_budget_s = max_steps, time_budget_s
        optimizer = optax.adam(learning_rate)
        self.opt_state = optimizer.init(predictor.params)
        self.rng = np.random.default_rng(seed)
        self.step = jax.jit(functools.partial(_adapt_step, graphdef=predictor.graphdef,
                                              normalizer=predictor.normalizer, optimizer=optimizer))
        self.kept = self.tried = 0
        self.seconds = 0.0

    def _batch(self, groups: list[Measurements]):
        stores = self.predictor.max_stores
        chosen = self.rng.choice(len(groups), size=GROUPS, replace=len(groups) < GROUPS)
        first = groups[0]
        shapes = [(GROUPS, PROGRAMS, stores, first.features.shape[2]), (GROUPS, PROGRAMS, stores),
                  (GROUPS, PROGRAMS, first.workload.shape[1]), (GROUPS, PROGRAMS, first.hardware.shape[1]),
                  (GROUPS, PROGRAMS, *first.trace_ids.shape[1:]), (GROUPS, PROGRAMS, *first.trace_values.shape[1:])]
        features, mask, workload, hardware, trace_ids, trace_values = (np.zeros(s, np.float32) for s in shapes)
        mask, trace_ids = mask.astype(bool), trace_ids.astype(np.int8)
        labels = np.zeros((GROUPS, PROGRAMS), np.float32)
        where = np.zeros((GROUPS, PROGRAMS), bool)
        for row, g in enumerate(chosen):
            m = groups[g]
            ok = np.flatnonzero(np.isfinite(m.latency))
            take = self.rng.permutation(ok)[:PROGRAMS]
            k, s = len(take), min(stores, m.features.shape[1])
            features[row, :k, :s], mask[row, :k, :s] = m.features[take, :s], m.mask[take, :s]
            workload[row, :k], hardware[row, :k] = m.workload[take], m.hardware[take]
            trace_ids[row, :k], trace_values[row, :k] = m.trace_ids[take], m.trace_values[take]
            labels[row, :k] = m.latency[take].min() / m.latency[take]
            where[row, :k] = True
        return features, mask, workload, hardware, trace_ids, trace_values, labels, where

    def update(self, history: list[Measurements], newest: Measurements) -> bool:
        """Fine-tune on `history`; keep the result only if it ranks `newest` at least as well. Returns kept."""
        usable = [m for m in history if np.isfinite(m.latency).sum() >= 2]
        if not usable or np.isfinite(newest.latency).sum() < 2:
            return False
        start = time.perf_counter()
        group = np.zeros(len(newest.latency), np.int32)
        before = metrics.pca(self._scores(newest), newest.latency, group)
        old = (self.predictor.params, self.opt_state)
        params, opt_state = old
        for _ in range(self.max_steps):
            params, opt_state, loss = self.step(params, opt_state, self._batch(usable))
            loss.block_until_ready()  # steps dispatch asynchronously: without this the budget never stops one
            if time.perf_counter() - start > self.time_budget_s:
                break
        self.predictor.params = params
        after = metrics.pca(self._scores(newest), newest.latency, group)
        self.tried += 1
        kept = after >= before
        if kept:
            self.opt_state = opt_state
            self.kept += 1
        else:
            self.predictor.params = old[0]
        self.seconds += time.perf_counter() - start
        return kept

    def _scores(self, m: Measurements) -> np.ndarray:
        return self.predictor.predict(m.features, m.mask, m.workload, m.hardware, m.trace_ids, m.trace_values)
