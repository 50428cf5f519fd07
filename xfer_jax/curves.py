"""Tuning curves (pure numpy): trials to the baseline's final latency, and the curve plot.

A curve is a list of [trials, wall seconds, estimated network latency in ms or None] points, one per measured
batch, as `xfer-jax tune` writes them.
"""

from __future__ import annotations

import pathlib

import numpy as np


def _first_reach(models: dict, column: int) -> dict:
    """Per model: the trials (column 0) or seconds (column 1) at which its estimated latency first reaches
    xgb's final estimate; None where it never does."""
    if "xgb" not in models:
        return {}
    estimates = [e for _, _, e in models["xgb"]["curve"] if e is not None]
    if not estimates:
        return {}
    target = estimates[-1]
    return {name: next((point[column] for point in entry["curve"] if point[2] is not None
                        and point[2] <= target * 1.0001), None) for name, entry in models.items()}


def trials_to_baseline(models: dict) -> dict:
    """Per model: trials until its estimated latency first reaches xgb's final estimate (None: never)."""
    return _first_reach(models, 0)


def seconds_to_baseline(models: dict) -> dict:
    """Per model: tuning seconds until its estimated latency first reaches xgb's final estimate (None: never)."""
    return _first_reach(models, 1)


def plot_curves(report: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, entry in report["models"].items():
        points = [(t, s, e) for t, s, e in entry["curve"] if e is not None]
        if not points:
            continue
        trials, seconds, latency = zip(*points)
        best = np.minimum.accumulate(latency)
        axes[0].step(trials, best, where="post", label=name)
        axes[1].step(seconds, best, where="post", label=name)
    axes[0].set_xlabel("trials")
    axes[1].set_xlabel("wall time (s)")
    for axis in axes:
        axis.set_ylabel("estimated latency (ms)")
        axis.set_yscale("log")  # untuned tasks dominate the start; the tuned end differs by a few percent
        axis.grid(alpha=0.3)
        if axis.get_lines():
            axis.legend()
    fig.suptitle(f"{report['network']} on {report['platform']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
