"""Every plot xfer-jax draws, in one place: matplotlib (Agg) in, PNG files out."""

from __future__ import annotations

import pathlib

import numpy as np


def line_panels(path: pathlib.Path, panels: list[tuple[str, str, dict[str, tuple[list, list]]]], title: str,
          columns: int | None = None) -> None:
    """panels: (x label, y label, {line name: (xs, ys)}), laid out `columns` to a row (default: one row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = columns or len(panels)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4 * rows), squeeze=False)
    for axis, (xlabel, ylabel, lines) in zip(axes.ravel(), panels):
        for name, (xs, ys) in lines.items():
            points = [(x, y) for x, y in zip(xs, ys) if y is not None]
            if points:
                axis.plot(*zip(*points), marker="o", label=name)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        if axis.get_lines():
            axis.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def tuning_curves(report: dict, path: pathlib.Path) -> None:
    """Best estimated network latency against trials and against wall time, one line per cost model."""
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
