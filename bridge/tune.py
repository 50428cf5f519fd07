"""`xfer-jax tune`: tune a whole network with each cost model under the same search settings, budget and seed,
compile it, check its output against the untuned build, and measure end-to-end latency.

The tuning curve estimates the network latency after every measured batch as sum_t w_t * best latency(t)
(METRICS.md allows this); the final point of each model is the real compiled network, measured.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import pathlib
import time

import numpy as np
import tqdm
import tvm
from tvm import relax
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from xfer_jax.baselines import PackSumXGB
from xfer_jax.checkpoint import fingerprint as checkpoint_fingerprint
from xfer_jax.curves import seconds_to_baseline, trials_to_baseline
from xfer_jax.plots import tuning_curves
from xfer_jax.evaluate import checkpoint_split
from xfer_jax.errors import UserError
from xfer_jax.splits import trained_platforms

from . import records
from .check import OutputCheck
from .cost_model import PretrainedXGBCostModel, TimedCostModel, XferCostModel, measured_latency
from .measure import MeasureConfig, SyncRunner, build_and_run, check_tracker, make_builder, make_runner
from .networks import Network
from .platforms import Platform
from .tasks import Task, extract_tasks

# xgb: TVM's XGBModel from scratch; xgb-pretrained: pack-sum XGBoost fitted on the checkpoint's training programs
COST_MODELS = ("xfer", "xfer-frozen", "xfer-finetune", "xfer-residual", "xfer-explore", "xfer-booster", "xfer+xgb",
               "xfer-head+xgb", "xfer-frozen+xgb", "xgb", "xgb-pretrained", "random")
# the models that fit a booster on --data
FITTED_ON_DATA = ("xfer+xgb", "xfer-head+xgb", "xfer-frozen+xgb", "xgb-pretrained")


# xfer-explore: measurements without a better program before a task counts as stalled (two rounds of 8)
EXPLORE_AFTER = 16

# MetaSchedule's: "gradient" gives trials to the tasks of most expected gain, "round-robin" to each in turn
TASK_SCHEDULERS = ("gradient", "round-robin")


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    trials: int = 128  # measured programs per cost model, over all tasks
    trials_per_round: int = 8  # small rounds let a good cost model show early, and cover every task sooner
    top_k_per_task: int | None = None  # measure only the model's k best candidates of each task (one round each)
    rounds_per_task: float | None = None  # sets trials to this many rounds of every task (a budget per network size)
    population_size: int = 64  # EvolutionarySearch population (TVM's 512 spends minutes per round here)
    seed: int = 0
    frozen: bool = False  # xfer: no online updates
    adapt_every: int | None = None  # xfer: new measurements between online updates [default: XferCostModel's]
    prescreen: float | None = None  # xfer: featurize only this fraction of candidates, the best by trace tokens
    task_scheduler: str = "gradient"  # one of TASK_SCHEDULERS
    data: str = "data/v1/dataset"  # xgb-pretrained fits on the checkpoint's training programs of this dataset
    e2e_number: int = 5
    e2e_repeat: int = 5
    # cold caches: warm repeats favour kernels that lose inside a network (resnet18 at one round, two seeds: xfer's
    # and xgb's networks 11-28% faster tuned cold; bench/README.md, session 18)
    measure: MeasureConfig = dataclasses.field(default_factory=MeasureConfig.cold_cache)


@derived_object
class CurveRecorder(ms.measure_callback.PyMeasureCallback):
    """After every measured batch: trials so far, seconds when that batch finished measuring, estimated latency.

    Each point is appended to `log_path` as it lands ({"trials", "s", "est_ms", "model_s"}), so an interrupted
    tune keeps its curve; a resumed one continues from the last point and from the best latencies measured.

    `screen` (called by AddCheckedToDatabase, before the cost model sees the batch) checks the candidates that would
    become their task's best, fastest first, until one computes the untuned code's output; those that do not never
    count, and the cost model learns them as failures. Seconds spent checking are left out of "s", as the harness's
    time and not the model's."""

    def __init__(self, weights: list[float], best_s: list[float], runner: SyncRunner, bar: tqdm.tqdm,
                 names: list[str], log_path: pathlib.Path, cost_model, check: OutputCheck):
        super().__init__()
        self.weights, self.runner, self.bar, self.names = weights, runner, bar, names
        self.best = list(best_s)  # a task not tuned yet runs its unscheduled code in the compiled network
        self.log_path, self.cost_model, self.check = log_path, cost_model, check
        self.wrong: set[int] = set()  # this batch's candidates whose output differs
        self.points = read_curve(log_path)
        last = self.points[-1] if self.points else {"trials": 0, "s": 0.0, "model_s": 0.0}
        self.trials, self.offset_s, self.offset_model_s = last["trials"], last["s"], last["model_s"]
        self.start = time.time()
        self.check_s_at_start = self.check_s_before_batch = check.seconds

    def screen(self, task_id: int, measure_candidates, runner_results) -> None:
        self.check_s_before_batch = self.check.seconds  # this batch's checks run after its timing stamp
        latency = measured_latency(runner_results)
        self.wrong = set()
        for i in np.argsort(latency, kind="stable"):
            if latency[i] >= self.best[task_id] or self.check.matches(task_id, measure_candidates[i].sch.mod):
                break
            self.wrong.add(int(i))
        self.cost_model.wrong_output = self.wrong

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        self.best[task_id] = min([self.best[task_id], *measured_latency(runner_results, self.wrong)])
        self.trials += len(measure_candidates)
        finished = time.time()
        if self.runner.finished_at:  # batches whose builds all failed never reach the runner
            size, stamp = self.runner.finished_at[0]
            if size == sum(1 for b in builder_results if not b.error_msg):
                self.runner.finished_at.popleft()
                finished = stamp
        checking_s = self.check_s_before_batch - self.check_s_at_start
        estimate = self.estimate_ms()
        point = {"trials": self.trials, "s": round(self.offset_s + finished - self.start - checking_s, 2),
                 "est_ms": estimate, "model_s": round(self.offset_model_s + self.cost_model.seconds, 3)}
        self.points.append(point)
        records.append_lines(self.log_path, [records.dumps(point)])
        self.bar.update(len(measure_candidates))
        self.bar.set_postfix(task=self.names[task_id][:20], est_ms="-" if estimate is None else f"{estimate:.2f}")

    @property
    def curve(self) -> list[list]:
        """[trials, seconds, estimated ms] per point, as the report stores it."""
        return [[p["trials"], p["s"], p["est_ms"]] for p in self.points]

    def estimate_ms(self) -> float | None:
        if not all(np.isfinite(self.best)):
            return None
        return float(sum(w * b for w, b in zip(self.weights, self.best)) * 1e3)


@derived_object
class AddCheckedToDatabase(ms.measure_callback.PyMeasureCallback):
    """MetaSchedule's AddToDatabase after CurveRecorder.screen: a program whose output is wrong is stored as a failed
    run, so neither the search (which starts from the database's best) nor the compile takes it."""

    def __init__(self, recorder: CurveRecorder, database, tasks: list[Task], target):
        super().__init__()
        self.recorder, self.database, self.tasks, self.target = recorder, database, tasks, target

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        self.recorder.screen(task_id, measure_candidates, runner_results)
        workload = self.database.commit_workload(self.tasks[task_id].mod)
        for i, (candidate, result) in enumerate(zip(measure_candidates, runner_results)):
            failed = i in self.recorder.wrong or result.run_secs is None
            self.database.commit_tuning_record(ms.database.TuningRecord(
                candidate.sch.trace, workload, [records.FAILED_RUN_SECS] if failed else result.run_secs,
                self.target, candidate.args_info))


def read_curve(path: pathlib.Path) -> list[dict]:
    return [v for _, v in records.iter_json_lines(path) if isinstance(v, dict)] if path.exists() else []


# a task's records tried, fastest first, for one whose output matches its untuned code's
CHECKED_RECORDS = 32


def best_records(database, tasks: list[Task], check: OutputCheck | None = None) -> list:
    """Per task: its fastest tuning record in `database` (with `check`: the fastest of its first CHECKED_RECORDS
    whose output matches), or None before its first measurement (or when none matches)."""
    best = []
    for task_id, task in enumerate(tasks):
        if not database.has_workload(task.mod):
            best.append(None)
            continue
        top = database.get_top_k(database.commit_workload(task.mod), 1 if check is None else CHECKED_RECORDS)
        best.append(next((r for r in top if check is None or check.record_matches(task_id, r)), None))
    return best


def best_measured(database, tasks: list[Task], untuned_s: list[float], check: OutputCheck | None = None) -> list[float]:
    """Per task: the latency the compiled network gets, the faster of its best record and its untuned code."""
    return [untuned if record is None else min(untuned, records.latency_s(record.run_secs))
            for record, untuned in zip(best_records(database, tasks, check), untuned_s)]


def records_to_compile(database, tasks: list[Task], untuned_s: list[float], check: OutputCheck | None = None):
    """Each task's best record, except where its untuned code measured faster: that task compiles untuned, so the
    network gets what the tuning curve estimated."""
    chosen = ms.database.MemoryDatabase()
    for task, record, untuned in zip(tasks, best_records(database, tasks, check), untuned_s):
        if record is not None and records.latency_s(record.run_secs) <= untuned:
            chosen.commit_tuning_record(ms.database.TuningRecord(
                record.trace, chosen.commit_workload(task.mod), record.run_secs, record.target, record.args_info))
    return chosen


def untuned_candidate(task: Task) -> ms.MeasureCandidate:
    """A task's unscheduled code as a candidate: what compile_relax runs for a task without a record."""
    return ms.MeasureCandidate(tvm.s_tir.Schedule(task.mod), ms.arg_info.ArgInfo.from_prim_func(task.mod["main"]))


def untuned_latencies(tasks: list[Task], target, builder, runner, platform: Platform,
                      path: pathlib.Path) -> list[float]:
    """Seconds of each task's unscheduled code (what compile_relax uses for a task with no record); cached."""
    if path.exists():
        return records.read_json(path)
    outcomes = build_and_run(builder, runner, platform, target, [untuned_candidate(t) for t in tasks])
    latencies = [records.latency_s(secs, error) for secs, error in outcomes]
    records.write_whole(path, json.dumps(latencies))
    return latencies


def _make_cost_model(name: str, checkpoint: pathlib.Path | None, platform: Platform, config: TuneConfig,
                     job_dir: pathlib.Path):
    if name in COST_MODELS and name not in ("xgb", "random") and checkpoint is None:
        raise UserError(f"the {name} cost model needs --checkpoint")
    xfer = dict(prescreen=config.prescreen, reference_cache=job_dir / "reference_gflops.json",
                **({"adapt_every": config.adapt_every} if config.adapt_every else {}))
    if name in ("xfer", "xfer-frozen"):  # xfer-frozen beside xfer: what online adaptation adds, in one job
        return XferCostModel.from_checkpoint(checkpoint, platform, frozen=config.frozen or name == "xfer-frozen",
                                             **xfer)
    if name == "xfer-finetune":  # the whole model fine-tuned online (xfer fine-tunes its readout alone)
        return XferCostModel.from_checkpoint(checkpoint, platform, adapt="finetune", **xfer)
    if name == "xfer-residual":  # the model frozen, trees fitted to its errors on the measurements added
        return XferCostModel.from_checkpoint(checkpoint, platform, adapt="residual", **xfer)
    if name == "xfer-explore":  # xfer, with a booster on the measurements blended into the tasks that stall
        return XferCostModel.from_checkpoint(checkpoint, platform, explore_after=EXPLORE_AFTER, **xfer)
    if name == "xfer-booster":  # the model frozen, a booster fitted on the measurements blended in
        return XferCostModel.from_checkpoint(checkpoint, platform, adapt="booster", **xfer)
    if name == "xfer+xgb":  # xfer and xgb-pretrained's booster ranking together, an even blend, each adapting
        return XferCostModel.from_checkpoint(checkpoint, platform, adapt="finetune",
                                             partner=_pretrained(checkpoint, config, job_dir), **xfer)
    if name == "xfer-head+xgb":  # the same blend, only the readout of xfer fine-tuned
        return XferCostModel.from_checkpoint(checkpoint, platform, adapt="head",
                                             partner=_pretrained(checkpoint, config, job_dir), **xfer)
    if name == "xfer-frozen+xgb":  # xfer as trained and the booster, which alone adapts; the blend chosen online
        return XferCostModel.from_checkpoint(checkpoint, platform, adapt="none", partner_weight=None,
                                             partner=_pretrained(checkpoint, config, job_dir), **xfer)
    if name == "xgb-pretrained":
        return PretrainedXGBCostModel(_pretrained(checkpoint, config, job_dir))
    if name == "xgb":
        return TimedCostModel(ms.cost_model.XGBModel(num_tuning_cores=max(platform.num_threads, 1)))
    if name == "random":
        return TimedCostModel(ms.cost_model.RandomModel())
    raise UserError(f"unknown cost model {name!r}; choose from {', '.join(COST_MODELS)}")


def _pretrained(checkpoint: pathlib.Path, config: "TuneConfig", job_dir: pathlib.Path) -> PackSumXGB:
    """xgb-pretrained's booster for this job: fitted once, kept in its folder, read by every model that uses it."""
    key = hashlib.sha256(f"{pathlib.Path(checkpoint).resolve()}|{pathlib.Path(config.data).resolve()}".encode())
    cache = job_dir / "xgb-pretrained" / f"pretrained-{key.hexdigest()[:10]}.json"
    return pretrained_booster(checkpoint, config.data, cache)


def pretrained_booster(checkpoint: pathlib.Path, data_path: str, cache: pathlib.Path) -> PackSumXGB:
    """Pack-sum XGBoost fitted on the very programs `checkpoint` trained on (cached as XGBoost JSON)."""
    if cache.exists():
        return PackSumXGB.load(cache)
    data, split = checkpoint_split(checkpoint, data_path)
    fit = data.subset(split.train)
    tqdm.tqdm.write(f"xgb-pretrained: fitting on {int(np.isfinite(fit.latency).sum())} programs of {data_path}")
    booster = PackSumXGB().fit(fit.features, fit.mask, fit.label)
    cache.parent.mkdir(parents=True, exist_ok=True)
    records.write_whole(cache, booster.to_json())
    return booster


def _contexts(tasks: list[Task], target, config: TuneConfig) -> list[ms.TuneContext]:
    return [ms.TuneContext(mod=t.mod, target=target, space_generator="post-order-apply",
                           search_strategy=ms.search_strategy.EvolutionarySearch(
                               population_size=config.population_size,
                               init_min_unmeasured=config.population_size // 4),
                           task_name=t.name, rand_state=config.seed + i)
            for i, t in enumerate(tasks)]


def _run(executable, inputs: list[np.ndarray], config: TuneConfig):
    """(first output as numpy, mean ms, std ms) of a compiled network on the local device."""
    device = tvm.cpu()
    vm = relax.VirtualMachine(executable, device)
    args = [tvm.runtime.tensor(x, device) for x in inputs]
    output = vm["main"](*args)
    first = output if hasattr(output, "numpy") else output[0]  # a tensor, or a tuple of them
    timer = vm.time_evaluator("main", device, number=config.e2e_number, repeat=config.e2e_repeat)
    times = np.array(timer(*args).results) * 1e3
    return first.numpy(), float(times.mean()), float(times.std())


def tune_network(network: Network, platform: Platform, models: list[str], out: pathlib.Path,
                 config: TuneConfig, checkpoint: pathlib.Path | None = None, show_progress: bool = True) -> dict:
    """Tune `network` with each cost model in `models`; returns the report that `--json` writes."""
    platform.check_runnable()
    if platform.device_type != "cpu":
        raise UserError("end-to-end measurement is implemented for CPU platforms; use collect for GPUs")
    os.environ.update(platform.runtime_env())  # before the first kernel runs in this process
    target = platform.tvm_target()
    out = pathlib.Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    job = {"network": network.name, "inputs": network.input_spec(),
           "platform": [platform.name, platform.target, platform.num_threads],
           "checkpoint": str(pathlib.Path(checkpoint).resolve()) if checkpoint else None,
           "checkpoint_id": checkpoint_fingerprint(checkpoint) if checkpoint else None, "seed": config.seed,
           "trials_per_round": config.trials_per_round, "population_size": config.population_size,
           "frozen": config.frozen,
           **({"task_scheduler": config.task_scheduler} if config.task_scheduler != "gradient" else {}),
           **({"top_k_per_task": config.top_k_per_task} if config.top_k_per_task else {}),
           **({"prescreen": config.prescreen} if config.prescreen else {}),
           **({"adapt_every": config.adapt_every} if config.adapt_every else {}),
           **({"cpu_cache_flush": True} if config.measure.cpu_cache_flush else {})}
    # validate the tracker, the checkpoint and every model first: a typo must not claim the folder for a job
    if config.task_scheduler not in TASK_SCHEDULERS:
        raise UserError(f"unknown task scheduler {config.task_scheduler!r}; choose {', '.join(TASK_SCHEDULERS)}")
    if config.measure.rpc_tracker:
        check_tracker(config.measure.rpc_tracker, config.measure.rpc_key)
    cost_models = {name: _make_cost_model(name, checkpoint, platform, config, out) for name in models}
    # a rerun resumes only the same job; a key left out of `job` at its default compares as None
    records.write_once(out / "settings.json", job, compare_keys=(*job, "task_scheduler", "top_k_per_task",
                                                                    "prescreen", "adapt_every", "cpu_cache_flush"))
    for name in set(models) & set(FITTED_ON_DATA):  # its own setting: the job may gain or leave out such a model
        (out / name).mkdir(exist_ok=True)
        records.write_once(out / name / "settings.json", {"data": str(config.data)}, ("data",))
    tasks = extract_tasks(network, target)
    weights = [float(t.weight) for t in tasks]
    if config.top_k_per_task:  # one search per task whose k best-scored candidates alone are measured
        config = dataclasses.replace(config, trials=config.top_k_per_task * len(tasks),
                                     trials_per_round=config.top_k_per_task)
    elif config.rounds_per_task:
        rounds = max(1, math.ceil(config.rounds_per_task * len(tasks)))
        config = dataclasses.replace(config, trials=rounds * config.trials_per_round)
    elif config.trials < len(tasks) * config.trials_per_round:
        tqdm.tqdm.write(f"note: {config.trials} trials cover {config.trials // config.trials_per_round} of "
                        f"{len(tasks)} tasks once; the rest keep their untuned code "
                        f"(--trials {len(tasks) * config.trials_per_round} tunes each task once)")
    inputs = network.random_inputs(seed=config.seed)

    reference_path = out / "reference_output.npy"
    if reference_path.exists():
        try:
            reference = np.load(reference_path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            raise UserError(f"{reference_path} is damaged; delete it to run the untuned network again") from None
    else:
        untuned_code = ms.relax_integration.compile_relax(ms.database.MemoryDatabase(), network.mod, target, None)
        reference = _run(untuned_code, inputs, dataclasses.replace(config, e2e_number=1, e2e_repeat=1))[0]
        saved = io.BytesIO()
        np.save(saved, reference)
        records.write_whole(reference_path, saved.getvalue())

    report: dict = {"network": network.name, "platform": platform.name, "trials": config.trials,
                    "tasks": len(tasks), "settings": dataclasses.asdict(config),
                    "models": {}}
    xfer = next((m for m in cost_models.values() if isinstance(m, XferCostModel)), None)
    if xfer:  # which hardware the checkpoint saw: tuning on an unseen one is zero-shot transfer
        metadata = xfer.predictor.metadata
        report["checkpoint"] = {"path": str(checkpoint), "trained_on_platforms": trained_platforms(metadata),
                                "split": metadata.get("split"),
                                "trained_programs": metadata.get("split", {}).get("train_programs"),
                                "reference_gflops_here": xfer.platform.descriptor.reference_gflops}
    builder, runner = make_builder(config.measure), SyncRunner(make_runner(platform, config.measure))
    untuned = untuned_latencies(tasks, target, builder, runner, platform, out / "untuned_task_seconds.json")
    _contexts(tasks[:1], target, config)  # the first TuneContext imports tensor intrinsics (~40 s): not a model's time
    for name in models:
        work_dir = out / name
        work_dir.mkdir(exist_ok=True)
        database = ms.database.JSONDatabase(work_dir=str(work_dir))
        done = len(database.get_all_tuning_records())
        cost_model = cost_models[name]
        result_path = work_dir / "result.json"
        if done >= config.trials and result_path.exists():  # finished before: measured once is enough
            report["models"][name] = records.read_json(result_path)
            continue
        bar = tqdm.tqdm(total=config.trials, initial=min(done, config.trials), desc=f"{network.name}/{name}",
                        unit="trial", disable=not show_progress, dynamic_ncols=True)
        runner.finished_at.clear()
        check = OutputCheck(tasks, target, work_dir / records.OUTPUT_CHECKS_FILE)
        recorder = CurveRecorder(weights, best_measured(database, tasks, untuned, check), runner, bar,
                                 [t.name for t in tasks], work_dir / "curve.jsonl", cost_model, check)
        if done < config.trials:  # resume: only the remaining budget is measured
            ms.tune_tasks(tasks=_contexts(tasks, target, config), task_weights=weights, work_dir=str(work_dir),
                          max_trials_global=config.trials - done, num_trials_per_iter=config.trials_per_round,
                          max_trials_per_task=config.top_k_per_task, task_scheduler=config.task_scheduler,
                          builder=builder, runner=runner, database=database, cost_model=cost_model,
                          measure_callbacks=[AddCheckedToDatabase(recorder, database, tasks, target),
                                             ms.measure_callback.RemoveBuildArtifact(),
                                             ms.measure_callback.UpdateCostModel(), recorder])
        bar.close()
        last = recorder.points[-1] if recorder.points else {"s": 0.0, "model_s": 0.0}

        with target:
            compiled = records_to_compile(database, tasks, untuned, check)
            executable = ms.relax_integration.compile_relax(compiled, network.mod, target, None)
        library = work_dir / f"{network.name}.so"
        executable.export_library(str(library))
        output, mean_ms, std_ms = _run(executable, inputs, config)
        matches = bool(np.allclose(output, reference, rtol=1e-3, atol=1e-3 * max(1.0, np.abs(reference).max())))
        entry = {"final_latency_ms": mean_ms, "latency_spread_ms": std_ms,
                 "trials": len(database.get_all_tuning_records()), "wall_s": round(last["s"], 1),
                 "model_s": round(last["model_s"], 2), "curve": recorder.curve, "output_matches_untuned": matches,
                 "library": str(library), "database": str(work_dir),
                 "tasks_left_untuned": sum(not compiled.has_workload(t.mod) for t in tasks),
                 # programs whose output differed from their untuned code's: never counted, never compiled
                 "wrong_output_programs": check.rejected, "output_check_s": round(check.seconds, 1)}
        if isinstance(cost_model, (XferCostModel, PretrainedXGBCostModel)):  # featurized: each candidate once
            entry["candidates"] = {"scored": cost_model.scored, "featurized": cost_model.candidates.featurized}
        if isinstance(cost_model, XferCostModel):
            entry["online_updates"] = cost_model.updates
        if isinstance(cost_model, PretrainedXGBCostModel):
            entry["online_updates"] = {"boosted": cost_model.updates}
        report["models"][name] = entry
        records.write_whole(result_path, json.dumps(entry, indent=1))
        if not matches:  # kept and flagged: refusing would stop every rerun of the job at this model
            tqdm.tqdm.write(f"warning: {name}: the tuned {network.name}'s output disagrees with the untuned build's; "
                            f"its latency is not comparable (records in {work_dir})")
    for work_dir in sorted(out.iterdir()):  # what an earlier run of this job finished stays in its report
        if work_dir.name not in report["models"] and (work_dir / "result.json").exists():
            report["models"][work_dir.name] = records.read_json(work_dir / "result.json")
    report["trials_to_baseline"] = trials_to_baseline(report["models"])
    report["seconds_to_baseline"] = seconds_to_baseline(report["models"])
    records.write_whole(out / "tune.json", json.dumps(report, indent=1))
    tuning_curves(report, out / "tune.png")
    return report
