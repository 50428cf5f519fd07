"""Online adaptation: a few time-bounded fine-tuning steps on measurements from the hardware being tuned.

Guarded against negative transfer: an update is kept only if it ranks held-out measurements at least as well as
the parameters before it. GUARDS says which: "newest", the batch just measured (one task's few programs); "quarter",
a fixed quarter of every task's measured programs (chosen by a hash of their features, so that a program is never
trained on and later judged), never trained on; "none" keeps every update.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from . import losses, metrics
from .checkpoint import Predictor
from .dataset import group_labels
from .normalize import Normalizer

GROUPS, PROGRAMS = 4, 64  # fixed step shape: compile once
HEAD_GROUPS = 16  # a head step is cheap: more of the tasks per step
GUARDS = ("newest", "quarter", "none")


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
        return _grouped([self, other])[0]

    def take(self, index: np.ndarray) -> "Measurements":
        return Measurements(*(a[index] for a in dataclasses.astuple(self)))

    def held_out(self) -> np.ndarray:
        """The fixed quarter of these programs the quarter guard judges by: a hash of each one's features."""
        return np.array([zlib.crc32(row.tobytes()) % 4 == 0 for row in self.features], bool)

    @property
    def usable(self) -> bool:
        return int(np.isfinite(self.latency).sum()) >= 2

    def scored_by(self, predictor: Predictor) -> np.ndarray:
        return predictor.predict(self.features, self.mask, self.workload, self.hardware, self.trace_ids,
                                 self.trace_values)


def _grouped(parts: list[Measurements]) -> tuple[Measurements, np.ndarray]:
    """The parts as one Measurements and the part index of every program."""
    group = np.concatenate([np.full(len(m.latency), i, np.int32) for i, m in enumerate(parts)])
    return Measurements(*(np.concatenate(arrays) for arrays in zip(*map(dataclasses.astuple, parts)))), group


def _split_held_out(groups: list[Measurements]) -> tuple[list[Measurements], list[Measurements]]:
    """(each group without its held-out quarter, each held-out quarter), keeping the parts with two or more
    measured programs."""
    parts = [(m.take(~out), m.take(out)) for m in groups for out in [m.held_out()]]
    return [t for t, _ in parts if t.usable], [j for _, j in parts if j.usable]


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
                 time_budget_s: float = 1.5, seed: int = 0, guard: str = "newest"):
        if guard not in GUARDS:
            raise ValueError(f"unknown guard {guard!r}; choose {', '.join(GUARDS)}")
        self.predictor, self.guard = predictor, guard
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
        first = groups[0]
        shapes = [(GROUPS, PROGRAMS, stores, first.features.shape[2]), (GROUPS, PROGRAMS, stores),
                  (GROUPS, PROGRAMS, first.workload.shape[1]), (GROUPS, PROGRAMS, first.hardware.shape[1]),
                  (GROUPS, PROGRAMS, *first.trace_ids.shape[1:]), (GROUPS, PROGRAMS, *first.trace_values.shape[1:])]
        features, mask, workload, hardware, trace_ids, trace_values = (np.zeros(s, np.float32) for s in shapes)
        mask, trace_ids = mask.astype(bool), trace_ids.astype(np.int8)
        chosen, take, labels, where = _sampled_groups(self.rng, [m.latency for m in groups], GROUPS)
        for row, (g, t) in enumerate(zip(chosen, take)):
            m, k, s = groups[g], len(t), min(stores, groups[g].features.shape[1])
            features[row, :k, :s], mask[row, :k, :s] = m.features[t, :s], m.mask[t, :s]
            workload[row, :k], hardware[row, :k] = m.workload[t], m.hardware[t]
            trace_ids[row, :k], trace_values[row, :k] = m.trace_ids[t], m.trace_values[t]
        return features, mask, workload, hardware, trace_ids, trace_values, labels, where

    def update(self, history: list[Measurements], newest: Measurements) -> bool:
        """Fine-tune on the measurements so far (one Measurements per task in `history`, `newest` not yet in it);
        keep the result only if it ranks the programs the guard judges by at least as well. Returns kept."""
        start = time.perf_counter()
        train, judge = self._train_and_judge(history, newest)
        if not train or not judge:
            self.seconds += time.perf_counter() - start
            return False
        judged, group = _grouped(judge)
        before = metrics.pca(judged.scored_by(self.predictor), judged.latency, group)
        old = (self.predictor.params, self.opt_state)
        params, opt_state = old
        for _ in range(self.max_steps):
            params, opt_state, loss = self.step(params, opt_state, self._batch(train))
            loss.block_until_ready()  # steps dispatch asynchronously: without this the budget never stops one
            if time.perf_counter() - start > self.time_budget_s:
                break
        self.predictor.params = params
        after = metrics.pca(judged.scored_by(self.predictor), judged.latency, group)
        self.tried += 1
        kept = after >= before or self.guard == "none"
        if kept:
            self.opt_state = opt_state
            self.kept += 1
        else:
            self.predictor.params = old[0]
        self.seconds += time.perf_counter() - start
        return kept

    def _train_and_judge(self, history: list[Measurements], newest: Measurements):
        """(groups to fine-tune on, groups to judge the update by), each with two or more measured programs."""
        if self.guard == "quarter":
            return _split_held_out([*history, newest])
        usable = [m for m in history if m.usable]
        return usable, [newest] if newest.usable else []


class HeadAdapter:
    """Fine-tunes the readout alone (CostModel.head: the MLP on the pooled program embedding) on the measurements,
    the rest of the model frozen. A program's embedding then never changes, so it is computed once, when the
    program is measured, and a step is the small MLP on [HEAD_GROUPS, PROGRAMS, dim] embeddings: milliseconds,
    where a step of the whole model costs ~50 ms and an update ~1.7 s (bench/README.md, session 24).
    Guarded as OnlineAdapter's "newest" guard: an update is kept only if it ranks the newest batch at least as well."""

    def __init__(self, predictor: Predictor, learning_rate: float = 1e-3, steps: int = 32, seed: int = 0):
        self.predictor, self.steps = predictor, steps
        optimizer = optax.adam(learning_rate)
        self.opt_state = optimizer.init(predictor.params)  # whole-model shaped; only the head's moments move
        self.rng = np.random.default_rng(seed)
        self.step = jax.jit(functools.partial(_head_step, graphdef=predictor.graphdef, optimizer=optimizer))
        self._head = jax.jit(lambda params, pooled: nnx.merge(predictor.graphdef, params).head(pooled))
        self.embedded: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # task -> (embeddings, latency) measured
        self.kept = self.tried = 0
        self.seconds = 0.0

    def observe(self, task: str, newest: Measurements, adapt: bool) -> bool:
        """Embed a task's newly measured programs; when `adapt`, first fine-tune the head on every task's programs
        measured before and judge by these. Returns kept."""
        start = time.perf_counter()
        embedding = self.predictor.embed(newest.features, newest.mask, newest.workload, newest.hardware,
                                         newest.trace_ids, newest.trace_values)
        kept = adapt and self._update(embedding, newest.latency)
        embedded, latency = self.embedded.get(task, (embedding[:0], newest.latency[:0]))
        self.embedded[task] = (np.concatenate([embedded, embedding]), np.concatenate([latency, newest.latency]))
        self.seconds += time.perf_counter() - start
        return kept

    def _update(self, embedding: np.ndarray, latency: np.ndarray) -> bool:
        train = [(e, lat) for e, lat in self.embedded.values() if np.isfinite(lat).sum() >= 2]
        if not train or np.isfinite(latency).sum() < 2:
            return False
        before = metrics.group_pca(self.scores(embedding), latency)[0]
        old = (self.predictor.params, self.opt_state)
        params, opt_state = old
        for _ in range(self.steps):
            chosen, take, labels, where = _sampled_groups(self.rng, [lat for _, lat in train], HEAD_GROUPS)
            pooled = np.zeros((HEAD_GROUPS, PROGRAMS, embedding.shape[1]), np.float32)
            for row, (g, t) in enumerate(zip(chosen, take)):
                pooled[row, : len(t)] = train[g][0][t]
            params, opt_state, _ = self.step(params, opt_state, (pooled, labels, where))
        self.predictor.params = params
        self.tried += 1
        if metrics.group_pca(self.scores(embedding), latency)[0] >= before:
            self.opt_state = opt_state
            self.kept += 1
            return True
        self.predictor.params = old[0]
        return False

    def scores(self, embedding: np.ndarray) -> np.ndarray:
        """The head's scores of embedded programs, as predict scores them."""
        return np.asarray(self._head(self.predictor.params, embedding))


def _head_loss(params, pooled, labels, where, *, graphdef):
    g, n = labels.shape
    scores = nnx.merge(graphdef, params).head(pooled.reshape(g * n, -1)).reshape(g, n)
    return losses.lambdarank(scores, labels, where=where)


def _head_step(params, opt_state, batch, *, graphdef, optimizer):
    loss, grads = jax.value_and_grad(_head_loss)(params, *batch, graphdef=graphdef)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def _sampled_groups(rng: np.random.Generator, latencies: list[np.ndarray], groups: int):
    """A fine-tuning batch's choice: `groups` of the groups (with replacement when there are fewer), up to PROGRAMS
    measured programs of each, their labels as in training (the group's best latency / latency) and where they are.
    Returns (chosen group indices, each one's taken programs, labels [groups, PROGRAMS], where [groups, PROGRAMS])."""
    chosen = rng.choice(len(latencies), size=groups, replace=len(latencies) < groups)
    labels = np.zeros((groups, PROGRAMS), np.float32)
    where = np.zeros((groups, PROGRAMS), bool)
    take = []
    for row, g in enumerate(chosen):
        latency = latencies[g]
        ok = np.flatnonzero(np.isfinite(latency))
        programs = rng.permutation(ok)[:PROGRAMS]
        labels[row, : len(programs)] = latency[ok].min() / latency[programs]
        where[row, : len(programs)] = True
        take.append(programs)
    return chosen, take, labels, where


class OnlineBooster:
    """A pack-sum booster fitted from scratch on this run's measurements (what TVM's XGBModel learns), added to
    the pretrained model's scores with a weight chosen on a held-out quarter of them: the pretrained model ranks
    alone until the host's own data ranks the held-out programs better with the booster than without it.

    blend(model z-scores, booster z-scores) = z(model) + weight * z(booster), z-scored within each scored batch."""

    WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)

    def __init__(self, rounds: int = 100):
        self.rounds = rounds
        self.booster, self.weight, self.tries, self.refits, self.seconds = None, 0.0, 0, 0, 0.0

    def refit(self, history: list[Measurements], model_scores) -> float:
        """Fit on three quarters of `history` (one Measurements per task), choose the weight on the other quarter
        by PCA, then refit on all of it. `model_scores(m)`: the pretrained model's scores of m. Returns the weight."""
        start = time.perf_counter()
        self.tries += 1  # a refit needs two measured programs of some task on each side of the held-out quarter
        train, judge = _split_held_out(history)
        if train and judge:
            booster = fit_booster(train, self.rounds)
            judged, group = _grouped(judge)
            model, boosted = model_scores(judged), booster.predict(judged.features, judged.mask)
            scores = {w: self._blend_groups(model, boosted, group, w) for w in self.WEIGHTS}
            self.weight = max(self.WEIGHTS, key=lambda w: (metrics.pca(scores[w], judged.latency, group), -w))
            self.booster = fit_booster([m for m in history if m.usable], self.rounds) if self.weight else None
            self.refits += 1
        self.seconds += time.perf_counter() - start
        return self.weight

    def _blend_groups(self, model: np.ndarray, boosted: np.ndarray, group: np.ndarray, weight: float) -> np.ndarray:
        out = np.zeros(len(model))
        for g in np.unique(group):
            at = group == g
            out[at] = blend_scores(model[at], boosted[at], weight)
        return out

    def blend(self, model: np.ndarray, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One task's candidates: the model's scores, plus the weighted booster's once it earned a weight."""
        if self.booster is None or len(model) < 2:
            return np.asarray(model, np.float64)
        return blend_scores(model, self.booster.predict(features, mask), self.weight)


class ResidualBooster:
    """Trees fitted to what the pretrained model gets wrong on this host, as xgb-pretrained boosts its pretrained
    trees online, but on top of the transformer.

    Each measured program's label (its task's best latency / its latency, as in training) is offset by the model's
    score put on the label scale: the task's mean label plus `slope` times the score z-scored within the task, one
    slope for all tasks (least squares, at least `min_slope`). The trees fit the rest; a candidate scores its model
    score plus the trees' correction turned back into model units. Where the host agrees with the model the
    trees have little to fit; a task not yet measured twice keeps the model's ranking."""

    def __init__(self, rounds: int = 50, min_slope: float = 0.02):
        self.rounds, self.min_slope = rounds, min_slope
        self.booster, self.slope, self.refits, self.seconds = None, 0.0, 0, 0.0
        self.units: dict = {}  # task -> model-score units per label unit, for the tasks the trees were fitted on

    def refit(self, history: dict, model_scores) -> None:
        """Fit on every task of `history` (task -> Measurements) with two or more measured programs.
        `model_scores(m)`: the model's scores of m."""
        start = time.perf_counter()
        parts = {task: m.take(np.isfinite(m.latency)) for task, m in history.items() if m.usable}
        if parts:
            scores = {task: np.asarray(model_scores(m), np.float64) for task, m in parts.items()}
            spread = {task: max(float(s.std()), 1e-6) for task, s in scores.items()}
            z = np.concatenate([(s - s.mean()) / spread[task] for task, s in scores.items()])
            measured, group = _grouped(list(parts.values()))
            labels = group_labels(measured.latency, group)
            centred = labels - (np.bincount(group, labels) / np.bincount(group))[group]
            self.slope = max(self.min_slope, float(z @ centred) / max(float(z @ z), 1e-9))
            self.booster = _booster(self.rounds).fit(measured.features, measured.mask, labels,
                                                     offset=labels - centred + self.slope * z)
            self.units = {task: spread[task] / self.slope for task in parts}
            self.refits += 1
        self.seconds += time.perf_counter() - start

    def score(self, task, model: np.ndarray, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One task's candidates: the model's scores plus the trees' correction, once the task was fitted on."""
        model = np.asarray(model, np.float64)
        if self.booster is None or task not in self.units:
            return model
        return model + self.units[task] * self.booster.predict(features, mask)


def _booster(rounds: int):
    from .baselines import PackSumXGB  # xgboost: imported only where a booster is used

    return PackSumXGB(rounds=rounds)


def fit_booster(parts: list[Measurements], rounds: int = 100):
    """A new PackSumXGB on these tasks' programs, labelled as in training: best latency of the task / latency."""
    measured, group = _grouped(parts)
    return _booster(rounds).fit(measured.features, measured.mask, group_labels(measured.latency, group))


def blend_scores(model: np.ndarray, boosted: np.ndarray, weight: float) -> np.ndarray:
    """One task's candidates: z(model scores) + weight * z(booster scores)."""
    return metrics.zscore(model) + weight * metrics.zscore(boosted)


class OnlineXGB:
    """A pretrained pack-sum booster updated online, as TVM's XGBModel is: every `update_every` new measurements
    `update_rounds` more trees are boosted on this run's measurements (labels normalised per task) on top of the
    pretrained ones. Refitting on the whole dataset per update would take tens of seconds."""

    def __init__(self, booster, update_every: int = 32, update_rounds: int = 20):
        self.booster, self.update_every, self.update_rounds = booster, update_every, update_rounds
        self.measured: dict = {}  # task -> (features, mask, latency)
        self.since_update, self.updates = 0, 0

    def predict(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.booster.predict(features, mask).astype(np.float64) if len(features) else np.zeros(0)

    def add(self, task, features: np.ndarray, mask: np.ndarray, latency: np.ndarray) -> None:
        """Remember one task's newly measured programs; boost once `update_every` have come in."""
        new = (features, mask, latency)
        self.measured[task] = tuple(np.concatenate(pair) for pair in zip(self.measured[task], new)) \
            if task in self.measured else new
        self.since_update += len(latency)
        if self.since_update >= self.update_every:
            self._boost()
            self.since_update = 0

    def _boost(self) -> None:
        parts = [(f, m, lat) for f, m, lat in self.measured.values() if np.isfinite(lat).any()]
        if not parts:
            return
        task = np.concatenate([np.full(len(lat), i) for i, (_, _, lat) in enumerate(parts)])
        labels = group_labels(np.concatenate([lat for _, _, lat in parts]), task)
        self.booster.boost_more(np.concatenate([f for f, _, _ in parts]), np.concatenate([m for _, m, _ in parts]),
                                labels, self.update_rounds)
        self.updates += 1


def with_partner(model: np.ndarray, partner: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """One task's candidates ranked by weight * z(model) + (1 - weight) * z(partner), put back on the model's own
    mean and spread: the search draws parents in proportion to the scores, so it should see as sharp a distribution
    as the model's."""
    model = np.asarray(model, np.float64)
    if len(model) < 2:
        return model
    blended = weight * metrics.zscore(model) + (1 - weight) * metrics.zscore(partner)
    return model.mean() + model.std() * metrics.zscore(blended)


class PartnerWeight:
    """The model's weight against its partner, chosen on what neither has learnt from: each newly measured batch is
    ranked by every weight before the model fine-tunes and the partner boosts on it, and the weight whose rankings
    ordered the most pairs correctly so far wins (ties: the one nearest an even blend). Until `min_pairs` pairs were
    seen the blend stays even. The better ranker differs by network and host (bench/README.md, session 23).
    fixed: that weight always, chosen by nothing (`online` False)."""

    WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)

    def __init__(self, fixed: float | None = None, min_pairs: int = 200):
        self.online = fixed is None
        self.min_pairs, self.weight, self.pairs = min_pairs, 0.5 if fixed is None else fixed, 0
        self.correct = np.zeros(len(self.WEIGHTS))

    def observe(self, model: np.ndarray, partner: np.ndarray, latency: np.ndarray) -> float:
        """One task's newly measured programs, scored by both before either learnt from them. Returns the weight."""
        if not self.online:
            return self.weight
        for i, weight in enumerate(self.WEIGHTS):
            fraction, pairs = metrics.group_pca(with_partner(model, partner, weight), latency)
            self.correct[i] += fraction * pairs
        self.pairs += pairs
        if self.pairs >= self.min_pairs:
            best = self.correct.max()
            self.weight = min((w for w, c in zip(self.WEIGHTS, self.correct) if c >= best - 1e-9),
                              key=lambda w: abs(w - 0.5))
        return self.weight


class StalledTasks:
    """Tasks whose search is stuck: a task gains `step` of exploration weight (up to `cap`) each time it goes
    `patience` measurements without bettering its best latency by `gain` or more. The weight stays once earned: the
    pretrained model has shown it misranks that task (resnet18 at 8 rounds: the three heaviest tasks reached their
    final best only after 110-135 measurements each; bench/README.md, session 20)."""

    def __init__(self, patience: int = 16, step: float = 1.0, cap: float = 4.0, gain: float = 0.01):
        self.patience, self.step, self.cap, self.gain = patience, step, cap, gain
        self.best: dict[str, float] = {}
        self.since_best: dict[str, int] = {}
        self.weight: dict[str, float] = {}  # stalled tasks only

    def observe(self, task: str, latency: np.ndarray) -> bool:
        """Count one task's new measurements (seconds; inf for a failure, which is no better program either); True
        if the task stalled (again), its weight raised unless already at the cap."""
        stalled = False
        for seconds in latency:
            if seconds < self.best.get(task, np.inf) * (1 - self.gain):
                self.best[task], self.since_best[task] = float(seconds), 0
                continue
            self.since_best[task] = self.since_best.get(task, 0) + 1
            if self.since_best[task] >= self.patience:
                self.weight[task] = min(self.cap, self.weight.get(task, 0.0) + self.step)
                self.since_best[task], stalled = 0, True
        return stalled
