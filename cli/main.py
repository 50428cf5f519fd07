"""The `xfer-jax` command line. Each command parses its arguments and calls one library function."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import os
import pathlib
import signal
import sys
from typing import Callable, Optional

import typer

from xfer_jax.errors import UserError
from xfer_jax.losses import LOSSES
from xfer_jax.prune import METHODS
from xfer_jax.splits import SPLITS


def _choices(name: str, values) -> type[enum.Enum]:
    """A str Enum of a library's names: --help lists them and typer refuses a typo in one line."""
    return enum.Enum(name, {value: value for value in values}, type=str)


Split = _choices("Split", SPLITS)
PruneMethod = _choices("PruneMethod", METHODS)
Loss = _choices("Loss", LOSSES)
Size = _choices("Size", ("base", "small"))
TaskScheduler = _choices("TaskScheduler", ("gradient", "round-robin"))

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Cross-hardware learned cost model for TVM MetaSchedule.")


class _DropInterruptTracebacks(logging.Filter):
    """orbax logs a Ctrl-C that lands while it waits for a checkpoint save as an error with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[0] is KeyboardInterrupt)


logging.getLogger("absl").addFilter(_DropInterruptTracebacks())


@contextlib.contextmanager
def user_errors():
    """A user's mistake becomes one line on stderr and exit code 2, never a traceback; so does Ctrl-C (130)."""
    try:
        yield
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        _leave_interrupted()


def _leave_interrupted(*_) -> None:
    typer.echo("\ninterrupted; rerun the same command to resume", err=True)  # below a progress bar
    sys.stderr.flush()
    sys.stdout.flush()
    # leave at once: background threads (orbax saves, TVM workers) can crash a normal interpreter teardown;
    # what collect and tune resume from is appended line by line or written whole (temporary name, then rename)
    os._exit(130)


def leave_at_once_on_ctrl_c(before_leaving: Callable[[], object] = lambda: None) -> None:
    """For commands that run TVM's C++ search loops (collect, tune): a KeyboardInterrupt raised in one of its
    Python callbacks crashed tune with a segfault and 76 lines of native stack. Leave from the handler instead,
    as a kill would, after `before_leaving` (whatever it raises); both commands resume from what they appended."""
    def leave(*_) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt `before_leaving`
        try:
            before_leaving()
        finally:
            _leave_interrupted()

    signal.signal(signal.SIGINT, leave)


def given(**options) -> dict:
    """The options the user set: the rest keep their config dataclass's default (one owner per default)."""
    return {key: value for key, value in options.items() if value is not None}


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
    programs_per_task: Optional[int] = typer.Option(None, "--programs-per-task", "-k", min=1,
                                                    help="[default: CollectConfig.programs_per_task]"),
    batch: int = typer.Option(1, "--batch", min=1, help="network batch size"),
    max_tasks: Optional[int] = typer.Option(None, "--max-tasks", min=1, help="only the heaviest N tasks"),
    seed: int = typer.Option(0, "--seed"),
    retry_failed_tasks: bool = typer.Option(False, "--retry-failed-tasks",
                                            help="measure again the tasks given up because all their programs failed"),
    run_timeout: Optional[float] = typer.Option(None, "--run-timeout", min=0.001,
                                                help="seconds per candidate run "
                                                "[default: MeasureConfig.run_timeout_s]"),
) -> None:
    """Run MetaSchedule and measure every proposed program, appending MetaSchedule JSON databases."""
    measuring: list[pathlib.Path] = []  # compressed on Ctrl-C, so that a paused collection is committed small
    leave_at_once_on_ctrl_c(before_leaving=lambda: [seal_network(folder) for folder in measuring])
    with user_errors():
        from xfer_jax.bridge.collect import CollectConfig, collect as run_collect, network_folder, seal_network
        from xfer_jax.bridge.measure import MeasureConfig
        from xfer_jax.bridge.networks import NetworkError, get_network
        from xfer_jax.bridge.platforms import get_platform

        if not network and onnx is None:
            raise NetworkError("give --network NAME (repeatable) or --onnx PATH")
        measure = MeasureConfig(**given(run_timeout_s=run_timeout))
        config = CollectConfig(**given(programs_per_task=programs_per_task), max_tasks=max_tasks, seed=seed,
                               retry_failed_tasks=retry_failed_tasks, measure=measure)
        chosen = [get_platform(p) for p in platform]
        for target_platform in chosen:
            target_platform.check_runnable()
        nets = [get_network(onnx_path=onnx, batch=batch)] if onnx else [get_network(n, batch=batch) for n in network]
        for net in nets:
            for target_platform in chosen:
                measuring[:] = [network_folder(out, target_platform, net)]
                summary = run_collect(target_platform, net, out, config)
                typer.echo(f"{summary.out_dir}: {summary.measured} measured, {summary.failed} failed, "
                           f"{summary.tasks_skipped_shared} tasks already done, "
                           f"{summary.repeats_skipped} repeated proposals skipped, "
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
    for path in summary.damaged_files:
        typer.echo(f"warning: skipped damaged {path}", err=True)
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


@app.command()
def prune(
    data: pathlib.Path = typer.Option(..., "--data", help="dataset folder"),
    keep: float = typer.Option(..., "--keep", help="fraction of each group's programs to keep, in (0, 1]"),
    method: PruneMethod = typer.Option("disagree", "--method", help="disagree lost the least PCA at 10-30% kept "
                                       "in the pruning study (reports/README.md)"),
    out: pathlib.Path = typer.Option(..., "--out", help="new dataset folder (never an existing dataset)"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a pruned copy of a dataset that records where it came from."""
    with user_errors():
        from xfer_jax import dataset
        from xfer_jax.prune import select

        loaded = dataset.load(data)
        keep_index = select(loaded, keep, method.value, seed)
        provenance = {"source": str(data.absolute()), "method": method.value, "keep": keep, "seed": seed,
                      "source_programs": int((~loaded.failed).sum())}
        written = dataset.write_subset(data, keep_index, out, provenance)
    typer.echo(f"kept {written} of {provenance['source_programs']} measured programs "
               f"({written / max(provenance['source_programs'], 1):.1%}) with {method.value}: {out}")


@app.command("train")
def train_command(
    data: pathlib.Path = typer.Option(..., "--data", help="dataset folder"),
    split: Split = typer.Option("within-task", "--split"),
    holdout: Optional[str] = typer.Option(None, "--holdout", help="network, platform or host to hold out"),
    shots: int = typer.Option(0, "--shots", min=0,
                              help="by-platform, by-host: programs per task of the held-out hardware in training"),
    out: pathlib.Path = typer.Option(..., "--out", help="checkpoint folder; rerun to resume"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="default: TrainConfig.steps"),
    loss: Optional[Loss] = typer.Option(None, "--loss", help="[default: TrainConfig.loss]"),
    no_hardware: bool = typer.Option(False, "--no-hardware", help="ablation: drop the hardware input"),
    no_trace: bool = typer.Option(False, "--no-trace", help="ablation: drop the schedule-trace tokens"),
    no_relative_features: bool = typer.Option(False, "--no-relative-features",
                                              help="ablation: store rows without their ratios to this machine's "
                                              "caches, threads and lanes"),
    store_dropout: Optional[float] = typer.Option(None, "--store-dropout", min=0.0, max=0.99,
                                                  help="share of groups trained on trace tokens alone, so that tune "
                                                  "--prescreen can rank by them [default: TrainConfig.store_dropout]"),
    hardware_noise: Optional[float] = typer.Option(None, "--hardware-noise", min=0.0,
                                                   help="jitter each group's hardware vector by this many times each "
                                                   "entry's spread [default: TrainConfig.hardware_noise]"),
    size: Size = typer.Option("base", "--size"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train the cost model on a split of a dataset (jit + pmap over all local devices)."""
    with user_errors():
        from xfer_jax.train import train_and_evaluate

        result = train_and_evaluate(data, split.value, out, holdout=holdout, shots=shots,
                                    use_hardware=not no_hardware, use_trace=not no_trace,
                                    use_relative=not no_relative_features, size=size.value, seed=seed,
                                    **given(steps=steps, loss=loss and loss.value, store_dropout=store_dropout,
                                          hardware_noise=hardware_noise))
    typer.echo(json.dumps({"best": result["best"], "train_samples_per_s": round(result["train_samples_per_s"], 1),
                           "test": {m: result["test"][m] for m in ("pca", "top1", "top5")}}))


@app.command()
def distill(
    teacher: list[pathlib.Path] = typer.Option(..., "--teacher", help="checkpoint to learn from; repeat to average "
                                               "several (one split)"),
    data: pathlib.Path = typer.Option(..., "--data", help="the teachers' dataset folder"),
    out: pathlib.Path = typer.Option(..., "--out", help="student checkpoint folder; rerun to resume"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="default: TrainConfig.steps"),
    mix: Optional[float] = typer.Option(None, "--mix", help="weight of the teachers against measured latency, in "
                                        "[0, 1] [default: distill's]"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train a fast student (no store bins) to rank as the teachers do, on their split; prints both on its test side."""
    with user_errors():
        from xfer_jax.distill import distill as distill_into

        result = distill_into(teacher, data, out, seed=seed, **given(steps=steps, mix=mix))
    typer.echo(json.dumps({"best": result["best"], **{name: {m: result[name][m] for m in ("pca", "top1", "top5")}
                                                       for name in ("test", "teacher_test")}}))


@app.command("eval")
def eval_command(
    checkpoint: pathlib.Path = typer.Option(..., "--checkpoint", help="checkpoint folder"),
    data: pathlib.Path = typer.Option(..., "--data", help="dataset folder (the one it was trained on, or a grown one)"),
    json_out: Optional[pathlib.Path] = typer.Option(None, "--json", help="also write the report here"),
) -> None:
    """PCA, top-1 and top-5 of one checkpoint on the test side of its own split (comparing models: `report`)."""
    with user_errors():
        from xfer_jax.evaluate import evaluate_checkpoint

        report = evaluate_checkpoint(checkpoint, data)
    typer.echo(report["split"])
    typer.echo(f"{'':24s} {'PCA':>7s} {'top-1':>7s} {'top-5':>7s}")
    rows = {"all": report, **{f"platform {k}": v for k, v in report["per_platform"].items()},
            **{f"network {k}": v for k, v in report["per_network"].items()}}
    for label, row in rows.items():
        cells = [f"{row[m]:7.4f}" if row.get(m) is not None else "      -" for m in ("pca", "top1", "top5")]
        typer.echo(f"{label[:24]:24s} {' '.join(cells)}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1))


@app.command()
def tune(
    network: Optional[str] = typer.Option(None, "--network", "-n", help="zoo network"),
    onnx: Optional[pathlib.Path] = typer.Option(None, "--onnx", help="your own ONNX model instead of --network"),
    platform: str = typer.Option("auto", "--platform", "-p"),
    trials: Optional[int] = typer.Option(None, "--trials", min=1,
                                         help="measured programs per cost model [default: TuneConfig.trials]"),
    trials_per_round: Optional[int] = typer.Option(None, "--trials-per-round", min=1,
                                                   help="programs measured per search round "
                                                   "[default: TuneConfig.trials_per_round]"),
    rounds_per_task: Optional[float] = typer.Option(None, "--rounds-per-task", min=0.01,
                                                    help="budget as rounds of every task: trials = ROUNDS x tasks x "
                                                    "trials per round (replaces --trials)"),
    top_k_per_task: Optional[int] = typer.Option(None, "--top-k-per-task", min=1,
                                                 help="measure only the model's K best candidates of each task, "
                                                 "one search per task (replaces --trials and --trials-per-round)"),
    checkpoint: Optional[pathlib.Path] = typer.Option(None, "--checkpoint",
                                                     help="a trained checkpoint [default: the shipped default model]"),
    compare: str = typer.Option("", "--compare", help="comma-separated: xgb (TVM's, from scratch), xgb-pretrained "
                                "(fitted on the checkpoint's training programs of --data), xfer-frozen (xfer without "
                                "online updates), xfer-finetune (xfer with the whole model fine-tuned online, where "
                                "xfer fine-tunes its readout alone), "
                                "xfer-residual (xfer frozen, with trees fitted to its errors on "
                                "the measurements added), xfer-explore (xfer, with a booster fitted on the "
                                "measurements blended into the tasks whose best stops improving), xfer-booster (xfer "
                                "frozen, with a booster fitted on the measurements blended in), xfer+xgb (xfer and "
                                "xgb-pretrained ranking together, an even blend, the whole model fine-tuned), "
                                "xfer-head+xgb (the same, only xfer's readout fine-tuned), xfer-frozen+xgb (xfer as "
                                "trained and the booster, "
                                "which alone adapts, their blend chosen online on each measured batch), random"),
    data: Optional[pathlib.Path] = typer.Option(None, "--data", help="xgb-pretrained, xfer+xgb: the dataset the "
                                                "checkpoint was trained on [default: TuneConfig.data]"),
    frozen: bool = typer.Option(False, "--frozen", help="xfer: no online updates"),
    prescreen: Optional[float] = typer.Option(None, "--prescreen", min=0.01, max=0.99,
                                              help="xfer: featurize only this fraction of the candidates, the best "
                                              "by their trace tokens alone (a model trained with store_dropout)"),
    population_size: Optional[int] = typer.Option(None, "--population-size", min=4,
                                                  help="candidates per generation of the evolutionary search "
                                                  "[default: TuneConfig.population_size]"),
    adapt_every: Optional[int] = typer.Option(None, "--adapt-every", min=1,
                                              help="xfer: new measurements between online updates "
                                              "[default: XferCostModel.adapt_every]"),
    task_scheduler: Optional[TaskScheduler] = typer.Option(None, "--task-scheduler", help="how trials go to tasks "
                                                           "[default: TuneConfig.task_scheduler]"),
    out: pathlib.Path = typer.Option(pathlib.Path("runs/tune"), "--out",
                                     help="work folder, OUT/NETWORK per job; rerun the same job to resume"),
    json_out: Optional[pathlib.Path] = typer.Option(None, "--json", help="also write the report here"),
    batch: int = typer.Option(1, "--batch", min=1),
    cache_flush: bool = typer.Option(True, "--cache-flush/--no-cache-flush", help="time every candidate on cold "
                                     "CPU caches (ten single runs, each after a flush), as kernels run inside a "
                                     "network; --no-cache-flush: warm repeats, as the datasets were collected"),
    rpc_tracker: Optional[str] = typer.Option(None, "--rpc-tracker", help="HOST:PORT of a TVM RPC tracker that "
                                              "measures the candidates; the platform must run here too, where the "
                                              "networks are compiled, checked and timed end to end"),
    rpc_key: Optional[str] = typer.Option(None, "--rpc-key"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Tune a whole network with xfer (and --compare models), compile it and measure end-to-end latency."""
    leave_at_once_on_ctrl_c()
    with user_errors():
        from xfer_jax.bridge.measure import MeasureConfig
        from xfer_jax.bridge.networks import NetworkError, get_network
        from xfer_jax.bridge.platforms import get_platform
        from xfer_jax.bridge.tune import TuneConfig, tune_network
        from xfer_jax.checkpoint import default_path as default_checkpoint

        if not network and onnx is None:
            raise NetworkError("give --network NAME or --onnx PATH")
        models = ["xfer"] + [m.strip() for m in compare.split(",") if m.strip() and m.strip() != "xfer"]
        if top_k_per_task and (trials or trials_per_round or rounds_per_task):
            raise UserError("--top-k-per-task sets the trials itself; leave out --trials, --trials-per-round and "
                            "--rounds-per-task")
        if rounds_per_task and trials:
            raise UserError("--rounds-per-task sets the trials itself; leave out --trials")
        config = TuneConfig(**given(trials=trials, trials_per_round=trials_per_round, data=data and str(data),
                                    top_k_per_task=top_k_per_task, rounds_per_task=rounds_per_task,
                                    adapt_every=adapt_every, population_size=population_size,
                                    task_scheduler=task_scheduler and task_scheduler.value),
                            seed=seed, frozen=frozen, prescreen=prescreen,
                            measure=(MeasureConfig.cold_cache if cache_flush else MeasureConfig)(
                                rpc_tracker=rpc_tracker, rpc_key=rpc_key))
        net = get_network(network, onnx, batch)
        report = tune_network(net, get_platform(platform), models, out / net.name, config,
                              checkpoint or default_checkpoint())
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1))
    for name, entry in report["models"].items():
        typer.echo(f"{name:8s} {entry['final_latency_ms']:9.3f} ± {entry['latency_spread_ms']:.3f} ms  "
                   f"trials {entry['trials']:5d}  wall {entry['wall_s']:7.1f} s  model {entry['model_s']:6.1f} s"
                   + ("" if entry["output_matches_untuned"] else "  output differs from the untuned build")
                   + (f"  {entry['wrong_output_programs']} wrong-output programs skipped"
                      if entry.get("wrong_output_programs") else ""))
    typer.echo(f"trials to xgb's final latency: {json.dumps(report['trials_to_baseline'])}")
    typer.echo(f"report: {out / net.name / 'tune.json'}  curve: {out / net.name / 'tune.png'}")


@app.command()
def report(
    data: pathlib.Path = typer.Option(pathlib.Path("data/v1/dataset"), "--data", help="dataset folder"),
    out: pathlib.Path = typer.Option(pathlib.Path("reports"), "--out", help="report folder"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="every number is a mean over these seeds "
                                        "[default: Plan.seeds]"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="training steps per model"),
    finetune_steps: Optional[int] = typer.Option(None, "--finetune-steps", min=1, help="few-shot fine-tuning steps"),
    shots: Optional[str] = typer.Option(None, "--shots", help="k programs per task from the held-out hardware"),
    networks: Optional[str] = typer.Option(None, "--networks", help="by-network holdouts (default: two)"),
    platforms: Optional[str] = typer.Option(None, "--platforms", help="by-platform holdouts (default: all)"),
    hosts: Optional[str] = typer.Option(None, "--hosts", help="by-host holdouts (default: all)"),
    whole_splits: Optional[str] = typer.Option(None, "--splits", help="the split table's whole-dataset rows: "
                                               "within-task, by-task [default: both]"),
    models: Optional[str] = typer.Option(None, "--models", help="the split table's models, e.g. xfer,xgb,xgb+hw "
                                         "[default: Plan.split_models]"),
    transfer_models: Optional[str] = typer.Option(None, "--transfer-models", help="the transfer tables' models, e.g. "
                                                  "xfer,noHW,xgb,xgb+hw [default: Plan.transfer_models]"),
    pruning: bool = typer.Option(True, "--pruning/--no-pruning", help="the pruning curves"),
    keep_fractions: Optional[str] = typer.Option(None, "--keep-fractions", help="pruning curve points"),
    prune_methods: Optional[str] = typer.Option(None, "--prune-methods", help="the pruning curves' methods, e.g. "
                                                "random,kcenter,easy [default: every prune method]"),
    prune_host: Optional[str] = typer.Option(None, "--prune-host", help="the host by-host pruning and the collection "
                                             "simulation hold out [default: the first CPU host]"),
    collect_methods: Optional[str] = typer.Option(None, "--collect-methods", help="the collection simulation's "
                                                  "methods, e.g. random,kcenter; none skips the simulation "
                                                  "[default: every collection method]"),
    collect_shots: Optional[str] = typer.Option(None, "--collect-shots", help="programs per task measured on the "
                                                "held-out host in the collection simulation, e.g. 16,64"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="train this many models at once (processes)"),
    tuning_only: bool = typer.Option(False, "--tuning-only", help="only rewrite the tuning tables and curves from "
                                     "OUT/tune/ (new tune results, no training)"),
    pruning_only: bool = typer.Option(False, "--pruning-only", help="only compute and rewrite the pruning curves "
                                      "and the collection simulation, not the split and transfer tables"),
    splits_only: bool = typer.Option(False, "--splits-only", help="only compute and rewrite the split table's "
                                     "within-task, by-task and by-network rows, not the transfer study nor pruning"),
    transfer_only: bool = typer.Option(False, "--transfer-only", help="only compute and rewrite the transfer study's "
                                       "rows: by-host with --hosts, by-platform with --platforms, both without; "
                                       "a refreshed kind's rows are all replaced, so name every holdout to keep"),
) -> None:
    """Every model on every split (by-host included), transfer curves, pruning and tuning, as reports/README.md,
    PNG plots and summary.json. Trained models are cached: a rerun only trains what is missing."""
    with user_errors():
        from xfer_jax.report import (TRANSFER_KINDS, Plan, build, parse_fractions, parse_list, refresh_pruning,
                                     refresh_splits, refresh_transfer, refresh_tuning)

        if tuning_only + pruning_only + splits_only + transfer_only > 1:
            raise UserError("--tuning-only, --pruning-only, --splits-only and --transfer-only rewrite different "
                            "parts; pass one of them")
        if tuning_only:
            runs = refresh_tuning(out).get("runs", {})
            typer.echo(f"{len(runs)} tune reports -> {out / 'README.md'}")
            return

        plan = Plan(**given(seeds=seeds and parse_list(seeds, int, "--seeds"), steps=steps,
                            finetune_steps=finetune_steps,
                            shots=shots and parse_list(shots, int, "--shots"),
                            networks=networks and parse_list(networks, str, "--networks"),
                            platforms=platforms and parse_list(platforms, str, "--platforms"),
                            hosts=hosts and parse_list(hosts, str, "--hosts"), pruning=pruning,
                            fractions=keep_fractions and parse_fractions(keep_fractions), prune_host=prune_host,
                            prune_methods=prune_methods and parse_list(prune_methods, str, "--prune-methods"),
                            collect_methods=collect_methods and (() if collect_methods == "none" else parse_list(
                                collect_methods, str, "--collect-methods")),
                            collect_shots=collect_shots and parse_list(collect_shots, int, "--collect-shots"),
                            splits=whole_splits and parse_list(whole_splits, str, "--splits"),
                            split_models=models and parse_list(models, str, "--models"),
                            transfer_models=transfer_models and parse_list(transfer_models, str,
                                                                           "--transfer-models")))
        if pruning_only:
            pruning = refresh_pruning(data, out, plan, log=typer.echo, jobs=jobs)
            for split, kept in pruning["best_keep_at_1pt"].items():
                typer.echo(f"{split:8s} smallest set within 1 point of full-data PCA: "
                           + ("none" if kept is None else f"{kept:.0%} kept"))
            typer.echo(f"report: {out / 'README.md'}")
            return
        if splits_only or transfer_only:
            if splits_only:
                refresh_splits(data, out, plan, log=typer.echo, jobs=jobs)
            else:
                named = {"host": hosts, "platform": platforms}
                kinds = tuple(by for by in TRANSFER_KINDS if named[by]) or TRANSFER_KINDS
                refresh_transfer(data, out, plan, kinds, log=typer.echo, jobs=jobs)
            summary = json.loads((out / "summary.json").read_text())
        else:
            summary = build(data, out, plan, log=typer.echo, jobs=jobs)
    for label in ("within-task", "by-task", "by-network/mean", "by-platform-k0/mean", "by-host-k0/mean"):
        margin = summary["xfer_minus_best_baseline"].get(label, {}).get("pca")
        if margin is not None:
            pca = summary["splits"][label]["xfer"]["pca"]
            typer.echo(f"{label:22s} xfer PCA {pca:.3f} ({margin:+.3f} vs the best baseline)")
    typer.echo(f"report: {out / 'README.md'}")


@app.command()
def datasheet(
    collection: pathlib.Path = typer.Argument(..., help="folder written by `xfer-jax collect`"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of markdown"),
) -> None:
    """Sizes per platform and network, measurement noise and throughput of a collection."""
    with user_errors():
        from xfer_jax.bridge.datasheet import collection_stats, markdown

        if not collection.is_dir():
            raise UserError(f"no collection at {collection}")
        stats = collection_stats(collection)
    typer.echo(json.dumps(stats, indent=1) if as_json else markdown(stats))


def main() -> None:
    app()
