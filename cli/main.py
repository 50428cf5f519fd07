"""The `xfer-jax` command line. Each command parses its arguments and calls one library function."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
from typing import Optional

import typer

from xfer_jax.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Cross-hardware learned cost model for TVM MetaSchedule.")


@contextlib.contextmanager
def user_errors():
    """A user's mistake becomes one line on stderr and exit code 2, never a traceback."""
    try:
        yield
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


@app.command()
def platforms(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the built-in hardware configs and whether this host can run them."""
    from xfer_jax.bridge.platforms import builtin_platform_names, get_platform, runnable_platform_names

    runnable = set(runnable_platform_names())
    rows = [{"name": n, "runnable": n in runnable, "target": get_platform(n).target} for n in builtin_platform_names()]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for row in rows:
        typer.echo(f"{row['name']:12s} {'runnable' if row['runnable'] else '-':9s} {json.dumps(row['target'])}")


@app.command()
def collect(
    platform: list[str] = typer.Option(..., "--platform", "-p", help="hardware config (repeatable)"),
    network: list[str] = typer.Option(None, "--network", "-n", help="zoo network (repeatable)"),
    onnx: Optional[pathlib.Path] = typer.Option(None, "--onnx", help="your own ONNX model instead of --network"),
    out: pathlib.Path = typer.Option(..., "--out", help="collection folder; rerun to resume"),
    programs_per_task: int = typer.Option(96, "--programs-per-task", "-k", min=1),
    batch: int = typer.Option(1, "--batch", min=1, help="network batch size"),
    max_tasks: Optional[int] = typer.Option(None, "--max-tasks", min=1, help="only the heaviest N tasks"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Run MetaSchedule and measure every proposed program, appending MetaSchedule JSON databases."""
    with user_errors():
        from xfer_jax.bridge.collect import CollectConfig, collect as run_collect
        from xfer_jax.bridge.networks import NetworkError, get_network
        from xfer_jax.bridge.platforms import get_platform

        if not network and onnx is None:
            raise NetworkError("give --network NAME (repeatable) or --onnx PATH")
        config = CollectConfig(programs_per_task=programs_per_task, max_tasks=max_tasks, seed=seed)
        chosen = [get_platform(p) for p in platform]
        for target_platform in chosen:
            target_platform.check_runnable()
        nets = [get_network(onnx_path=onnx, batch=batch)] if onnx else [get_network(n, batch=batch) for n in network]
        for net in nets:
            for target_platform in chosen:
                summary = run_collect(target_platform, net, out, config)
                typer.echo(f"{summary.out_dir}: {summary.measured} measured, {summary.failed} failed, "
                           f"{summary.tasks_skipped_shared} tasks already done, "
                           f"{summary.programs_per_hour:.0f} programs/h")


@app.command()
def featurize(
    collection: pathlib.Path = typer.Argument(..., help="folder written by `xfer-jax collect`"),
    out: pathlib.Path = typer.Option(..., "--out", help="dataset folder; new shards are appended"),
) -> None:
    """Turn collected databases into dataset shards (incremental: only new records are featurized)."""
    with user_errors():
        from xfer_jax.bridge.featurize import featurize as run_featurize

        summary = run_featurize(collection, out)
        typer.echo(json.dumps(dataclasses.asdict(summary)))


@app.command()
def info(
    path: pathlib.Path = typer.Argument(..., help="dataset folder"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Sizes of a dataset: programs, tasks, platforms, networks, failures."""
    with user_errors():
        from xfer_jax import dataset

        stats = dataset.summary(dataset.load(path))
    if as_json:
        typer.echo(json.dumps(stats, indent=1))
        return
    for key, value in stats.items():
        typer.echo(f"{key:24s} {value}")


def main() -> None:
    app()
