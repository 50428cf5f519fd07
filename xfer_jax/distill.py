"""Distillation: a fast student learns to rank as slower teachers do.

A model that ranks better but predicts slower (wider store bins, more layers, several seeds averaged) pays in
tuning only if its ranking survives in a model fast enough to score every candidate. The student trains on the
teachers' own split, on latencies that rank as the teachers' mean z-scored score does and keep each group's
measured spread; `mix` blends those with the measured latencies in log space (1: the teachers only). Early
stopping and the test stay on measured latencies.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from . import checkpoint, splits, train
from .dataset import Dataset
from .errors import UserError
from .evaluate import checkpoint_split, ranking_report
from .metrics import zscore
from .model import ModelConfig

# what tuning wants to call: no store bins (the 8x wider first layer is most of the default's prediction time)
FAST_STUDENT = ModelConfig(store_bins=0)


def _check_mix(mix: float) -> None:
    if not 0.0 <= mix <= 1.0:
        raise UserError(f"--mix must be in [0, 1], got {mix}")


def taught_latency(data: Dataset, index: np.ndarray, scores: np.ndarray, mix: float) -> np.ndarray:
    """data.latency with the programs at `index` given latencies that rank as `scores` (scores[i] is the score of
    index[i]; higher is faster).

    Within each group the scores' z-scores are scaled to the spread of its measured log-latencies around their
    mean, then blended with them: exp((1 - mix) * log(latency) + mix * (mean - spread * z)). Failures stay failed.
    """
    _check_mix(mix)
    latency = data.latency.astype(np.float64, copy=True)
    for group in np.unique(data.group[index]):
        where = np.flatnonzero((data.group[index] == group) & np.isfinite(data.latency[index]))
        if len(where) < 2:
            continue
        at, own = index[where], scores[where]
        log_latency = np.log(latency[at])
        z = zscore(own)
        target = log_latency.mean() - log_latency.std() * z
        latency[at] = np.exp((1.0 - mix) * log_latency + mix * target)
    return latency.astype(data.latency.dtype)


def distill(teachers: list[pathlib.Path], data_path, out, *, student: ModelConfig = FAST_STUDENT, mix: float = 0.5,
            seed: int = 0, show_progress: bool = True, **train_fields) -> dict:
    """Train `student` from `teachers` (checkpoints of one split) into `out`; train's result plus "test" for the
    student and "teacher_test" for the teachers' mean, on the split's test side."""
    _check_mix(mix)
    if not teachers:
        raise UserError("give at least one --teacher checkpoint")
    predictors = [checkpoint.load(t) for t in teachers]
    keys = ("name", "holdout", "shots", "seed")
    what = [({k: p.metadata.get("split", {}).get(k) for k in keys}, p.metadata.get("data")) for p in predictors]
    if any(w != what[0] for w in what):
        raise UserError("the teachers were trained on different splits or datasets; distil teachers of one split")
    data, split = checkpoint_split(teachers[0], data_path)
    config = train.TrainConfig(**{**train_fields, "seed": seed})
    fit, valid = splits.early_stopping_split(data, split, seed, config.validation)

    def mean_z(index: np.ndarray) -> np.ndarray:
        part = data.subset(index)
        runs = [p.predict_dataset(part) for p in predictors]
        return sum(zscore(r) for r in runs) / len(runs)

    taught = dataclasses.replace(data, latency=taught_latency(data, fit, mean_z(fit), mix))
    info = {**split.spec, "train_programs": int(len(split.train)), "test_programs": int(len(split.test)),
            "distilled_from": [str(pathlib.Path(t).absolute()) for t in teachers], "mix": mix}
    result = train.train(taught, fit, valid, student, config, pathlib.Path(out), info, show_progress)
    test = data.subset(split.test)
    scores = checkpoint.load(out).predict_dataset(test)
    return {**result, "test": ranking_report(test, scores), "teacher_test": ranking_report(test, mean_z(split.test))}
