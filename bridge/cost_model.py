"""XferCostModel: the JAX model as a drop-in MetaSchedule cost model.

    cost_model = XferCostModel.from_checkpoint(platform="avx2-2t")  # the shipped default model
    ms.tune_tir(mod, target, work_dir, max_trials_global=64, cost_model=cost_model)

Features cross the boundary as float64 from TVM, go to the predictor as float32, and scores return as float64.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time

import numpy as np
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

import xfer_jax
from xfer_jax import checkpoint
from xfer_jax.adapt import (HeadAdapter, Measurements, OnlineAdapter, OnlineBooster, OnlineXGB, PartnerWeight,
                            ResidualBooster, StalledTasks, blend_scores, fit_booster, with_partner)
from xfer_jax.baselines import PackSumXGB
from xfer_jax.cascade import cascade_scores, prescreen, search_weights
from xfer_jax.dataset import NUM_STORE_FEATURES, group_labels
from xfer_jax.errors import UserError
from xfer_jax.hardware import hardware_vector
from xfer_jax.trace import TOKEN_VALUES, batch_tokens, python_trace

from .featurize import workload_features
from .measure import MeasureConfig, make_builder, make_runner, with_timed_reference
from .platforms import Platform, get_platform
from .records import latency_s, read_json, write_whole
from .tasks import workload_hash


# online adaptation: "finetune" steps the model on the measurements (OnlineAdapter); "head" steps its readout alone
# on embeddings computed once (HeadAdapter); "residual" leaves it frozen and adds trees fitted to what it gets wrong
# on them (ResidualBooster); "booster" leaves it frozen and blends in a booster fitted on them (OnlineBooster);
# "none" leaves it as trained, for a partner to adapt alone
ADAPTS = ("finetune", "head", "residual", "booster", "none")
ADAPTERS = {"finetune": OnlineAdapter, "head": HeadAdapter}  # the adaptations that change the model's parameters


class CandidateFeatures:
    """PerStoreFeature rows and trace tokens of tuning candidates, remembered by (workload, printed trace).

    Extracting a candidate's features lowers its program (~7 ms on 2 cores), and evolutionary search scores
    many candidates again: survivors of each generation, and the measured ones when they are measured. The
    printed trace (`Trace.as_python`, ~0.3 ms; 5x faster than its JSON form) identifies a candidate exactly,
    and the trace tokens are read from it."""

    def __init__(self, max_stores: int, trace_tokens: int = 0, capacity: int = 1 << 14):
        self.max_stores, self.trace_tokens, self.capacity = max_stores, trace_tokens, capacity
        self.extractor = ms.feature_extractor.PerStoreFeature(extract_workload=True)
        self.seen: dict[tuple[str, str], np.ndarray] = {}  # -> PerStoreFeature rows; oldest first
        self.tokens_of: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}  # -> trace ids, values
        self.flags: dict[str, np.ndarray] = {}  # workload -> PerStoreFeature's workload columns
        self.featurized = 0  # distinct candidates lowered and featurized

    def __call__(self, context, candidates, tokens: tuple | None = None) -> tuple:
        """(workload hash, features [N, max_stores, 164] float32, mask [N, max_stores], trace ids
        [N, trace_tokens] int8, trace values [N, trace_tokens, TOKEN_VALUES] float32); `tokens`: what
        `tokens(context, candidates)` returned already, so that no trace is printed twice."""
        workload, traces, ids, values = tokens or self.tokens(context, candidates)
        missing = list(dict.fromkeys(t for t in traces if (workload, t) not in self.seen))
        if missing:
            candidate_of = dict(zip(traces, candidates))
            extracted = [f.numpy() for f in self.extractor.extract_from(context, [candidate_of[t] for t in missing])]
            self.flags.setdefault(workload, extracted[0][0, NUM_STORE_FEATURES:] if len(extracted[0])
                                  else np.zeros(0, np.float32))
            for trace, rows in zip(missing, extracted):
                self.seen[workload, trace] = rows[: self.max_stores, :NUM_STORE_FEATURES].astype(np.float32)
        self.featurized += len(missing)
        features = np.zeros((len(traces), self.max_stores, NUM_STORE_FEATURES), np.float32)
        mask = np.zeros((len(traces), self.max_stores), bool)
        for i, trace in enumerate(traces):
            rows = self.seen[workload, trace]
            features[i, : len(rows)] = rows
            mask[i, : len(rows)] = True
        self._forget_oldest()
        return workload, features, mask, ids, values

    def tokens(self, context, candidates) -> tuple:
        """(workload hash, printed traces, trace ids, trace values) without lowering any candidate."""
        workload = workload_hash(context.mod)
        traces = ["\n".join(c.sch.trace.as_python(False)) for c in candidates]
        new = list(dict.fromkeys(t for t in traces if (workload, t) not in self.tokens_of))
        ids, values = batch_tokens([python_trace(t.split("\n")) if self.trace_tokens else [] for t in new],
                                   self.trace_tokens)
        self.tokens_of.update({(workload, t): pair for t, pair in zip(new, zip(ids, values))})
        ids = np.zeros((len(traces), self.trace_tokens), np.int8)
        values = np.zeros((len(traces), self.trace_tokens, TOKEN_VALUES), np.float32)
        for i, trace in enumerate(traces):
            ids[i], values[i] = self.tokens_of[workload, trace]
        self._forget_oldest()
        return workload, traces, ids, values

    def _forget_oldest(self) -> None:
        """After use: this batch's entries may be the oldest."""
        for cache in (self.seen, self.tokens_of):
            while len(cache) > self.capacity:
                del cache[next(iter(cache))]


def _with_reference(platform: Platform, cache: pathlib.Path | None) -> Platform:
    """The platform with the reference matmul's speed in its descriptor: read from `cache`, else timed here (and
    written to `cache`)."""
    if cache is not None and cache.exists():
        try:
            gflops = float(read_json(cache))
        except (UserError, TypeError):
            raise UserError(f"{cache} is damaged; delete it to time the reference matmul again") from None
        return dataclasses.replace(platform, descriptor=dataclasses.replace(platform.descriptor,
                                                                            reference_gflops=gflops))
    measure = MeasureConfig()
    timed = with_timed_reference(platform, platform.tvm_target(), make_builder(measure), make_runner(platform, measure))
    if cache is not None:
        write_whole(cache, json.dumps(timed.descriptor.reference_gflops))
    return timed


def measured_latency(results, wrong_output: set[int] = frozenset()) -> np.ndarray:
    """Mean seconds per MetaSchedule RunnerResult; inf for a failed build or run, or a wrong output (by index)."""
    return np.array([math.inf if i in wrong_output else latency_s(r.run_secs, r.error_msg)
                     for i, r in enumerate(results)])


@derived_object
class XferCostModel(ms.cost_model.PyCostModel):
    """predict: PerStoreFeature + workload + hardware vector -> JAX predictor. update: guarded fine-tuning (of the
    whole model, or of its readout alone: adapt="head"), or trees refitted to the model's errors on the
    measurements and added to its scores ("residual"), or a booster refitted on the measurements and blended in
    ("booster").

    adapt None: the readout alone ("head") for a model that has one, else the whole model ("finetune"). Eight rounds
    per task on an unseen host, two seeds: the readout alone tuned resnet18 4-7% slower, mobilenet_v2 3-8% and
    bert_tiny 5-20% faster, at 8-12% of the tuning time against 14-16%; one round: within 2% (bench/README.md,
    sessions 24-25). The residual trees rank a host's replayed programs better, but tuned whole networks no better
    (resnet18) or worse (mobilenet_v2, 13% at eight rounds; session 21).

    partner: a pack-sum booster fitted on the checkpoint's training programs (xgb-pretrained's) that ranks every
    candidate beside the model, z-scores added per task, and boosts on the measurements as xgb-pretrained does: on a
    held-out host the two pretrained models rank better together than either alone (bench/README.md, session 23).
    partner_weight: the model's share of the blend; None: chosen online on each measured batch (PartnerWeight).

    explore_after: a task that goes this many measurements without a better program (StalledTasks) gets a booster
    fitted on this run's measurements blended into its scores, more with each stall, and is featurized whole (no
    prescreen): the pretrained ranking is confidently wrong on a few tasks, and fine-tuning does not move it."""

    def __init__(self, predictor: checkpoint.Predictor, platform: Platform, frozen: bool = False,
                 adapt_every: int = 32, prescreen: float | None = None, adapt: str | None = None,
                 explore_after: int | None = None, partner: PackSumXGB | None = None,
                 partner_weight: float | None = 0.5):
        super().__init__()
        if adapt is None:  # exploring stalled tasks is a part of fine-tuning the whole model
            has_readout = predictor.config.kind == "xfer" and predictor.config.readout == "mean"
            adapt = "head" if has_readout and explore_after is None else "finetune"
        if adapt not in ADAPTS:
            raise UserError(f"unknown online adaptation {adapt!r}; choose {', '.join(ADAPTS)}")
        if explore_after is not None and (adapt != "finetune" or frozen or explore_after < 1 or partner is not None):
            raise UserError("exploring stalled tasks is a part of fine-tuning online: it needs explore_after >= 1, "
                            "and cannot be frozen, adapt by a booster alone or rank with a partner")
        if partner is not None and adapt not in ("finetune", "head", "none"):
            raise UserError("a pretrained booster partners the model as it is, or fine-tuned: not with another booster")
        if adapt == "head" and (predictor.config.kind != "xfer" or predictor.config.readout != "mean"):
            raise UserError("fine-tuning the readout alone needs an xfer model with the mean readout")
        checkpoint.use_compilation_cache()
        if prescreen is not None and not (0 < prescreen < 1 and predictor.config.trace_tokens):
            raise UserError("prescreening ranks candidates by their trace tokens alone: it needs a fraction in "
                            "(0, 1) and a model that reads traces (trained with store_dropout to rank well so)")
        self.predictor, self.platform, self.frozen, self.prescreen = predictor, platform, frozen, prescreen
        self.scored = 0  # candidates search asked to score, a candidate again each time it is asked
        # adapt once per `adapt_every` new measurements, not per batch: a fine-tuning try costs ~1-2 s of steps
        self.adapt_every, self.measured_since_update = adapt_every, 0
        self.hardware = hardware_vector(platform.descriptor)
        self.candidates = CandidateFeatures(predictor.max_stores, predictor.config.trace_tokens)
        self.adapt = adapt  # the model's parameters change only under "finetune" and "head"
        self.adapter = ADAPTERS.get(adapt, OnlineAdapter)(predictor)
        self.booster = OnlineBooster() if adapt == "booster" else None
        self.residual = ResidualBooster() if adapt == "residual" and not frozen else None
        self.stalls = StalledTasks(patience=explore_after) if explore_after is not None else None
        self.stall_booster, self.stall_fits = None, 0
        self.partner = OnlineXGB(partner) if partner is not None else None
        self.partner_weight = PartnerWeight(partner_weight) if partner is not None else None
        self.history: dict[str, Measurements] = {}
        self.workloads: dict[str, np.ndarray] = {}
        self.seconds = 0.0  # featurising, predicting and updating
        self.wrong_output: set[int] = set()  # the next update's candidates (by index) that compute a wrong output

    @classmethod
    def from_checkpoint(cls, path=None, platform: str | Platform = "auto", frozen: bool = False,
                        reference_cache: pathlib.Path | None = None, **kwargs) -> "XferCostModel":
        """path None: the shipped default model. A model that reads the measured reference entry of the
        hardware vector gets it timed on this host (~1 s) when the platform runs here and does not give it;
        `reference_cache`: a JSON file that keeps that timing, so that every model of a tune job, and the job
        resumed, read one hardware vector."""
        platform = get_platform(platform) if isinstance(platform, str) else platform
        predictor = xfer_jax.load(path)
        reads_reference = "log2(1+reference_gflops)" in predictor.metadata["hardware_features"]
        if reads_reference and platform.descriptor.reference_gflops == 0 and platform.missing_requirement() is None:
            platform = _with_reference(platform, reference_cache)
        return cls(predictor, platform, frozen=frozen, **kwargs)

    @property
    def updates(self) -> dict:
        if self.booster is not None:
            return {"tries": self.booster.tries, "refits": self.booster.refits, "weight": self.booster.weight,
                    "seconds": round(self.booster.seconds, 2)}
        if self.residual is not None:
            return {"refits": self.residual.refits, "slope": round(self.residual.slope, 4),
                    "seconds": round(self.residual.seconds, 2)}
        stalls = {"stalled_tasks": len(self.stalls.weight), "stall_fits": self.stall_fits} \
            if self.stalls is not None else {}
        partner = {"partner_boosted": self.partner.updates, "partner_weight": self.partner_weight.weight} \
            if self.partner is not None else {}
        return {"tried": self.adapter.tried, "kept": self.adapter.kept, "seconds": round(self.adapter.seconds, 2),
                **stalls, **partner}

    def _check_target(self, target) -> None:
        kind = target.kind.name
        expected = self.platform.target["kind"]
        if kind != expected:
            raise UserError(f"the tuning target is {kind} but platform {self.platform.name!r} "
                            f"describes {expected}; pass the matching --platform")

    def _inputs(self, context, candidates, tokens: tuple | None = None) -> tuple[str, tuple[np.ndarray, ...]]:
        """(workload hash, the predictor's inputs); `tokens` as CandidateFeatures takes them."""
        self._check_target(context.target)
        key, features, mask, trace_ids, trace_values = self.candidates(context, candidates, tokens)
        n = len(features)
        if key not in self.workloads:
            self.workloads[key] = workload_features(context.mod, context.task_name or "", self.candidates.flags[key])
        workload = np.broadcast_to(self.workloads[key], (n, len(self.workloads[key])))
        hardware = np.broadcast_to(self.hardware, (n, len(self.hardware)))
        return key, (features, mask, workload, hardware, trace_ids, trace_values)

    def predict(self, context, candidates) -> np.ndarray:
        start = time.perf_counter()
        if not candidates:
            return np.zeros(0, np.float64)
        self.scored += len(candidates)
        tokens = self.candidates.tokens(context, candidates)
        # prescreen once the task's workload features are known: its first call, which picks the search's first
        # parents, is featurized whole (prescreened too, one resnet18 tune at one round ended at 53 ms estimated
        # against 40; session 15)
        key = tokens[0]
        if self.prescreen and len(candidates) * self.prescreen >= 1 and key in self.workloads \
                and not self._stall_weight(key):
            scores = self._prescreened(context, candidates, tokens)
        else:
            scores = search_weights(self._scored(key, self._inputs(context, candidates, tokens)[1]))
        self.seconds += time.perf_counter() - start
        return scores

    def _scored(self, key: str, inputs: tuple) -> np.ndarray:
        """The model's scores of one task's candidates: ranked together with the partner's, or corrected by the
        residual trees, or blended with the online booster's once it earned it, or with the stall booster's on a
        stalled task."""
        scores = self.predictor.predict(*inputs)
        if self.partner is not None:
            return with_partner(scores, self.partner.predict(inputs[0], inputs[1]), self.partner_weight.weight)
        if self.residual is not None:
            return self.residual.score(key, scores, inputs[0], inputs[1])
        if self.booster is not None:
            return self.booster.blend(scores, inputs[0], inputs[1])
        weight = self._stall_weight(key)
        if weight and self.stall_booster is not None and len(scores) >= 2:
            return blend_scores(scores, self.stall_booster.predict(inputs[0], inputs[1]), weight)
        return scores

    def _stall_weight(self, key: str) -> float:
        return self.stalls.weight.get(key, 0.0) if self.stalls is not None else 0.0

    def _prescreened(self, context, candidates, tokens: tuple) -> np.ndarray:
        """The trace tokens rank every candidate; only the best `prescreen` fraction is featurized (PerStoreFeature
        lowers each, ~7 ms) and ranked by the whole model, above all the others."""
        key, traces, ids, values = tokens
        workload = np.broadcast_to(self.workloads[key], (len(candidates), len(self.workloads[key])))
        cheap = self.predictor.predict_from_traces(workload, self.hardware, ids, values)
        top, rest = prescreen(cheap, self.prescreen)
        kept = (key, [traces[i] for i in top], ids[top], values[top])
        full = self._scored(key, self._inputs(context, [candidates[i] for i in top], kept)[1])
        return cascade_scores(cheap, top, rest, full)

    def update(self, context, candidates, results) -> None:
        if self.frozen or not candidates:
            return
        start = time.perf_counter()
        key, inputs = self._inputs(context, candidates)
        newest = Measurements(*(np.array(x) for x in inputs), measured_latency(results, self.wrong_output))
        if self.partner is not None and self.partner_weight.online:  # before either learns from these programs
            self.partner_weight.observe(self.predictor.predict(*inputs), self.partner.predict(inputs[0], inputs[1]),
                                        newest.latency)
        self.measured_since_update += len(candidates)
        due = self.measured_since_update >= self.adapt_every
        if due and self.adapt == "finetune":
            self.adapter.update(list(self.history.values()), newest)
        if self.adapt == "head":  # every batch is embedded, the head steps when due
            self.adapter.observe(key, newest, due)
        self.history[key] = self.history[key].extend(newest) if key in self.history else newest
        if self.partner is not None:
            self.partner.add(key, newest.features, newest.mask, newest.latency)
        if due and self.booster is not None:
            self.booster.refit(list(self.history.values()), lambda m: m.scored_by(self.predictor))
        if due and self.residual is not None:
            self.residual.refit(self.history, lambda m: m.scored_by(self.predictor))
        if self.stalls is not None:
            stalled = self.stalls.observe(key, newest.latency)
            if (stalled or due) and self.stalls.weight:  # refit: new data, or a new stall
                usable = [m for m in self.history.values() if m.usable]
                self.stall_booster = fit_booster(usable) if usable else self.stall_booster
                self.stall_fits += bool(usable)
        self.measured_since_update = 0 if due else self.measured_since_update
        self.seconds += time.perf_counter() - start

    def save(self, path: str) -> None:
        """An orbax checkpoint folder (readable by xfer_jax.load), also before any update."""
        checkpoint.save_predictor(pathlib.Path(path), self.predictor, self.adapter.opt_state,
                                  {"online_updates": self.updates, "platform": self.platform.name})

    def load(self, path: str) -> None:
        loaded = xfer_jax.load(path)
        self.predictor.params = loaded.params
        self.adapter = ADAPTERS.get(self.adapt, OnlineAdapter)(self.predictor)


@derived_object
class TimedCostModel(ms.cost_model.PyCostModel):
    """Wraps another cost model (e.g. TVM's XGBModel) to count the seconds it spends, for fair comparison."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seconds = inner, 0.0
        self.wrong_output: set[int] = set()  # as XferCostModel's: told to the inner model as failed runs

    def _timed(self, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds += time.perf_counter() - start

    def load(self, path: str) -> None:
        raise UserError(f"refusing to load {path}: TVM's XGBModel.load unpickles its file, and xfer-jax never "
                        "loads a pickle")

    def save(self, path: str) -> None:
        self.inner.save(path)

    def update(self, context, candidates, results) -> None:
        results = [ms.runner.RunnerResult(None, "output differs from the untuned code") if i in self.wrong_output
                   else result for i, result in enumerate(results)]
        self._timed(self.inner.update, context, candidates, results)

    def predict(self, context, candidates) -> np.ndarray:
        return np.asarray(self._timed(self.inner.predict, context, candidates), np.float64)


@derived_object
class PretrainedXGBCostModel(ms.cost_model.PyCostModel):
    """Pack-sum XGBoost fitted on a dataset (the programs a checkpoint trained on), then updated online (OnlineXGB).

    The yardstick that separates what pretraining buys from what the xfer model adds."""

    def __init__(self, booster: PackSumXGB, update_every: int = 32, update_rounds: int = 20, max_stores: int = 32):
        super().__init__()
        self.online = OnlineXGB(booster, update_every, update_rounds)
        self.candidates = CandidateFeatures(max_stores)
        self.seconds, self.scored = 0.0, 0
        self.wrong_output: set[int] = set()  # as XferCostModel's

    @property
    def updates(self) -> int:
        return self.online.updates

    def predict(self, context, candidates) -> np.ndarray:
        start = time.perf_counter()
        self.scored += len(candidates)
        _, features, mask, _, _ = self.candidates(context, candidates)
        scores = self.online.predict(features, mask)
        self.seconds += time.perf_counter() - start
        return scores

    def update(self, context, candidates, results) -> None:
        if not candidates:
            return
        start = time.perf_counter()
        key, features, mask, _, _ = self.candidates(context, candidates)
        self.online.add(key, features, mask, measured_latency(results, self.wrong_output))
        self.seconds += time.perf_counter() - start

    def save(self, path: str) -> None:
        self.online.booster.save(path)

    def load(self, path: str) -> None:
        self.online.booster = PackSumXGB.load(path)
