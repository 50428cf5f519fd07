"""Tuning curves: trials and seconds to a baseline's final latency (plots.tuning_curves draws them).

A curve is a list of [trials, wall seconds, estimated network latency in ms or None] points, one per measured
batch, as `xfer-jax tune` writes them.
"""

from __future__ import annotations


def _first_reach(models: dict, column: int, baseline: str) -> dict:
    """Per model: the trials (column 0) or seconds (column 1) at which its estimated latency first reaches
    the baseline's final estimate; None where it never does."""
    if baseline not in models:
        return {}
    estimates = [e for _, _, e in models[baseline]["curve"] if e is not None]
    if not estimates:
        return {}
    target = estimates[-1]
    return {name: next((point[column] for point in entry["curve"] if point[2] is not None
                        and point[2] <= target * 1.0001), None) for name, entry in models.items()}


def trials_to_baseline(models: dict, baseline: str = "xgb") -> dict:
    """Per model: trials until its estimated latency first reaches the baseline's final estimate (None: never)."""
    return _first_reach(models, 0, baseline)


def seconds_to_baseline(models: dict, baseline: str = "xgb") -> dict:
    """Per model: tuning seconds until its estimated latency first reaches the baseline's final estimate."""
    return _first_reach(models, 1, baseline)
