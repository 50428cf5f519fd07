"""`xfer-jax collect`: MetaSchedule search plus real measurement, recording every measured program.

Layout of one collection, `OUT/<platform>/<network>/`:
- platform.json        the platform and host (written once, checked on resume)
- runs.jsonl           the settings and versions of every invocation
- tasks.json           the network's weighted tasks (written once)
- database_*.json      standard MetaSchedule JSONDatabase files, appended batch by batch
- measurements.jsonl   one line per record: phase, repeats, error, machine load (see records.py)
- reference.jsonl      the load guard's reference-program timings
- exhausted.jsonl      tasks whose search ran out of new programs before reaching `programs_per_task`

Each task gets `programs_per_task` programs: first a share of uniform random samples of the design space
(phase "random"), then rounds of EvolutionarySearch guided by an XGBoost model trained on the task's
measurements so far (phase "search"). A task already measured for another network of the same platform is
not measured again. Everything is appended, so a killed run loses at most the batch in flight.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import pathlib
import platform as pyplatform
import time
from typing import Any

import tqdm
import tvm
import tvm_ffi
from tvm.s_tir import meta_schedule as ms

from xfer_jax.errors import UserError
from xfer_jax.hardware import HardwareDescriptor

from . import records
from .measure import LoadGuard, MeasureConfig, build_and_run, make_builder, make_runner
from .networks import Network
from .platforms import Platform
from .tasks import Task, extract_tasks, hash_hex, program_hash


class CollectError(UserError):
    """Collection cannot go on (wholesale failures, a mismatched output folder). One line for the user."""


_tuning_record_as_json = tvm_ffi.get_global_func("s_tir.meta_schedule.TuningRecordAsJSON")


def _plain(obj: Any) -> Any:
    if isinstance(obj, tvm.tirx.IndexMap):
        return tvm.ir.save_json(obj)
    if isinstance(obj, (tvm.tirx.IntImm, tvm.tirx.FloatImm)):
        return obj.value
    if isinstance(obj, tvm_ffi.Array):
        return [_plain(x) for x in obj]
    if isinstance(obj, tvm_ffi.Map):
        return {_plain(k): _plain(v) for k, v in obj.items()}
    return str(obj) if isinstance(obj, str) else obj


def _gave_up(failures_in_a_row: int, errors: collections.Counter, config: "CollectConfig") -> bool:
    """A task is skipped after two batches of failures in a row, or one batch of build timeouts: a task whose
    builds all exceed the timeout (bert's attention under load) would otherwise cost minutes per batch."""
    if None in errors:
        return False
    if errors and all("timed out" in e for e in errors):
        return failures_in_a_row >= config.batch_size
    return failures_in_a_row >= 2 * config.batch_size


def record_json(record: ms.database.TuningRecord) -> list:
    """The record as TVM's JSONDatabase stores it. TuningRecord.as_json cannot convert the IndexMap of a layout
    transform (bert's matmuls); like TVM's C++ writer we store it as its save_json string, which
    TuningRecord.from_json reads back."""
    return _plain(_tuning_record_as_json(record))


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    programs_per_task: int = 96
    batch_size: int = 16
    random_fraction: float = 0.5  # share of each task's programs sampled uniformly from the design space
    population_size: int = 64  # EvolutionarySearch population; small keeps search time below measure time
    genetic_iters: int = 2  # evolution rounds per batch (TVM's default 4 doubles the search time here)
    seed: int = 0
    max_tasks: int | None = None  # only the heaviest N tasks (tests, quick looks)
    load_threshold: float = 1.25  # reference slowdown that marks a batch as measured under load
    # tasks given up because every program failed get another try (after a fix, e.g. session 20's attention builds)
    retry_failed_tasks: bool = False
    measure: MeasureConfig = dataclasses.field(default_factory=MeasureConfig)


@dataclasses.dataclass
class CollectSummary:
    out_dir: pathlib.Path
    tasks: int
    tasks_skipped_shared: int
    tasks_given_up: int  # every program failed, or its search found no new programs
    measured: int
    failed: int
    remeasured_batches: int
    seconds: float
    search_s: float = 0.0  # proposing candidates, including cost-model updates
    measure_s: float = 0.0  # building and running candidates
    guard_s: float = 0.0  # reference-program checks
    repeats_skipped: int = 0  # proposals whose program the task had measured already, or proposed twice in a batch

    @property
    def programs_per_hour(self) -> float:
        return self.measured / max(self.seconds, 1e-9) * 3600


def _host_fingerprint(platform: Platform) -> dict:
    return {"descriptor": platform.descriptor.to_dict(), "target": platform.target,
            "num_threads": platform.num_threads}


MEASURED_FIELDS = ("mem_bw_gbs", "reference_gflops")  # timed, so they differ between boots and runs


def _same_host(a: dict, b: dict) -> bool:
    """Host fingerprints match up to what is measured; a field added to the descriptor later (missing from
    folders written before it) compares at its default."""
    def stable(h: dict) -> dict:
        descriptor = HardwareDescriptor.from_dict(h["descriptor"]).to_dict()
        return {**h, "descriptor": {k: v for k, v in descriptor.items() if k not in MEASURED_FIELDS}}
    return stable(a) == stable(b)


def _platform_payload(platform_dir: pathlib.Path, platform: Platform) -> dict:
    """Every network of a platform folder records one platform: the first one written. A different host
    (another CPU, other caches or clock) must not add to it, or one platform name would mix two machines."""
    host = _host_fingerprint(platform)
    written = sorted(platform_dir.glob("*/platform.json"))
    if written:
        existing = json.loads(written[0].read_text())
        if not _same_host(existing["host"], host):
            d = existing["host"]["descriptor"]
            base, _, label = platform.name.partition("@")
            apart = f"{base}@{label}-2" if label else f"{base}@host"  # same CPU name, other machine: a new label
            raise CollectError(
                f"{platform_dir} was measured on another host ({d['model']}, L2 {d['l2_kib']:g} KiB, "
                f"L3 {d['l3_kib']:g} KiB, {d['clock_ghz']} GHz, {d['vector_bits']}-bit); name this host's "
                f"config apart, e.g. --platform {apart}")
        return {"platform": existing["platform"], "host": existing["host"]}
    return {"platform": platform.to_dict(), "host": host}


def _write_platform_once(platform_dir: pathlib.Path, net_dir: pathlib.Path, platform: Platform) -> None:
    payload = _platform_payload(platform_dir, platform)
    if not (net_dir / "platform.json").exists():
        records.write_whole(net_dir / "platform.json", json.dumps(payload, indent=1))


class TaskStore:
    """Appends one task's records to its network folder and reads back everything measured for it."""

    def __init__(self, net_dir: pathlib.Path, platform_dir: pathlib.Path):
        self.net_dir, self.platform_dir = net_dir, platform_dir

    def workload_index(self, task: Task) -> int:
        path = self.net_dir / records.WORKLOAD_FILE
        for number, value in records.iter_json_lines(path):
            if value is not None and _workload_hash(value) == task.workload_hash:
                return number
        workload = ms.database.Workload(task.mod)
        records.append_lines(path, [records.dumps(workload.as_json())])
        return records.count_lines(path) - 1

    def append(self, workload_idx: int, lines: list[tuple[ms.database.TuningRecord, dict]]) -> None:
        record_path = self.net_dir / records.RECORD_FILE
        first = records.count_lines(record_path)
        records.append_lines(record_path, [records.dumps([workload_idx, record_json(r)]) for r, _ in lines])
        # records first, then their provenance: a kill in between leaves records with no phase, never the reverse
        records.append_lines(self.net_dir / records.MEASUREMENTS_FILE,
                             [records.dumps({"record": first + i, **meta}) for i, (_, meta) in enumerate(lines)])

    def measured(self) -> dict[str, list[dict]]:
        """task hash -> its provenance lines, from every network folder of the platform (read once)."""
        found = collections.defaultdict(list)
        for net_dir in self._network_dirs():  # sealed folders hold only gzip segments: list folders, not files
            for _, v in records.iter_json_lines(net_dir / records.MEASUREMENTS_FILE):
                if v is not None and "task" in v:
                    found[v["task"]].append(v)
        return found

    def exhausted(self) -> set[str]:
        """Tasks whose search ran out of new programs before (for any network of the platform)."""
        return {v["task"] for net_dir in self._network_dirs()
                for _, v in records.iter_json_lines(net_dir / records.EXHAUSTED_FILE) if v is not None and "task" in v}

    def mark_exhausted(self, task_hash: str, programs: int) -> None:
        records.append_lines(self.net_dir / records.EXHAUSTED_FILE, [records.dumps(
            {"task": task_hash, "programs": programs, "t": round(time.time(), 1)})])

    def _network_dirs(self) -> list[pathlib.Path]:
        return sorted(p.parent for p in self.platform_dir.glob("*/platform.json"))

    def load_records(self, task: Task, workload: ms.database.Workload) -> list[ms.database.TuningRecord]:
        """Measured records of this task (from any network folder of the platform), rebound to `workload`."""
        loaded = []
        for net_dir in self._network_dirs():
            indices = {n for n, v in records.iter_json_lines(net_dir / records.WORKLOAD_FILE)
                       if v is not None and _workload_hash(v) == task.workload_hash}
            for _, line in records.iter_json_lines(net_dir / records.RECORD_FILE):
                if line is not None and line[0] in indices:
                    try:
                        loaded.append(ms.database.TuningRecord.from_json(line[1], workload))
                    except Exception:  # an unparsable trace is skipped like a corrupt line
                        continue
        return loaded


def _workload_hash(workload_json: list) -> str:
    return hash_hex(workload_json[0])


def _diagnose(errors: collections.Counter) -> str:
    error, count = errors.most_common(1)[0]
    hint = "check the platform with `xfer-jax platforms`"
    if "Illegal instruction" in error or ("run:" in error and "terminated" in error):
        hint = "the host CPU probably lacks the platform's ISA; pick a platform `xfer-jax platforms` marks runnable"
    elif "timeout" in error.lower() or "timed out" in error.lower():
        hint = "every run timed out; raise --run-timeout or check that the machine is idle"
    elif error.startswith("build:") and ("terminated" in error or "ModuleNotFound" in error):
        hint = "builder workers cannot import xfer_jax; install the package (pip install -e .) in this Python"
    return f"{count} measurements in a row failed, e.g. '{error[:160]}': {hint}"


@dataclasses.dataclass
class _Session:
    """What every batch of one collect() call shares: where and how it measures, and the running totals."""

    platform: Platform
    target: Any
    config: CollectConfig
    store: TaskStore
    builder: Any
    runner: Any
    guard: LoadGuard
    summary: CollectSummary
    bar: Any
    recent_errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    last_ratio: float = 1.0

    def log_reference(self, ratio: float, note: str) -> None:
        records.append_lines(self.store.net_dir / "reference.jsonl", [records.dumps(
            {"t": round(time.time(), 1), "ratio": round(ratio, 4), "baseline_s": self.guard.baseline_s,
             "note": note})])

    def gave_up(self, failures_in_a_row: int) -> bool:
        return _gave_up(failures_in_a_row, self.recent_errors, self.config)


@dataclasses.dataclass
class _TaskState:
    """One task in progress: its in-memory database (prior and new records), its XGBoost guide, its counters."""

    task: Task
    workload: Any
    workload_index: int
    database: Any
    cost_model: Any
    written: int = 0
    failures_in_a_row: int = 0
    no_design_space: bool = False  # TVM could not generate its search space
    # structural hashes of the programs measured for the task: a tiny task's design space can hold one program,
    # which uniform sampling proposes again and again (383 of data/v1's 1,598 groups, 14% of its measurements),
    # and the evolutionary search proposes measured programs again too
    measured_programs: set = dataclasses.field(default_factory=set)

    def new_programs(self, proposed: list) -> list:
        """The candidates whose program the task has not measured, each once; they count as measured from now."""
        fresh = []
        for candidate in proposed:
            program = program_hash(candidate.sch.mod)
            if program not in self.measured_programs:
                self.measured_programs.add(program)
                fresh.append(candidate)
        return fresh


def collect(platform: Platform, network: Network, out: pathlib.Path, config: CollectConfig,
            show_progress: bool = True) -> CollectSummary:
    """Measure `config.programs_per_task` programs for every task of `network` on `platform`."""
    platform.check_runnable()
    target = platform.tvm_target()
    net_dir = network_folder(out, platform, network)
    platform_dir = net_dir.parent
    _platform_payload(platform_dir, platform)  # refuses another host's folder before the slow task extraction
    tasks = extract_tasks(network, target)
    if config.max_tasks:
        tasks = tasks[: config.max_tasks]
    net_dir.mkdir(parents=True, exist_ok=True)
    records.write_once(
        net_dir / "tasks.json",
        {"network": network.name, "inputs": network.input_spec(),
         "tasks": [{"hash": t.workload_hash, "name": t.name, "weight": t.weight, "flops": t.flops} for t in tasks]},
        compare_keys=("network", "inputs"))
    _write_platform_once(platform_dir, net_dir, platform)  # after tasks.json: a folder with it is complete

    store = TaskStore(net_dir, platform_dir)
    measured_before = store.measured()
    summary = CollectSummary(net_dir, len(tasks), 0, 0, 0, 0, 0, 0.0)
    pending = _pending_tasks(tasks, measured_before, store.exhausted(), config, summary)
    if not pending:  # nothing to measure: leave a finished collection as it is, sealed
        if not config.max_tasks:
            seal_network(net_dir)  # a run killed between its last batch and sealing
        return summary
    records.append_lines(net_dir / "runs.jsonl", [records.dumps({  # one line per invocation: its settings
        "t": round(time.time(), 1), "settings": dataclasses.asdict(config),
        "versions": {"tvm": tvm.__version__, "python": pyplatform.python_version()}})])
    builder, runner = make_builder(config.measure), make_runner(platform, config.measure)
    bar = tqdm.tqdm(total=sum(config.programs_per_task - len(measured_before[t.workload_hash]) for t in pending),
                    desc=f"{platform.name}/{network.name}", unit="prog", disable=not show_progress,
                    dynamic_ncols=True)
    session = _Session(platform, target, config, store, builder, runner,
                       LoadGuard(platform, target, builder, runner, threshold=config.load_threshold), summary, bar)
    start = time.time()
    session.last_ratio = session.guard.ratio()
    session.log_reference(session.last_ratio, "start")
    failed_tasks_in_a_row = 0
    for task in pending:
        done = measured_before[task.workload_hash]
        state = _collect_task(session, task, done)
        bar.total -= max(config.programs_per_task - len(done) - state.written, 0)  # what it ended without
        bar.refresh()
        if state.no_design_space:
            bar.write(f"{task.name}: TVM cannot generate its design space for {platform.name}; skipping the task")
            store.mark_exhausted(task.workload_hash, len(done) + state.written)
            summary.tasks_given_up += 1
        elif session.gave_up(state.failures_in_a_row):
            summary.tasks_given_up += 1
            failed_tasks_in_a_row += 1
            bar.write(f"{task.name}: {state.failures_in_a_row} programs in a row failed; skipping the task")
            if failed_tasks_in_a_row >= 3 or len(tasks) == 1:
                raise CollectError(_diagnose(session.recent_errors))
        else:
            failed_tasks_in_a_row = 0
            measured_now = len(done) + state.written
            if measured_now < config.programs_per_task:  # the search came up short: a rerun would too
                store.mark_exhausted(task.workload_hash, measured_now)
                summary.tasks_given_up += 1
    bar.close()
    session.log_reference(session.guard.ratio(), "end")
    if not config.max_tasks:
        seal_network(net_dir)
    summary.seconds = time.time() - start
    return summary


def _pending_tasks(tasks: list[Task], measured_before: dict, exhausted: set[str], config: CollectConfig,
                   summary: CollectSummary) -> list[Task]:
    """The tasks still short of programs; the others are counted in `summary` as shared or given up."""
    pending = []
    for task in tasks:
        done = measured_before[task.workload_hash]
        errors = collections.Counter(d.get("error") for d in done)
        if len(done) >= config.programs_per_task:
            summary.tasks_skipped_shared += 1  # measured already, for this network or another one
        elif task.workload_hash in exhausted or (not config.retry_failed_tasks and _gave_up(len(done), errors, config)):
            summary.tasks_given_up += 1  # its search ran out, or everything measured for it failed
        else:
            pending.append(task)
    return pending


def _collect_task(session: _Session, task: Task, done: list[dict]) -> _TaskState:
    """Bring one task up to `programs_per_task`: the random share first, then the cost-model-guided search.

    Collection drives the search strategy by hand rather than through `ms.tune_tasks`, because a dataset needs
    what tuning does not: a fixed number of programs per task (tune_tasks spreads trials by its task scheduler),
    a random phase beside the search, every batch re-measured while the machine is loaded, provenance for every
    record, and a resume that reuses the programs measured for another network of the same platform."""
    config, store = session.config, session.store
    database = ms.database.MemoryDatabase()
    workload = database.commit_workload(task.mod)
    state = _TaskState(task, workload, store.workload_index(task), database,
                       ms.cost_model.XGBModel(num_warmup_samples=config.batch_size, verbose_eval=0,
                                              num_tuning_cores=1))
    prior = store.load_records(task, workload)
    for record in prior:
        database.commit_tuning_record(record)
    state.new_programs([record.as_measure_candidate() for record in prior])
    for phase in ("random", "search"):
        budget = phase_budget(phase, config, done, state.written)
        if budget <= 0:
            continue
        # the seed depends on what is already measured, so a resumed run proposes new programs
        seed = int(hashlib.sha1(f"{config.seed}/{task.workload_hash}/{phase}/{len(done)}".encode())
                   .hexdigest()[:7], 16)
        strategy = (ms.search_strategy.ReplayTrace() if phase == "random" else
                    ms.search_strategy.EvolutionarySearch(population_size=config.population_size,
                                                          init_min_unmeasured=config.population_size // 4,
                                                          genetic_num_iters=config.genetic_iters))
        context, spaces = _context_and_spaces(task, session.target, strategy, seed)
        if context is None:
            state.no_design_space = True
            break
        if phase == "search" and prior:
            _update_cost_model(state.cost_model, context, prior)
        context.search_strategy.pre_tuning(budget, config.batch_size, spaces, database,
                                           state.cost_model if phase == "search" else None)
        _run_phase(session, state, context, phase, budget)
        context.search_strategy.post_tuning()
        if session.gave_up(state.failures_in_a_row):
            break
        if phase == "random":
            prior = store.load_records(task, workload)
    return state


def phase_budget(phase: str, config: CollectConfig, done: list[dict], written: int) -> int:
    """Programs the phase may propose (random: samples) or measure (search), given the task's provenance lines
    before this run (`done`) and the programs this run measured so far. The search measures whatever the random
    phase left, including the samples it skipped as repeats; once a search began, a resumed run samples no more."""
    left = config.programs_per_task - len(done) - written
    if phase == "search":
        return left
    if any(d.get("phase") == "search" for d in done):
        return 0
    random_done = sum(1 for d in done if d.get("phase") == "random")
    return min(round(config.programs_per_task * config.random_fraction) - random_done, left)


def _context_and_spaces(task: Task, target, strategy, seed: int, tries: int = 3):
    """(TuneContext, design spaces), or (None, None) when TVM cannot generate the task's design space.
    TVM 0.27's CUDA schedule rules fail on some tasks with an IndexError, for some random seeds (a conv2d) or
    for all (bert's attention): another seed is tried before the task is given up."""
    for attempt in range(tries):
        context = ms.TuneContext(task.mod, target=target, space_generator="post-order-apply",
                                 search_strategy=strategy, task_name=task.name, rand_state=seed + attempt)
        try:
            return context, context.space_generator.generate_design_space(task.mod)
        except Exception:  # TVM raises several types here (IndexError, TVMError, ValueError)
            continue
    return None, None


DRY_BATCHES = 3  # batches in a row with no program new to the task: the phase has run dry


def _run_phase(session: _Session, state: _TaskState, context, phase: str, budget: int) -> None:
    """Search rounds until the budget is spent, the search runs dry, or the task fails wholesale. Only programs
    new to the task are measured; the random phase's budget counts samples, the search's new programs."""
    summary, round_index, remaining, dry_batches = session.summary, 0, budget, 0
    while remaining > 0 and dry_batches < DRY_BATCHES:
        tick = time.time()
        proposed = context.search_strategy.generate_measure_candidates()
        if not proposed:
            break  # the design space (or the search) is exhausted
        proposed = proposed[:remaining]
        candidates = state.new_programs(proposed)
        summary.repeats_skipped += len(proposed) - len(candidates)
        summary.search_s += time.time() - tick
        results = []
        if candidates:
            outcomes, attempts = _measure_batch(session, candidates)
            results = _record_batch(session, state, candidates, outcomes, attempts, phase, round_index)
            if session.gave_up(state.failures_in_a_row):
                break  # this task fails wholesale; collect() decides whether everything does
            if phase == "search":
                tick = time.time()
                state.cost_model.update(context, candidates, results)
                summary.search_s += time.time() - tick
        context.search_strategy.notify_runner_results(candidates, results)
        remaining -= len(proposed) if phase == "random" else len(candidates)
        dry_batches = 0 if candidates else dry_batches + 1
        round_index += 1
        session.bar.update(len(candidates))
        session.bar.set_postfix(task=state.task.name[:20], phase=phase, failed=summary.failed,
                                repeats=summary.repeats_skipped, load=f"{session.last_ratio:.2f}")


def _measure_batch(session: _Session, candidates: list) -> tuple[list, int]:
    """(per candidate (run seconds or None, error), attempts): a batch measured while the machine was loaded
    is measured again after waiting, up to three times in all."""
    summary, config = session.summary, session.config

    def build_and_run_timed() -> list:
        tick = time.time()
        outcomes = build_and_run(session.builder, session.runner, session.platform, session.target, candidates)
        summary.measure_s += time.time() - tick
        return outcomes

    outcomes, attempts = build_and_run_timed(), 1
    tick = time.time()
    session.last_ratio = session.guard.ratio()
    summary.guard_s += time.time() - tick
    while session.last_ratio > config.load_threshold and attempts < 3:
        session.log_reference(session.last_ratio, "loaded: waiting, then measuring the batch again")
        session.last_ratio = session.guard.wait_until_idle()
        outcomes, attempts = build_and_run_timed(), attempts + 1
        session.last_ratio = session.guard.ratio()
        summary.remeasured_batches += 1
    if attempts > 1:
        session.log_reference(session.last_ratio, f"batch measured {attempts} times")
    return outcomes, attempts


def _record_batch(session: _Session, state: _TaskState, candidates: list, outcomes: list, attempts: int,
                  phase: str, round_index: int) -> list:
    """Append the batch's records and provenance; returns the runner results for the search to learn from."""
    results, lines = [], []
    for candidate, (secs, error) in zip(candidates, outcomes):
        run_secs = secs if secs is not None else [records.FAILED_RUN_SECS]
        results.append(ms.runner.RunnerResult(run_secs=secs, error_msg=error))
        record = ms.database.TuningRecord(candidate.sch.trace, state.workload, run_secs, session.target,
                                          candidate.args_info)
        state.database.commit_tuning_record(record)
        lines.append((record, {"task": state.task.workload_hash, "phase": phase, "round": round_index,
                               "costs_s": secs, "error": error, "load": round(session.last_ratio, 4),
                               "attempts": attempts, "t": round(time.time(), 1)}))
        if error:
            session.recent_errors[error] += 1
            state.failures_in_a_row += 1
        else:
            state.failures_in_a_row = 0
            session.recent_errors.clear()
    session.store.append(state.workload_index, lines)
    state.written += len(lines)
    failed = sum(1 for secs, _ in outcomes if secs is None)
    session.summary.measured += len(candidates) - failed
    session.summary.failed += failed
    return results


def network_folder(out: pathlib.Path, platform: Platform, network: Network) -> pathlib.Path:
    return (out / platform.name).absolute() / network.name


def seal_network(net_dir: pathlib.Path) -> None:
    """A complete or paused network is compressed; appends after this start new plain files."""
    for name in (records.WORKLOAD_FILE, records.RECORD_FILE, records.MEASUREMENTS_FILE, "reference.jsonl",
                 "runs.jsonl", records.EXHAUSTED_FILE):
        records.seal(net_dir / name)


def _update_cost_model(cost_model, ctx, prior: list[ms.database.TuningRecord]) -> None:
    candidates = [r.as_measure_candidate() for r in prior]
    results = [ms.runner.RunnerResult(run_secs=[float(s) for s in r.run_secs], error_msg=None) for r in prior]
    cost_model.update(ctx, candidates, results)
