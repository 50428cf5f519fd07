"""Checkpoints (orbax) and the `Predictor` that other JAX code uses: no TVM, no training code.

A checkpoint folder holds two orbax CheckpointManagers, each keeping one step:
    state/  the latest training state, for resuming
    best/   the state with the best validation PCA: what `load` returns
Each step stores params, optimizer state and JSON metadata (model config, normaliser, feature schema,
a summary of the training data and split).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from .dataset import NUM_STORE_FEATURES, NUM_WORKLOAD_FEATURES, SCHEMA_VERSION, store_bucket, summary
from .errors import UserError
from .hardware import HARDWARE_FEATURE_NAMES, NUM_HARDWARE_FEATURES
from .model import ModelConfig, build_model
from .normalize import Normalizer
from .trace import TOKEN_VALUES


class CheckpointError(UserError):
    """A checkpoint that is missing or was written for another feature schema."""


def make_metadata(model_config: ModelConfig, normalizer: Normalizer, max_stores: int, data, split_info: dict,
                  train_config) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "store_features": NUM_STORE_FEATURES,
        "workload_features": NUM_WORKLOAD_FEATURES,
        "hardware_features": list(HARDWARE_FEATURE_NAMES),
        "max_stores": int(max_stores),
        "model": model_config.to_dict(),
        "normalizer": normalizer.to_dict(),
        "train": train_config.to_dict(),
        "data": summary(data),
        "split": split_info,
    }


def open_manager(path: pathlib.Path, kind: str = "state") -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
    return ocp.CheckpointManager(pathlib.Path(path).absolute() / kind, options=options)


def _pure(params) -> dict:
    return nnx.to_pure_dict(params)


def save(manager: ocp.CheckpointManager, step: int, params, opt_state, metadata: dict, best: bool) -> None:
    """Save the latest state, and (if `best`) the best one next to it; both saves are awaited."""
    items = ocp.args.Composite(params=ocp.args.StandardSave(_pure(params)),
                               opt_state=ocp.args.StandardSave(opt_state),
                               metadata=ocp.args.JsonSave(metadata))
    manager.save(step, args=items, force=True)
    manager.wait_until_finished()
    if best:
        best_manager = open_manager(pathlib.Path(manager.directory).parent, "best")
        best_manager.save(step, args=items, force=True)
        best_manager.wait_until_finished()
        best_manager.close()


def save_predictor(path: pathlib.Path, predictor: "Predictor", opt_state, extra: dict) -> None:
    """Write a predictor (e.g. after online updates) as a checkpoint folder that `load` reads."""
    manager = open_manager(path)
    step = (manager.latest_step() or 0) + 1
    save(manager, step, predictor.params, opt_state, {**predictor.metadata, **extra}, best=True)
    manager.close()


def restore_training(manager: ocp.CheckpointManager, params, opt_state):
    """(params, opt_state, metadata) of the latest step, shaped like the given templates."""
    step = manager.latest_step()
    abstract = lambda tree: jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)  # noqa: E731
    restored = manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract(_pure(params))),
        opt_state=ocp.args.StandardRestore(abstract(opt_state)),
        metadata=ocp.args.JsonRestore()))
    nnx.replace_by_pure_dict(params, restored["params"])
    return params, restored["opt_state"], restored["metadata"]


# model fields added after checkpoints were shipped, with the value every checkpoint written before them had
_FIELDS_BEFORE_THEY_EXISTED = {"store_hidden": 0, "store_bins": 0, "trace": False, "relative_features": False}


def model_config_of(meta: dict) -> ModelConfig:
    """The ModelConfig a checkpoint was trained with, also for checkpoints older than some of its fields."""
    return ModelConfig(**{**_FIELDS_BEFORE_THEY_EXISTED, **meta["model"]})


def _check_metadata(path: pathlib.Path, meta: dict) -> None:
    expected = {"schema_version": SCHEMA_VERSION, "store_features": NUM_STORE_FEATURES,
                "workload_features": NUM_WORKLOAD_FEATURES}
    for key, value in expected.items():
        if meta.get(key) != value:
            raise CheckpointError(f"checkpoint {path} has {key}={meta.get(key)!r}, this xfer-jax expects "
                                  f"{value!r}; retrain it with this version")
    known = meta.get("hardware_features")
    if isinstance(known, list) and len(known) > NUM_HARDWARE_FEATURES \
            and known[:NUM_HARDWARE_FEATURES] == list(HARDWARE_FEATURE_NAMES):
        raise CheckpointError(f"checkpoint {path} reads hardware features this xfer-jax does not know "
                              f"({known[NUM_HARDWARE_FEATURES:]}); load it with the newer version that wrote it")
    if not isinstance(known, list) or not known or known != list(HARDWARE_FEATURE_NAMES[: len(known)]):
        raise CheckpointError(f"checkpoint {path} has hardware features {known!r}, not a leading part of this "
                              f"xfer-jax's {list(HARDWARE_FEATURE_NAMES)}; retrain it with this version")
    unknown = set(meta.get("model", {})) - {f.name for f in dataclasses.fields(ModelConfig)}
    if unknown:
        raise CheckpointError(f"checkpoint {path} has model fields {sorted(unknown)} that this xfer-jax does not "
                              "know; load it with the version that wrote it")


class Predictor:
    """predict(features [N,S,164], mask [N,S], workload [N,W], hardware [N,H], [1,H] or [H]) -> scores [N];
    a model that reads schedule-trace tokens also takes trace_ids [N,T] and trace_values [N,T,V] (xfer_jax.trace).

    Inputs are raw (as the dataset and the featurizer produce them); normalisation runs inside the jit.
    N and S are padded up to powers of two (S at most the checkpoint's store count), so each bucket compiles once.
    """

    def __init__(self, graphdef, params, metadata: dict):
        self.graphdef, self.params, self.metadata = graphdef, params, metadata
        self.config = model_config_of(metadata)
        self.normalizer = Normalizer.from_dict(metadata["normalizer"])
        self.max_stores = int(metadata["max_stores"])
        self._score = jax.jit(functools.partial(_normalized, graphdef=graphdef, normalizer=self.normalizer))
        self._embed = jax.jit(functools.partial(_normalized, graphdef=graphdef, normalizer=self.normalizer,
                                                method="embed"))

    def predict_dataset(self, data) -> np.ndarray:
        """Scores for every program of a Dataset."""
        return self.predict(data.features, data.mask, data.workload, data.hardware, data.trace_ids,
                            data.trace_values)

    def predict_from_traces(self, workload, hardware, trace_ids, trace_values) -> np.ndarray:
        """Scores from the trace tokens alone, every store masked (a model trained with store_dropout ranks so):
        the cheap first stage of `xfer-jax tune --prescreen`."""
        n = len(trace_ids)
        return self.predict(np.zeros((n, 1, NUM_STORE_FEATURES), np.float32), np.zeros((n, 1), bool), workload,
                            hardware, trace_ids, trace_values)

    def predict(self, features, mask, workload, hardware, trace_ids=None, trace_values=None) -> np.ndarray:
        return self._run(self._score, (), features, mask, workload, hardware, trace_ids, trace_values)

    def embed(self, features, mask, workload, hardware, trace_ids=None, trace_values=None) -> np.ndarray:
        """[N, dim]: what the model's readout reads (CostModel.embed), from the same inputs as predict."""
        return self._run(self._embed, (self.config.dim,), features, mask, workload, hardware, trace_ids,
                         trace_values)

    def _run(self, fn, shape: tuple, features, mask, workload, hardware, trace_ids, trace_values) -> np.ndarray:
        """fn's output, [N, *shape], run bucket by bucket."""
        features, mask, workload = np.asarray(features, np.float32), np.asarray(mask, bool), np.asarray(workload)
        hardware = np.asarray(hardware, np.float32)
        n = len(features)
        tokens = self.config.trace_tokens
        if tokens and (trace_ids is None or np.shape(trace_ids)[1:] != (tokens,)):
            raise CheckpointError(f"this model reads schedule-trace tokens: pass trace_ids [N,{tokens}] and "
                                  "trace_values (xfer_jax.trace.batch_tokens of each program's trace)")
        trace_ids = np.asarray(trace_ids, np.int8)[:, :tokens] if tokens else np.zeros((n, 0), np.int8)
        trace_values = (np.asarray(trace_values, np.float32)[:, :tokens] if tokens
                        else np.zeros((n, 0, TOKEN_VALUES), np.float32))
        if n == 0:
            return np.zeros((0, *shape), np.float32)
        if hardware.ndim == 1:
            hardware = hardware[None]
        known = len(self.metadata["hardware_features"])  # later entries of a longer vector are not read
        if features.shape[2] != NUM_STORE_FEATURES or workload.shape[1] != NUM_WORKLOAD_FEATURES \
                or not known <= hardware.shape[1] <= NUM_HARDWARE_FEATURES or len(hardware) not in (1, n):
            raise CheckpointError(f"predict got features {features.shape}, workload {workload.shape}, hardware "
                                  f"{hardware.shape}; expected [N,S,{NUM_STORE_FEATURES}], "
                                  f"[N,{NUM_WORKLOAD_FEATURES}], [N,{NUM_HARDWARE_FEATURES}] (this model reads "
                                  f"the first {known} hardware entries)")
        if len(hardware) > 1 and (hardware == hardware[:1]).all():
            hardware = hardware[:1]  # one config for the whole batch: the model embeds it once
        # programs run in groups of equal store bucket, so a few many-store programs don't pad all the others
        buckets = np.array([store_bucket(c, self.max_stores) for c in mask.sum(1)])
        out = np.zeros((n, *shape), np.float32)
        for stores in np.unique(buckets):
            index = np.flatnonzero(buckets == stores)
            out[index] = self._run_bucket(fn, features[index], mask[index], workload[index],
                                          hardware if len(hardware) == 1 else hardware[index],
                                          trace_ids[index], trace_values[index], int(stores))
        return out

    def _run_bucket(self, fn, features, mask, workload, hardware, trace_ids, trace_values, stores: int) -> np.ndarray:
        n = len(features)
        features, mask = features[:, :stores], mask[:, :stores]
        if features.shape[1] < stores:
            pad = stores - features.shape[1]
            features = np.pad(features, ((0, 0), (0, pad), (0, 0)))
            mask = np.pad(mask, ((0, 0), (0, pad)))
        bucket = max(64, 1 << (n - 1).bit_length())
        pad_n = ((0, bucket - n),)
        if len(hardware) > 1:
            hardware = np.pad(hardware, pad_n + ((0, 0),))
        out = fn(self.params, np.pad(features, pad_n + ((0, 0), (0, 0))), np.pad(mask, pad_n + ((0, 0),)),
                 np.pad(workload, pad_n + ((0, 0),)), hardware, np.pad(trace_ids, pad_n + ((0, 0),)),
                 np.pad(trace_values, pad_n + ((0, 0), (0, 0))))
        return np.asarray(out)[:n]


def _normalized(params, features, mask, workload, hardware, trace_ids, trace_values, *, graphdef,
                normalizer: Normalizer, method: str = "__call__"):
    inputs = normalizer.apply(features, mask, workload, hardware, xp=jnp)
    return getattr(nnx.merge(graphdef, params), method)(*inputs, trace_ids, trace_values)


def use_compilation_cache(folder: str | pathlib.Path | None = None) -> pathlib.Path | None:
    """Keep compiled predict buckets on disk (JAX's persistent compilation cache), so that a tune after the first
    one skips compiling (about half a second per bucket on 2 cores). Leaves a cache the user configured alone;
    returns the folder in use."""
    if jax.config.jax_compilation_cache_dir:
        return pathlib.Path(jax.config.jax_compilation_cache_dir)
    if folder is None:
        base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
        folder = pathlib.Path(base) / "xfer-jax" / "jax"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # our buckets compile in under 1 s
    return pathlib.Path(folder)


def default_path() -> pathlib.Path:
    """The shipped default model: inside an installed wheel, or `checkpoints/default` of a source checkout."""
    package = pathlib.Path(__file__).resolve().parent
    for candidate in (package / "checkpoints" / "default", package.parent / "checkpoints" / "default"):
        if (candidate / "best").is_dir():
            return candidate
    raise CheckpointError("the shipped default checkpoint is missing from this install; pass a checkpoint path")


def fingerprint(path: str | pathlib.Path) -> str:
    """Names the trained model in a checkpoint folder: retrained in place, the same folder gets another name, so
    that a job keyed by it (a tune) never resumes with results of the model it replaced."""
    digest = hashlib.sha256()
    for meta in sorted(pathlib.Path(path).glob("best/*/metadata/metadata")):  # the best step's JSON metadata
        digest.update(meta.parent.parent.name.encode() + meta.read_bytes())
    return digest.hexdigest()[:12]


def load(path: str | pathlib.Path | None = None) -> Predictor:
    """The best model of a checkpoint folder (None: the shipped default), ready to score programs."""
    path = default_path() if path is None else pathlib.Path(path).absolute()
    best = path / "best"
    if not best.is_dir():
        raise CheckpointError(f"no checkpoint at {path} (expected {best}/<step>/ written by `xfer-jax train`)")
    try:
        with ocp.CheckpointManager(best) as manager:
            step = manager.latest_step()
            if step is None:
                raise CheckpointError(f"checkpoint {path} holds no saved step")
            meta = manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))["metadata"]
            if not isinstance(meta, dict):
                raise CheckpointError(f"checkpoint {path} has no readable metadata")
            _check_metadata(path, meta)
            model = build_model(model_config_of(meta), nnx.Rngs(0))
            graphdef, params = nnx.split(model, nnx.Param)
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(params))
            restored = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract)))
        nnx.replace_by_pure_dict(params, restored["params"])
    except CheckpointError:
        raise
    except Exception as err:  # orbax and tensorstore raise many types for damaged files; the user needs one line
        raise CheckpointError(f"checkpoint {path} is damaged and cannot be read ({type(err).__name__}); "
                              "retrain it or restore the folder") from None
    return Predictor(graphdef, params, meta)
