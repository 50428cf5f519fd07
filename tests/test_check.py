"""OutputCheck on real TVM: a scheduled program must compute what its task's untuned code computes."""

from __future__ import annotations

import json
import math

import pytest
import tqdm

from helpers import write_matmul_onnx

tvm = pytest.importorskip("tvm")
from tvm import te  # noqa: E402
from tvm.s_tir import meta_schedule as ms  # noqa: E402

from xfer_jax.bridge import networks, platforms, records, tasks  # noqa: E402
from xfer_jax.bridge.check import OutputCheck  # noqa: E402
from xfer_jax.bridge.cost_model import TimedCostModel, measured_latency  # noqa: E402
from xfer_jax.bridge.measure import MeasureConfig, SyncRunner, make_builder, make_runner  # noqa: E402
from xfer_jax.bridge.tune import (AddCheckedToDatabase, CurveRecorder, best_records,  # noqa: E402
                                  records_to_compile)

pytestmark = pytest.mark.tvm


def matmul_task(scale: float = 1.0) -> tasks.Task:
    a = te.placeholder((32, 48), "float32", name="a")
    b = te.placeholder((48, 16), "float32", name="b")
    k = te.reduce_axis((0, 48), name="k")
    c = te.compute((32, 16), lambda i, j: te.sum(a[i, k] * b[k, j] * scale, axis=k), name="c")
    return tasks.Task("matmul", tvm.IRModule({"main": te.create_prim_func([a, b, c])}), 1, 2 * 32 * 48 * 16)


def test_a_rescheduled_program_passes_and_one_computing_something_else_fails(tmp_path):
    task = matmul_task()
    target = platforms.get_platform("auto").tvm_target()
    check = OutputCheck([task], target, tmp_path / "checks.jsonl")
    schedule = tvm.s_tir.Schedule(task.mod)
    block = schedule.get_sblock("c")
    i, j, k = schedule.get_loops(block)
    outer, inner = schedule.split(k, factors=[None, 8])
    schedule.reorder(i, outer, j, inner)
    schedule.parallel(i)
    assert check.matches(0, schedule.mod)
    assert not check.matches(0, matmul_task(scale=1.5).mod)  # an output half again too large
    assert not check.matches(0, matmul_task(scale=1.01).mod)  # 1% too large: still wrong
    assert check.rejected == 1 + 1


def test_verdicts_persist_so_a_resumed_check_judges_nothing_twice(tmp_path):
    task = matmul_task()
    target = platforms.get_platform("auto").tvm_target()
    path = tmp_path / "checks.jsonl"
    first = OutputCheck([task], target, path)
    assert not first.matches(0, matmul_task(scale=2.0).mod) and first.matches(0, task.mod)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["matches"] for line in lines] == [False, True]
    again = OutputCheck([task], target, path)
    assert not again.matches(0, matmul_task(scale=2.0).mod) and again.rejected == 1
    assert again.seconds == 0.0 and path.read_text().splitlines() == lines  # read back, not rebuilt or rewritten


def test_a_task_compiles_its_fastest_record_whose_output_matches(tmp_path):
    platform = platforms.get_platform("auto")
    target = platform.tvm_target()
    network = networks.onnx_network(write_matmul_onnx(tmp_path / "tiny.onnx"))
    tuned = tasks.extract_tasks(network, target)[:1]
    measure = MeasureConfig()
    database = ms.tune_tir(tuned[0].mod, target, work_dir=str(tmp_path / "work"), max_trials_global=8,
                           num_trials_per_iter=8, cost_model=ms.cost_model.RandomModel(),
                           builder=make_builder(measure), runner=make_runner(platform, measure))
    workload = database.commit_workload(tuned[0].mod)
    fastest, second = database.get_top_k(workload, 2)
    path = tmp_path / "checks.jsonl"
    check = OutputCheck(tuned, target, path)
    assert str(best_records(database, tuned, check)[0].trace) == str(fastest.trace)  # it matches
    # the fastest judged wrong (as TVM's wrong code for bert_tiny's attention was): the next one compiles
    judged = [json.loads(line) for line in path.read_text().splitlines()]
    records.append_lines(path, [records.dumps({"program": judged[0]["program"], "matches": False})])
    check = OutputCheck(tuned, target, path)
    assert str(best_records(database, tuned, check)[0].trace) == str(second.trace)
    assert str(best_records(database, tuned)[0].trace) == str(fastest.trace)  # unchecked: the fastest
    compiled = records_to_compile(database, tuned, [float("inf")], check)
    assert str(compiled.get_top_k(compiled.commit_workload(tuned[0].mod), 1)[0].trace) == str(second.trace)


def test_a_faster_program_with_a_wrong_output_never_counts_and_is_stored_as_a_failure(tmp_path):
    platform = platforms.get_platform("auto")
    target = platform.tvm_target()
    task = matmul_task()
    right = tvm.s_tir.Schedule(task.mod)
    right.parallel(right.get_loops(right.get_sblock("c"))[0])
    wrong = tvm.s_tir.Schedule(matmul_task(scale=2.0).mod)
    args_info = ms.arg_info.ArgInfo.from_prim_func(task.mod["main"])
    candidates = [ms.MeasureCandidate(s, args_info) for s in (wrong, right, right)]
    results = [ms.runner.RunnerResult([1e-4], None), ms.runner.RunnerResult([3e-4], None),
               ms.runner.RunnerResult(None, "timed out")]
    cost_model = TimedCostModel(ms.cost_model.RandomModel())
    database = ms.database.MemoryDatabase()
    recorder = CurveRecorder([1.0], [1.0], SyncRunner(make_runner(platform, MeasureConfig())),
                             tqdm.tqdm(disable=True), ["matmul"], tmp_path / "curve.jsonl", cost_model,
                             OutputCheck([task], target, tmp_path / "checks.jsonl"))
    scheduler = ms.task_scheduler.TaskScheduler.create("round-robin")  # unused by both callbacks
    AddCheckedToDatabase(recorder, database, [task], target).apply(scheduler, 0, candidates, [], results)
    assert recorder.wrong == {0} and cost_model.wrong_output == {0}  # the model learns it as a failure
    assert measured_latency(results, {0}).tolist() == [math.inf, 3e-4, math.inf]
    stored = sorted(records.latency_s(r.run_secs) for r in database.get_all_tuning_records())
    assert stored == [3e-4, math.inf, math.inf]  # the wrong one and the one that failed to run, as failures
    recorder.apply(scheduler, 0, candidates, [ms.builder.BuilderResult("", None)] * 3, results)
    assert recorder.best == [3e-4] and recorder.points[-1]["est_ms"] == pytest.approx(0.3)


def test_one_program_has_one_identity_though_it_leaves_free_variables():
    def program():  # built anew each time, as a replayed trace is: its free variable is a new object
        n = tvm.tirx.Var("n", "int32")
        return tvm.IRModule({"main": tvm.tirx.PrimFunc([], tvm.tirx.Evaluate(n + 1))})

    assert tasks.program_hash(program()) == tasks.program_hash(program())
