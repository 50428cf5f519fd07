"""Predict and train speed of the cost model on this machine.

    python bench/speed.py [--checkpoint PATH (default: the shipped model)] [--json]

Prints (or, with --json, one JSON line with) predict_512_ms, predict_4096_ms and train_samples_per_s.
Predict times are medians over 20 calls after warm-up, with every program using all of the checkpoint's store
slots (the worst case); predict_512_ms_3_stores uses 3 stores, which 90% of the dataset's programs do not
exceed (tuning candidates of one task share a store bucket). Training uses the default model on synthetic
groups of 4 store slots, the bucket nearly every training batch falls in.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import numpy as np
from flax import nnx

import xfer_jax
from xfer_jax import dataset, train
from xfer_jax.hardware import NUM_HARDWARE_FEATURES
from xfer_jax.model import ModelConfig, build_model
from xfer_jax.trace import MAX_TOKENS, TOKEN_VALUES, TOKEN_VOCAB


def synthetic_traces(rng, shape) -> tuple[np.ndarray, np.ndarray]:
    """Trace tokens shaped like the dataset's: 30 real tokens (its mean) of MAX_TOKENS."""
    shape = np.atleast_1d(shape)
    ids = np.where(np.arange(MAX_TOKENS) < 30, rng.integers(1, len(TOKEN_VOCAB), (*shape, MAX_TOKENS)), 0)
    return ids.astype(np.int8), rng.random((*shape, MAX_TOKENS, TOKEN_VALUES)).astype(np.float32) * 8


def predict_ms(predictor, n: int, stores: int, repeats: int = 20) -> float:
    rng = np.random.default_rng(0)
    features = np.abs(rng.normal(size=(n, stores, dataset.NUM_STORE_FEATURES))).astype(np.float32)
    mask = np.ones((n, stores), bool)
    workload = rng.normal(size=(n, dataset.NUM_WORKLOAD_FEATURES)).astype(np.float32)
    hardware = rng.normal(size=NUM_HARDWARE_FEATURES).astype(np.float32)
    trace_ids, trace_values = synthetic_traces(rng, n)
    predictor.predict(features, mask, workload, hardware, trace_ids, trace_values)  # compile this bucket
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(features, mask, workload, hardware, trace_ids, trace_values)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def train_samples_per_s(steps: int = 50) -> float:
    config = train.TrainConfig()
    stores = 4
    model = build_model(ModelConfig(), nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    optimizer = train.make_optimizer(config)
    parallel = train.DataParallel(graphdef, optimizer, config.loss)
    state = parallel.replicate((params, optimizer.init(params)))
    rng = np.random.default_rng(0)
    g, n = config.groups_per_batch, config.programs_per_group
    batch = train.Batch(
        features=rng.normal(size=(g, n, stores, dataset.NUM_STORE_FEATURES)).astype(np.float32),
        mask=np.ones((g, n, stores), bool),
        workload=rng.normal(size=(g, n, dataset.NUM_WORKLOAD_FEATURES)).astype(np.float32),
        hardware=rng.normal(size=(g, n, NUM_HARDWARE_FEATURES)).astype(np.float32),
        **dict(zip(("trace_ids", "trace_values"), synthetic_traces(rng, (g, n)))),
        labels=rng.random((g, n)).astype(np.float32), where=np.ones((g, n), bool))
    sharded = parallel.shard(batch)
    state = parallel.step(*state, sharded)[:2]  # compile
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        params_r, opt_r, loss = parallel.step(*state, sharded)
        state = (params_r, opt_r)
    jax.block_until_ready(loss)
    return steps * g * n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    predictor = xfer_jax.load(args.checkpoint)
    stores = predictor.max_stores
    result = {"predict_512_ms": round(predict_ms(predictor, 512, stores), 3),
              "predict_4096_ms": round(predict_ms(predictor, 4096, stores), 3),
              "predict_512_ms_3_stores": round(predict_ms(predictor, 512, min(3, stores)), 3),
              "train_samples_per_s": round(train_samples_per_s(), 1),
              "devices": [str(d) for d in jax.local_devices()], "max_stores": predictor.max_stores}
    print(json.dumps(result) if args.json else "\n".join(f"{k:22s} {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
