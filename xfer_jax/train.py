"""Training: group-aware batches, a jit-compiled step under pmap over all local devices, early stopping on
validation PCA, and resumable orbax checkpoints.

Multi-host: call `jax.distributed.initialize()` on every host before `train`; `jax.local_devices()` then
lists each host's devices, every host feeds its own share of groups (`host_shard`), and `pmean` over the
"devices" axis averages gradients across all hosts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import pathlib
import signal
import threading
import time

import jax
import numpy as np
import optax
import tqdm
from flax import nnx

from . import checkpoint, dataset, losses, metrics, splits
from .dataset import Dataset, distinct_programs, store_bucket
from .errors import UserError
from .evaluate import ranking_report
from .model import ModelConfig, build_model
from .normalize import Normalizer


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    loss: str = "lambdarank+pairwise"  # a key of losses.LOSSES
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    groups_per_batch: int = 32  # split across devices; must be divisible by the device count
    programs_per_group: int = 32  # sampled per group per batch; padding marks the missing ones
    # 8,000 with early stopping: 2,000 under-trains, by-host +0.014 / +0.018 PCA on Zen 5 / Emerald Rapids (session 25)
    steps: int = 8000
    eval_every: int = 200
    patience: int = 5  # evaluations without a better validation PCA before stopping
    seed: int = 0
    max_stores: int | None = None  # truncate programs with more stores (None: the dataset's maximum)
    # log | linear | quantile (normalize.py); auto: quantile for a model that bins its store features, else log
    store_scaling: str = "auto"
    only_varied_hardware: bool = True  # zero the hardware entries that never varied in training (normalize.py)
    validation: str = "programs"  # early stopping on held-out programs or tasks (splits.early_stopping_split)
    # this fraction of each batch's groups is seen through its trace tokens alone (every store masked), so that
    # the model also ranks from traces alone: tuning's cheap first stage before PerStoreFeature. Models that read
    # no traces train on every store. At 8,000 steps it ranks the whole model no worse (Emerald Rapids held out:
    # 0.813 / 0.743 / 0.927 PCA / top-1 / top-5 against 0.811 / 0.629 / 0.926 without; session 28); short runs pay
    # (1,500 steps: -0.004 PCA, session 13), which the report's 1,000-step pruning and 300-step fine-tuning inherit
    store_dropout: float = 0.25
    # each batch's groups see their hardware vector shifted by Gaussian noise of this many times each entry's spread
    # over the training programs: a few hosts give a few distinct vectors, which a model can memorise as host ids
    # (every host held out, two seeds: +0.019 PCA on Emerald Rapids, +0.008 on Zen 5, +-0.002 on the others; session 14)
    hardware_noise: float = 0.5
    # draw only groups with two or more different programs: a quarter of data/v1's groups measured one schedule
    # again and again (tiny tasks with nothing to tune), where every model ties and the loss has no gradient
    distinct_groups: bool = True

    def __post_init__(self):
        if self.loss not in losses.LOSSES:
            raise UserError(f"unknown loss {self.loss!r}; choose {', '.join(losses.LOSSES)}")
        if self.validation not in splits.VALIDATIONS:
            raise UserError(f"unknown validation {self.validation!r}; choose {', '.join(splits.VALIDATIONS)}")
        if not 0.0 <= self.store_dropout < 1.0:
            raise UserError(f"store_dropout must be in [0, 1), got {self.store_dropout}")
        if self.hardware_noise < 0:
            raise UserError(f"hardware_noise must be >= 0, got {self.hardware_noise}")

    def scaling_for(self, model_config: ModelConfig) -> str:
        if self.store_scaling != "auto":
            return self.store_scaling
        return "quantile" if model_config.bins_stores else "log"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Batch:
    features: np.ndarray  # [G, n, S, F]
    mask: np.ndarray  # [G, n, S]
    workload: np.ndarray  # [G, n, W]
    hardware: np.ndarray  # [G, n, H]
    trace_ids: np.ndarray  # [G, n, T]; T = 0 for a model that reads no trace
    trace_values: np.ndarray  # [G, n, T, V]
    labels: np.ndarray  # [G, n]
    where: np.ndarray  # [G, n]


class GroupSampler:
    """Draws `groups_per_batch` groups and up to `programs_per_group` programs of each, deterministically."""

    def __init__(self, data: Dataset, inputs: tuple, config: TrainConfig, host_shard: tuple[int, int] = (0, 1)):
        self.inputs, self.config = inputs, config
        self.labels = data.label
        ok = np.isfinite(data.latency)
        groups = [g for g in np.unique(data.group[ok]) if (data.group[ok] == g).sum() >= 2]
        host, hosts = host_shard
        self.members = [np.flatnonzero(ok & (data.group == g)) for g in groups[host::hosts]]
        if config.distinct_groups:
            program_arrays = (inputs[0], inputs[1], inputs[4], inputs[5])  # store rows, mask, trace tokens
            self.members = [m for m in self.members if distinct_programs(program_arrays, m) >= 2]
        if not self.members:
            raise UserError("no group in the training data has two or more "
                            + ("different " if config.distinct_groups else "") + "measured programs")
        # a batch draws its groups from one store bucket, so it is padded to that bucket, not to the maximum
        stores = inputs[1].sum(-1)
        buckets = [store_bucket(stores[m].max(), inputs[1].shape[1]) for m in self.members]
        self.buckets = {b: np.flatnonzero(np.array(buckets) == b) for b in sorted(set(buckets))}
        sizes = np.array([len(v) for v in self.buckets.values()])
        self.bucket_odds = sizes / sizes.sum()  # a bucket as often as its groups: each group equally often
        self.hardware_spread = inputs[3].std(axis=0)  # 0 where an entry never varied: no noise there
        self.rng = np.random.default_rng(config.seed)

    def next(self) -> Batch:
        g, n = self.config.groups_per_batch, self.config.programs_per_group
        bucket = list(self.buckets)[self.rng.choice(len(self.bucket_odds), p=self.bucket_odds)]
        pool = self.buckets[bucket]
        chosen = pool[self.rng.choice(len(pool), size=g, replace=len(pool) < g)]
        index = np.zeros((g, n), np.int64)
        where = np.zeros((g, n), bool)
        for row, group in enumerate(chosen):
            members = self.members[group]
            take = self.rng.choice(members, size=min(n, len(members)), replace=False)
            index[row, : len(take)] = take
            where[row, : len(take)] = True
        features, mask, workload, hardware, trace_ids, trace_values = (x[index] for x in self.inputs)
        features, mask = features[:, :, :bucket], mask[:, :, :bucket]
        if self.config.store_dropout:
            mask = mask & (self.rng.random(g) >= self.config.store_dropout)[:, None, None]
        if self.config.hardware_noise:  # one draw per group: a group is one config
            noise = self.rng.normal(size=(g, 1, hardware.shape[-1])) * self.config.hardware_noise
            hardware = (hardware + noise * self.hardware_spread).astype(hardware.dtype)
        labels = np.where(where, self.labels[index], 0.0).astype(np.float32)
        return Batch(features, mask, workload, hardware, trace_ids, trace_values, labels, where)


def loss_fn(params, graphdef, batch: dict, *, loss_name: str):
    model = nnx.merge(graphdef, params)
    g, n = batch["labels"].shape
    flat = lambda x: x.reshape((g * n,) + x.shape[2:])  # noqa: E731
    names = ("features", "mask", "workload", "hardware", "trace_ids", "trace_values")
    scores = model(*(flat(batch[name]) for name in names))
    return losses.LOSSES[loss_name](scores.reshape(g, n), batch["labels"], where=batch["where"])


def train_step(params, opt_state, batch: dict, *, graphdef, optimizer, loss_name: str):
    """One step on this device's share of the batch; gradients are averaged over the "devices" axis."""
    loss, grads = jax.value_and_grad(loss_fn)(params, graphdef, batch, loss_name=loss_name)
    grads = jax.lax.pmean(grads, axis_name="devices")
    loss = jax.lax.pmean(loss, axis_name="devices")
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@functools.partial(jax.jit, static_argnames="graphdef")  # compiled once per graphdef and bucket, not per call
def score_fn(params, inputs: tuple, *, graphdef):
    return nnx.merge(graphdef, params)(*inputs)


class DataParallel:
    """The only place that knows about devices: replicate once, shard batches, run the pmapped step."""

    def __init__(self, graphdef, optimizer, loss_name: str):
        self.devices = jax.local_devices()
        mesh = jax.sharding.Mesh(np.array(self.devices), ("devices",))
        self.sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("devices"))
        self.step = jax.pmap(functools.partial(train_step, graphdef=graphdef, optimizer=optimizer,
                                               loss_name=loss_name), axis_name="devices")

    def replicate(self, tree):
        """One copy per device on a leading axis (what jax.device_put_replicated did before JAX 0.8.1)."""
        count = len(self.devices)
        return jax.tree.map(lambda x: jax.device_put(np.broadcast_to(x, (count,) + np.shape(x)), self.sharding),
                            tree)

    @staticmethod
    def unreplicate(tree):
        return jax.tree.map(lambda x: np.asarray(x[0]), tree)

    def shard(self, batch: Batch) -> dict:
        count = len(self.devices)
        if batch.labels.shape[0] % count:
            raise UserError(f"groups_per_batch {batch.labels.shape[0]} is not divisible by {count} devices")
        return {k: jax.device_put(v.reshape((count, len(v) // count) + v.shape[1:]), self.sharding)
                for k, v in dataclasses.asdict(batch).items()}


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, min(200, config.steps // 10 + 1),
                                                  config.steps)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=config.weight_decay))


def model_inputs(normalizer: Normalizer, data: Dataset, stores: int, model_config: ModelConfig) -> tuple:
    """(features, mask, workload, hardware) normalised, then the trace tokens the model reads (maybe none)."""
    tokens = model_config.trace_tokens
    if tokens and data.trace_ids.shape[1] < tokens:
        raise UserError("this model reads schedule-trace tokens and the dataset has none; run `xfer-jax featurize` "
                        "on its databases again to add them, or train with --no-trace")
    return (*normalizer.apply(data.features[:, :stores], data.mask[:, :stores], data.workload, data.hardware),
            data.trace_ids[:, :tokens], data.trace_values[:, :tokens])


def predict_scores(params, graphdef, inputs: tuple, batch_size: int = 4096) -> np.ndarray:
    """Scores in chunks of programs sorted by store count, each chunk cut to its store bucket."""
    stores = inputs[1].sum(-1)
    order = np.argsort(stores, kind="stable")
    out = np.zeros(len(order), np.float32)
    for start in range(0, len(order), batch_size):
        index = order[start: start + batch_size]
        bucket = store_bucket(stores[index].max(), inputs[1].shape[1])
        features, mask, *rest = (x[index] for x in inputs)
        out[index] = np.asarray(score_fn(params, (features[:, :bucket], mask[:, :bucket], *rest), graphdef=graphdef))
    return out


@contextlib.contextmanager
def _ctrl_c_between_steps():
    """Yields `pressed()`: a first Ctrl-C is honoured between two steps, a second one at once. Python raises
    KeyboardInterrupt wherever the signal lands, and one landing in a finalizer or in orbax's wait for a save is
    swallowed or logged there, and training went on."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield lambda: False
        return
    pressed = []
    previous = signal.getsignal(signal.SIGINT)

    def on_ctrl_c(*_) -> None:
        pressed.append(True)
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


def as_trained(config: TrainConfig, model_config: ModelConfig) -> TrainConfig:
    """`config` as `model_config` trains under it: a model without trace tokens masks no stores (masking every
    store would leave it no input)."""
    return config if model_config.trace_tokens else dataclasses.replace(config, store_dropout=0.0)


RESUME_MAY_CHANGE = ("steps", "eval_every", "patience")  # a run may be resumed to train longer or stop later


def _check_same_training(saved: dict, config: TrainConfig, out: pathlib.Path) -> None:
    """A resumed run must train as the run it continues did (fields an older checkpoint lacks are not compared)."""
    changed = {k: (v, saved[k]) for k, v in config.to_dict().items()
               if k in saved and saved[k] != v and k not in RESUME_MAY_CHANGE}
    if changed:
        name, (now, before) = next(iter(changed.items()))
        raise UserError(f"{out} was trained with {name}={before!r}, this run asks for {now!r}: rerun with the "
                        "same settings to resume, or train into a new folder")


def train(data: Dataset, train_index: np.ndarray, valid_index: np.ndarray, model_config: ModelConfig,
          config: TrainConfig, out: pathlib.Path, split_info: dict | None = None,
          show_progress: bool = True, init: pathlib.Path | None = None) -> dict:
    """Train on `train_index`, early-stop on PCA over `valid_index`, checkpoint to `out`. Resumes from `out`.

    With `init` (a checkpoint folder) training starts from its best parameters and keeps its normalisation
    and store count: that is fine-tuning, e.g. few-shot transfer to a new platform.
    """
    out = pathlib.Path(out).absolute()
    checkpoint.use_compilation_cache()  # the next run of the same model and shapes skips compiling its step
    train_data = data.subset(train_index)
    valid_data = data.subset(valid_index)
    start = checkpoint.load(init) if init is not None else None
    if start is not None:
        model_config, normalizer, stores = start.config, start.normalizer, start.max_stores
    else:
        stores = config.max_stores or data.mask.shape[1]
        normalizer = Normalizer.fit(train_data.features[:, :stores], train_data.mask[:, :stores],
                                    train_data.workload, train_data.hardware,
                                    store_scaling=config.scaling_for(model_config),
                                    only_varied_hardware=config.only_varied_hardware,
                                    relative=model_config.reads_relative_features)

    if model_config.bins_stores and normalizer.store_scaling != "quantile":
        raise UserError("store_bins needs store_scaling='quantile' (its bins read features in [0, 1])")
    if not model_config.trace_tokens and config.store_dropout not in (0.0, TrainConfig.store_dropout):
        raise UserError("store_dropout leaves a program its trace tokens alone: it needs a model that reads them")
    config = as_trained(config, model_config)

    train_inputs, valid_inputs = (model_inputs(normalizer, d, stores, model_config) for d in (train_data, valid_data))
    sampler = GroupSampler(train_data, train_inputs, config, host_shard=(jax.process_index(), jax.process_count()))
    model = build_model(model_config, nnx.Rngs(config.seed))
    graphdef, params = nnx.split(model, nnx.Param)
    if start is not None:
        params = start.params
    optimizer = make_optimizer(config)
    opt_state = optimizer.init(params)
    metadata = checkpoint.make_metadata(model_config, normalizer, stores, data, split_info or {}, config)

    manager = checkpoint.open_manager(out)
    start_step, best, bad_evals, history = 0, {"pca": -1.0, "step": 0}, 0, []
    if manager.latest_step() is not None:  # resume where it stopped, with its history and patience
        params, opt_state, saved_meta = checkpoint.restore_training(manager, params, opt_state)
        _check_same_training(saved_meta.get("train", {}), config, out)
        start_step = manager.latest_step()
        best = saved_meta.get("best", best)
        bad_evals, history = saved_meta.get("bad_evals", 0), saved_meta.get("history", [])
        sampler.rng = np.random.default_rng([config.seed, start_step])
    parallel = DataParallel(graphdef, optimizer, config.loss)
    replicated = parallel.replicate((params, opt_state))

    end_step = start_step if bad_evals >= config.patience else config.steps  # stopped early: stays stopped
    resumed_evals = len(history)
    bar = tqdm.tqdm(range(start_step, end_step), initial=start_step, total=config.steps, desc="train",
                    disable=not show_progress, dynamic_ncols=True)
    tick = time.time()
    with _ctrl_c_between_steps() as ctrl_c_pressed:
        for step in bar:
            if ctrl_c_pressed():
                raise KeyboardInterrupt
            new_params, new_opt, loss = parallel.step(*replicated, parallel.shard(sampler.next()))
            replicated = (new_params, new_opt)
            if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                params, opt_state = parallel.unreplicate(replicated)
                scores = predict_scores(params, graphdef, valid_inputs)
                valid_pca = metrics.pca(scores, valid_data.latency, valid_data.group)
                history.append({"step": step + 1, "loss": float(loss[0]), "valid_pca": valid_pca})
                bar.set_postfix(loss=f"{float(loss[0]):.4f}", valid_pca=f"{valid_pca:.4f}")
                improved = valid_pca > best["pca"]
                if improved:
                    best, bad_evals = {"pca": valid_pca, "step": step + 1}, 0
                else:
                    bad_evals += 1
                checkpoint.save(manager, step + 1, params, opt_state,
                                {**metadata, "best": best, "history": history, "bad_evals": bad_evals}, best=improved)
                if bad_evals >= config.patience:
                    break
    bar.close()
    manager.wait_until_finished()
    seconds = time.time() - tick
    steps_run = (history[-1]["step"] if len(history) > resumed_evals else start_step) - start_step
    return {"best": best, "history": history, "train_seconds": seconds,
            "train_samples_per_s": steps_run * config.groups_per_batch * config.programs_per_group / max(seconds, 1e-9)}


def train_and_evaluate(data_path, split_name: str, out, *, holdout=None, shots=0, use_hardware=True, use_trace=True,
                       use_relative=True, size="base", seed=0, show_progress=True, **train_fields) -> dict:
    """Train the default model (or `size`) on a named split of the dataset at `data_path`, then score the best
    checkpoint on the split's test side: train's result plus "test" (an evaluate.ranking_report).

    `train_fields` override TrainConfig's defaults (steps, loss, ...)."""
    if size not in ("base", "small"):
        raise UserError(f"unknown model size {size!r}; choose base or small")
    config = TrainConfig(**{**train_fields, "seed": seed})
    data = dataset.load(data_path)
    split = splits.make_split(data, split_name, seed=seed, holdout=holdout, shots=shots)
    print(split.describe())
    fit, valid = splits.early_stopping_split(data, split, seed, config.validation)
    model_config = ModelConfig() if size == "base" else ModelConfig.small()
    model_config = dataclasses.replace(model_config, use_hardware=use_hardware, trace=use_trace,
                                       relative_features=use_relative)
    split_info = {**split.spec, "train_programs": int(len(split.train)), "test_programs": int(len(split.test))}
    result = train(data, fit, valid, model_config, config, pathlib.Path(out), split_info, show_progress)
    test = data.subset(split.test)
    scores = checkpoint.load(out).predict_dataset(test)
    return {**result, "test": ranking_report(test, scores)}
