"""Collection and featurisation on real TVM, kept small: one 64x64 matmul task on the host's best config."""

from __future__ import annotations

import dataclasses
import gzip
import math
import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from xfer_jax import dataset as ds
from xfer_jax.errors import UserError

from helpers import CLI, assert_one_line, run_cli, write_matmul_onnx, write_relu_onnx

tvm = pytest.importorskip("tvm")
from tvm.s_tir import meta_schedule as ms  # noqa: E402

from xfer_jax.bridge import collect, featurize, networks, platforms, records  # noqa: E402
from xfer_jax.bridge.check import program_key  # noqa: E402
from xfer_jax.bridge.tasks import extract_tasks, program_hash  # noqa: E402

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("collect")
    net = networks.onnx_network(write_matmul_onnx(root / "tiny.onnx"))
    config = collect.CollectConfig(programs_per_task=16, batch_size=8)
    summary = collect.collect(platforms.get_platform("auto"), net, root / "raw", config, show_progress=False)
    return root, summary


def _net_dir(root):
    return next((root / "raw").glob("*/tiny"))


def _programs(tuning_records) -> set:
    return {program_hash(r.as_measure_candidate().sch.mod) for r in tuning_records}


def _records_of(net_dir) -> list:
    workloads = {n: ms.database.Workload.from_json(v) for n, v in records.iter_json_lines(net_dir / records.WORKLOAD_FILE)}
    return [ms.database.TuningRecord.from_json(v[1], workloads[v[0]])
            for _, v in records.iter_json_lines(net_dir / records.RECORD_FILE)]


def test_collect_records_every_program_in_standard_databases(collection):
    root, summary = collection
    assert summary.measured + summary.failed == 16
    net_dir = _net_dir(root)
    assert not (net_dir / records.RECORD_FILE).exists()
    export = root / "export"
    export.mkdir()
    for name in (records.WORKLOAD_FILE, records.RECORD_FILE):
        lines = [json.dumps(v, separators=(",", ":")) for _, v in records.iter_json_lines(net_dir / name)]
        (export / name).write_text("\n".join(lines) + "\n")
    database = ms.database.JSONDatabase(work_dir=str(export))
    assert len(database.get_all_tuning_records()) == 16
    assert len(_programs(database.get_all_tuning_records())) == 16  # no program measured twice
    provenance = [v for _, v in records.iter_json_lines(net_dir / records.MEASUREMENTS_FILE)]
    assert [p["record"] for p in provenance] == list(range(16))
    assert {p["phase"] for p in provenance} == {"random", "search"}
    assert all(p["costs_s"] is None or len(p["costs_s"]) == 3 for p in provenance)
    assert all("load" in p for p in provenance)


def test_featurize_round_trips_shapes_masks_and_labels(collection, tmp_path):
    root, summary = collection
    result = featurize.featurize(root / "raw", tmp_path / "data", show_progress=False)
    assert result.programs == summary.measured
    data = ds.load(tmp_path / "data")
    assert data.features.shape[2] == ds.NUM_STORE_FEATURES
    assert data.workload.shape == (16, ds.NUM_WORKLOAD_FEATURES)
    assert np.all(data.mask.sum(1) >= 1)
    assert np.all(data.features[~data.mask] == 0)
    ok = np.isfinite(data.latency)
    assert np.isclose(data.label[ok].max(), 1.0) and np.all(data.label[ok] > 0)
    assert set(data.phase) == {0, 1}
    assert data.networks == {"tiny": {data.platform_names[0]: {data.tasks[0]["hash"]: 1}}}
    baseline = min(v["baseline_s"] for _, v in records.iter_json_lines(_net_dir(root) / "reference.jsonl"))
    assert result.references_recorded == 1  # the collection's reference timing is a hardware feature
    assert data.platforms[0]["descriptor"]["reference_gflops"] == pytest.approx(2 * 256**3 / baseline / 1e9, 1e-3)
    again = featurize.featurize(root / "raw", tmp_path / "data", show_progress=False)
    assert again.programs == 0 and again.references_recorded == 0  # cached: nothing new to featurize
    first = ds.load(tmp_path / "data")
    shutil.rmtree(tmp_path / "data")
    featurize.featurize(root / "raw", tmp_path / "data", show_progress=False)
    np.testing.assert_array_equal(ds.load(tmp_path / "data").features, first.features)  # deterministic


def test_featurize_writes_the_features_and_trace_tokens_the_cost_model_sees_and_adds_missing_ones(collection, tmp_path):
    from xfer_jax.bridge.cost_model import CandidateFeatures

    root, _ = collection
    featurize.featurize(root / "raw", tmp_path / "data", show_progress=False)
    data = ds.load(tmp_path / "data")
    assert data.has_traces and (data.trace_ids > 0).sum(1).min() >= 3
    net_dir = _net_dir(root)
    workloads = [ms.database.Workload.from_json(v) for _, v in records.iter_json_lines(net_dir / records.WORKLOAD_FILE)]
    lines = [v for _, v in records.iter_json_lines(net_dir / records.RECORD_FILE)][:6]
    tuning = [ms.database.TuningRecord.from_json(line[1], workloads[line[0]]) for line in lines]
    context = ms.TuneContext(workloads[lines[0][0]].mod, target=tuning[0].target)
    seen = CandidateFeatures(data.features.shape[1], trace_tokens=data.trace_ids.shape[1])
    candidates = [record.as_measure_candidate() for record in tuning]
    workload, features, mask, ids, values = seen(context, candidates + candidates[:2])  # as tuning hands them over
    assert workload == data.tasks[0]["hash"]
    np.testing.assert_array_equal(ids[:6], data.trace_ids[:6])
    np.testing.assert_allclose(values[:6], data.trace_values[:6], rtol=1e-3)  # stored as float16
    np.testing.assert_array_equal(mask[:6], data.mask[:6])
    np.testing.assert_allclose(features[:6], data.features[:6], rtol=1e-3)
    np.testing.assert_array_equal(features[6:], features[:2])
    assert seen.featurized == 6  # a candidate scored again is not featurized again
    trace_file = next((tmp_path / "data").glob("trace-*.npz"))
    trace_file.unlink()
    assert not ds.load(tmp_path / "data").has_traces  # all or nothing
    assert featurize.featurize(root / "raw", tmp_path / "data", show_progress=False).trace_files_written == 1
    np.testing.assert_array_equal(ds.load(tmp_path / "data").trace_ids, data.trace_ids)


def test_featurize_skips_corrupt_lines_and_nonfinite_latencies(collection, tmp_path):
    root, summary = collection
    raw = tmp_path / "raw"
    shutil.copytree(root / "raw", raw)
    net_dir = next(raw.glob("*/tiny"))
    good = [v for _, v in records.iter_json_lines(net_dir / records.RECORD_FILE)][0]
    bad_latencies = [json.dumps([good[0], [good[1][0], secs, good[1][2], good[1][3]]])
                     for secs in ([float("nan")], [], [-1.0], [0.0])]
    with open(net_dir / records.RECORD_FILE, "w") as f:
        f.write("{this is not json\n" + "\n".join(bad_latencies) + "\n" + json.dumps(good)[:50])  # truncated last
    result = featurize.featurize(raw, tmp_path / "data", show_progress=False)
    assert result.skipped_corrupt == 1  # the truncated last line may still be in flight: left for later
    assert result.skipped_nonfinite == 4  # NaN, no repeats, a negative and a zero latency: never "measured"
    assert result.programs == summary.measured
    records.append_lines(net_dir / records.RECORD_FILE, [json.dumps(good)])  # closes off the truncated line
    later = featurize.featurize(raw, tmp_path / "data", show_progress=False)
    assert later.skipped_corrupt == 1 and later.programs == 1
    assert len(ds.load(tmp_path / "data")) == summary.measured + summary.failed + 1


def test_featurize_keeps_programs_judged_to_compute_a_wrong_output_as_failures(collection, tmp_path):
    root, summary = collection
    raw = tmp_path / "raw"
    shutil.copytree(root / "raw", raw)
    net_dir = next(raw.glob("*/tiny"))
    task_name = json.loads((net_dir / "tasks.json").read_text())["tasks"][0]["name"]
    measured = [r for r in _records_of(net_dir) if records.latency_s([float(s) for s in r.run_secs]) < math.inf]
    verdicts = [{"program": program_key(task_name, r.as_measure_candidate().sch.mod), "matches": matches}
                for r, matches in zip(measured[:3], (False, False, True))]
    records.append_lines(net_dir / records.OUTPUT_CHECKS_FILE, [json.dumps(v) for v in verdicts])
    result = featurize.featurize(raw, tmp_path / "data", show_progress=False)
    assert result.wrong_output == 2 and result.programs == summary.measured - 2
    data = ds.load(tmp_path / "data")
    assert int(np.isinf(data.latency).sum()) == summary.failed + 2 and len(data) == 16


def test_featurize_skips_a_damaged_segment_or_platform_file_and_featurizes_the_rest(collection, tmp_path):
    root, summary = collection
    raw = tmp_path / "raw"
    shutil.copytree(root / "raw", raw)
    intact = next(raw.glob("*/tiny")).parent
    copies = {damage: raw / f"{intact.name}-{damage}" for damage in ("truncated", "not-gzip", "platform")}
    for copy in copies.values():
        shutil.copytree(intact, copy)
    truncated = records.segments(copies["truncated"] / "tiny" / records.RECORD_FILE)[0]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    not_gzip = records.segments(copies["not-gzip"] / "tiny" / records.RECORD_FILE)[0]
    not_gzip.write_text("these are not the records you are looking for\n")
    (copies["platform"] / "tiny" / "platform.json").write_text("{broken")
    result = featurize.featurize(raw, tmp_path / "data", show_progress=False)
    assert set(result.damaged_files) == {str(truncated), str(not_gzip),
                                         str(copies["platform"] / "tiny" / "platform.json")}
    measured = summary.measured
    assert measured <= result.programs < 2 * measured  # the intact copy whole, the truncated one in part
    with pytest.raises(records.DamagedRecordsError, match="move it away"):  # the collector must not go on blind
        records.count_lines(not_gzip.parent / records.RECORD_FILE)


def test_rerunning_a_finished_collection_writes_nothing(collection):
    root, _ = collection
    platform_dir = _net_dir(root).parent
    before = {p: p.read_bytes() for p in platform_dir.rglob("*") if p.is_file()}
    net = networks.onnx_network(root / "tiny.onnx")
    config = collect.CollectConfig(programs_per_task=16, batch_size=8)
    summary = collect.collect(platforms.get_platform("auto"), net, root / "raw", config, show_progress=False)
    assert (summary.measured, summary.tasks_skipped_shared) == (0, 1)
    assert {p: p.read_bytes() for p in platform_dir.rglob("*") if p.is_file()} == before


def test_a_task_whose_search_runs_out_is_not_reopened_by_a_rerun(tmp_path):
    net = networks.onnx_network(write_relu_onnx(tmp_path / "relu.onnx"))
    config = collect.CollectConfig(programs_per_task=48, batch_size=8)
    first = collect.collect(platforms.get_platform("auto"), net, tmp_path / "raw", config, show_progress=False)
    assert 0 < first.measured + first.failed < 48 and first.tasks_given_up == 1
    # relu's design space holds a few programs at most: sampled again and again, each measured once
    measured = _records_of(next((tmp_path / "raw").glob("*/relu")))
    assert len(_programs(measured)) == len(measured) == first.measured + first.failed and first.repeats_skipped >= 8
    before = {p: p.read_bytes() for p in (tmp_path / "raw").rglob("*") if p.is_file()}
    again = collect.collect(platforms.get_platform("auto"), net, tmp_path / "raw", config, show_progress=False)
    assert (again.measured, again.tasks_given_up) == (0, 1)
    assert {p: p.read_bytes() for p in (tmp_path / "raw").rglob("*") if p.is_file()} == before


def _collect_in_background_until_16_measured(tmp_path, programs_per_task: int):
    """(process, its command, the measurements file once it has 16 lines, or None if that never came)."""
    model = write_matmul_onnx(tmp_path / "tiny.onnx")
    command = CLI + ["collect", "--onnx", str(model), "--platform", "auto", "-k", str(programs_per_task), "--out",
                     str(tmp_path / "raw")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 900  # the load guard waits while other work loads the machine
    while time.time() < deadline and process.poll() is None:
        found = list((tmp_path / "raw").glob(f"*/tiny/{records.MEASUREMENTS_FILE}"))
        if found and records.count_lines(found[0]) >= 16:
            return process, command, found[0]
        time.sleep(0.5)
    return process, command, None


def test_killed_collection_resumes_and_loses_nothing(tmp_path):
    process, command, measurements = _collect_in_background_until_16_measured(tmp_path, 32)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert measurements is not None, process.stderr.read()[-2000:]
    net_dir = measurements.parent
    before = (net_dir / records.RECORD_FILE).read_bytes()
    finished = run_cli(*command[len(CLI):])  # the rerun in this process: no second interpreter start
    assert finished.returncode == 0, finished.stderr[-2000:]
    after = b"".join(gzip.open(p).read() for p in records.segments(net_dir / records.RECORD_FILE))
    assert after.startswith(before)  # appended, never rewritten
    lines = [v for _, v in records.iter_json_lines(net_dir / records.RECORD_FILE)]
    provenance = [v for _, v in records.iter_json_lines(net_dir / records.MEASUREMENTS_FILE) if v]
    assert len([v for v in lines if v is not None]) >= 32
    assert len({p["record"] for p in provenance}) == len(provenance)
    assert len(lines) - len(provenance) <= 16  # at most the batch in flight lacks provenance
    assert records.count_lines(net_dir / records.WORKLOAD_FILE) == 1


def test_ctrl_c_seals_what_the_collection_measured_and_exits_130(tmp_path):
    process, command, measurements = _collect_in_background_until_16_measured(tmp_path, 64)
    process.send_signal(signal.SIGINT)
    try:
        assert process.wait(timeout=120) == 130, process.stderr.read()[-2000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert measurements is not None
    assert "interrupted; rerun the same command to resume" in process.stderr.read().decode()
    net_dir = measurements.parent
    for name in (records.WORKLOAD_FILE, records.RECORD_FILE, records.MEASUREMENTS_FILE):
        assert not (net_dir / name).exists() and records.segments(net_dir / name)  # moved into gzip segments
    measured = collect.TaskStore(net_dir, net_dir.parent).measured()
    assert sum(len(v) for v in measured.values()) >= 16  # a rerun resumes from every program measured


def test_bad_input_gives_one_line_and_exit_code_2(tmp_path):
    cases = [
        ["collect", "--platform", "no-such-platform", "--network", "resnet18", "--out", str(tmp_path)],
        ["collect", "--platform", "avx2-2t@", "--network", "resnet18", "--out", str(tmp_path)],
        ["collect", "--platform", "auto", "--network", "no-such-net", "--out", str(tmp_path)],
        ["collect", "--platform", "auto", "--onnx", str(tmp_path / "missing.onnx"), "--out", str(tmp_path)],
        ["info", str(tmp_path / "no-dataset")],
        ["featurize", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "d")],
    ]
    (tmp_path / "nothing-here").mkdir()
    for args in cases:
        assert_one_line(run_cli(*args))


def test_collection_stops_early_when_every_run_fails(tmp_path):
    model = write_matmul_onnx(tmp_path / "tiny.onnx")
    out = run_cli("collect", "--onnx", model, "--platform", "auto", "-k", "64", "--out", tmp_path / "raw",
                  "--run-timeout", "0.001")
    assert out.returncode == 2
    assert "timeout" in out.stderr.lower() or "timed out" in out.stderr.lower(), out.stderr[-500:]


def test_a_sealed_collection_still_counts_as_measured_on_resume(tmp_path):
    net_dir = tmp_path / "avx2-2t" / "net"
    net_dir.mkdir(parents=True)
    (net_dir / "platform.json").write_text("{}")
    records.append_lines(net_dir / records.MEASUREMENTS_FILE,
                         [json.dumps({"record": i, "task": "abc", "phase": "random"}) for i in range(5)])
    records.seal(net_dir / records.MEASUREMENTS_FILE)
    assert not (net_dir / records.MEASUREMENTS_FILE).exists()
    store = collect.TaskStore(net_dir, tmp_path / "avx2-2t")
    assert len(store.measured()["abc"]) == 5


def test_records_with_a_layout_transform_round_trip_through_the_json_database_format():
    """bert's matmul schedules carry an IndexMap, which TuningRecord.as_json cannot convert (it stopped a collection)."""
    import tvm
    from tvm import s_tir, te
    from tvm.s_tir import meta_schedule as ms

    from xfer_jax.bridge.collect import record_json

    a = te.placeholder((16, 16), name="A")
    b = te.compute((16, 16), lambda i, j: a[i, j] + 1.0, name="B")
    mod = tvm.IRModule({"main": te.create_prim_func([a, b])})
    sch = s_tir.Schedule(mod)
    sch.transform_layout(sch.get_sblock("B"), ("write", 0), lambda i, j: (j, i))
    workload = ms.database.Workload(mod)
    record = ms.database.TuningRecord(sch.trace, workload, [0.1], tvm.target.Target("llvm"),
                                      ms.arg_info.ArgInfo.from_prim_func(mod["main"]))
    back = ms.database.TuningRecord.from_json(json.loads(json.dumps(record_json(record))), workload)
    replayed = s_tir.Schedule(mod)
    back.trace.apply_to_schedule(replayed, remove_postproc=False)
    tvm.ir.assert_structural_equal(replayed.mod, sch.mod)


def test_attention_schedules_that_rewrite_a_layout_computed_inside_the_kernel_build_and_compute_attention():
    """RewriteLayout marks attention's reshaped keys and values, which the kernel computes itself: dropping their
    rewrite blocks, as TVM's builder does for weights, failed every candidate (bert_tiny's attention never tuned)."""
    from tvm.relax.frontend import nn

    from xfer_jax.bridge.measure import fast_build
    from xfer_jax.bridge.tasks import fuse_for_tuning

    class Attention(nn.Module):
        def forward(self, q, k, v):
            return nn.op.scaled_dot_product_attention(q, k, v)

    shape = (1, 32, 2, 16)
    network, _ = Attention().export_tvm(spec={"forward": {n: nn.spec.Tensor(list(shape), "float32") for n in "qkv"}})
    target = platforms.get_platform("auto").tvm_target()
    task, = ms.relax_integration.extract_tasks(fuse_for_tuning(network, target), target)
    mod = task.dispatched[0]
    context = ms.TuneContext(mod=mod, target=target, space_generator="post-order-apply",
                             search_strategy=ms.search_strategy.ReplayTrace(), task_name="attention", rand_state=0)
    context.search_strategy.pre_tuning(max_trials=4, num_trials_per_iter=4,
                                       design_spaces=context.space_generator.generate_design_space(mod),
                                       database=ms.database.MemoryDatabase(), cost_model=None)
    candidates = context.search_strategy.generate_measure_candidates()
    assert candidates and all("layout_rewrite_preproc" in str(c.sch.trace) for c in candidates)
    inputs = [np.random.default_rng(i).random(shape, dtype=np.float32) for i in range(3)]

    def output(library) -> np.ndarray:
        device = tvm.cpu()
        tensors = [tvm.runtime.tensor(x, device) for x in [*inputs, np.zeros(shape, np.float32)]]
        library["main"](*tensors)
        return tensors[-1].numpy()

    unscheduled = output(tvm.tirx.build(mod, target=target))
    for candidate in candidates:
        np.testing.assert_allclose(output(fast_build(candidate.sch.mod, target)), unscheduled, atol=1e-5)


def test_a_task_is_given_up_after_one_batch_of_build_timeouts_or_two_of_other_failures():
    import collections

    from xfer_jax.bridge.collect import CollectConfig, _gave_up

    config = CollectConfig(batch_size=16)
    timeouts = collections.Counter({"build: build timed out after 30.0 s": 16})
    assert _gave_up(16, timeouts, config)
    assert not _gave_up(15, timeouts, config)
    other = collections.Counter({"run: segfault": 16})
    assert not _gave_up(16, other, config) and _gave_up(32, other + timeouts, config)
    assert not _gave_up(40, collections.Counter({None: 1, "run: segfault": 39}), config)  # something ran


def test_a_task_given_up_after_failures_is_pending_again_only_when_retried_and_an_exhausted_one_never():
    import collections

    from tvm import te

    from xfer_jax.bridge.collect import CollectConfig, CollectSummary, _pending_tasks
    from xfer_jax.bridge.tasks import Task

    def task(n):
        a = te.placeholder((n,), "float32", name="a")
        function = te.create_prim_func([a, te.compute((n,), lambda i: a[i] + 1)])
        return Task(f"add{n}", tvm.IRModule({"main": function}), 1, n)

    failed, exhausted = task(8), task(16)
    done = collections.defaultdict(list, {failed.workload_hash: [{"error": "build: used before defined"}] * 32})
    for retry in (False, True):
        summary = CollectSummary(pathlib.Path("."), 2, 0, 0, 0, 0, 0, 0.0)
        pending = _pending_tasks([failed, exhausted], done, {exhausted.workload_hash},
                                 CollectConfig(batch_size=16, retry_failed_tasks=retry), summary)
        assert [t.name for t in pending] == (["add8"] if retry else []) and summary.tasks_given_up == 2 - retry


@pytest.mark.parametrize("labelled", [False, True])
def test_another_host_cannot_add_to_a_platform_folder_but_a_host_label_keeps_it_apart(tmp_path, labelled):
    here = platforms.get_platform("auto")  # labelled with this host's CPU name
    base, _, cpu = here.name.partition("@")
    hint = f"{here.name}-2" if labelled else f"{base}@host"  # the same CPU name on another machine needs a new one
    if not labelled:
        here = platforms.get_platform(base)
    other = dataclasses.replace(here, descriptor=dataclasses.replace(here.descriptor, l3_kib=here.descriptor.l3_kib + 1))
    written = tmp_path / here.name / "other-net"
    written.mkdir(parents=True)
    (written / "platform.json").write_text(json.dumps({"platform": other.to_dict(), "host": collect._host_fingerprint(other)}))
    net = networks.onnx_network(write_matmul_onnx(tmp_path / "tiny.onnx"))
    with pytest.raises(collect.CollectError, match=f"another host.*{hint}"):
        collect.collect(here, net, tmp_path, collect.CollectConfig(programs_per_task=8))
    assert not (tmp_path / here.name / "tiny" / "platform.json").exists()


def test_auto_and_at_host_name_this_machine_and_keep_its_target_and_descriptor():
    here = platforms.get_platform("auto")
    base, _, label = here.name.partition("@")
    assert label == platforms.host_cpu_name()
    labelled = platforms.get_platform(f"{base}@host")
    assert labelled.name == here.name
    assert (labelled.target, labelled.descriptor) == (here.target, here.descriptor)


def test_a_new_network_reuses_its_platform_folder_descriptor_despite_bandwidth_noise_and_newer_fields(tmp_path):
    here = platforms.get_platform("auto")
    measured_before = dataclasses.replace(here, descriptor=dataclasses.replace(here.descriptor, mem_bw_gbs=1.5))
    first, second = tmp_path / here.name / "a", tmp_path / here.name / "b"
    first.mkdir(parents=True)
    second.mkdir()
    collect._write_platform_once(tmp_path / here.name, first, measured_before)
    written = json.loads((first / "platform.json").read_text())
    for descriptor in (written["platform"]["descriptor"], written["host"]["descriptor"]):
        del descriptor["reference_gflops"]  # a folder written before the descriptor had this field
    (first / "platform.json").write_text(json.dumps(written))
    collect._write_platform_once(tmp_path / here.name, second, here)
    stored = [json.loads((d / "platform.json").read_text())["platform"]["descriptor"] for d in (first, second)]
    assert stored[0] == stored[1] and stored[1]["mem_bw_gbs"] == 1.5


def test_latency_is_the_mean_of_the_repeats_and_every_kind_of_failure_is_inf():
    assert records.latency_s([1.0, 3.0]) == 2.0
    for secs, error in [(None, None), ([], None), ([1.0], "build: timeout"), ([records.FAILED_RUN_SECS], None),
                        ([1.0, float("nan")], None), ([-1.0], None), ([0.0], None)]:
        assert records.latency_s(secs, error) == float("inf"), (secs, error)


def test_a_seal_killed_before_it_removes_the_plain_file_neither_duplicates_nor_loses_lines(tmp_path, monkeypatch):
    path = tmp_path / records.MEASUREMENTS_FILE
    records.append_lines(path, ['{"a":1}', '{"a":2}'])
    records.seal(path)
    records.append_lines(path, ['{"a":3}'])
    monkeypatch.setattr(pathlib.Path, "unlink", lambda self, missing_ok=False: None)  # killed right there
    records.seal(path)
    monkeypatch.undo()
    assert path.exists() and len(records.segments(path)) == 2  # the crash window: line 3 in both places
    # record numbers are what measurements.jsonl points at: the crash window must not shift them
    assert [(n, v["a"]) for n, v in records.iter_json_lines(path)] == [(0, 1), (1, 2), (2, 3)]
    assert records.count_lines(path) == records.count_complete_lines(path) == 3
    records.append_lines(path, ['{"a":4}'])  # the collector resumes
    assert [(n, v["a"]) for n, v in records.iter_json_lines(path)] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert path.read_text() == '{"a":4}\n'


@pytest.mark.parametrize("mistake, message", [
    ('num_thread = 2', "unknown platform fields \\['num_thread'\\]"),
    ('num_threads = 2\n[descriptor]\nkind = "cpu"\nthreads = "two"', "'threads' must be of type int"),
    ('num_threads = "2"', "num_threads must be an integer"),
])
def test_a_platform_file_with_a_typo_or_a_wrong_type_is_refused_in_one_line(tmp_path, mistake, message):
    body = 'name = "mine"\ntarget = {kind = "llvm", mcpu = "core-avx2"}\n' + mistake
    if "[descriptor]" not in body:
        body += '\n[descriptor]\nkind = "cpu"\nthreads = 2'
    (tmp_path / "mine.toml").write_text(body + "\n")
    with pytest.raises(platforms.PlatformError, match=message):
        platforms.get_platform(str(tmp_path / "mine.toml"))
    (tmp_path / "kind.toml").write_text('name = "m"\nnum_threads = 1\ntarget = {kind = "vulkan"}\n'
                                        '[descriptor]\nkind = "cpu"\n')
    with pytest.raises(platforms.PlatformError, match="kind 'llvm' or 'cuda'"):
        platforms.get_platform(str(tmp_path / "kind.toml"))


def test_cuda_names_this_hosts_gpu_or_says_in_one_line_that_there_is_none():
    if tvm.cuda(0).exist:
        gpu = platforms.get_platform("cuda")
        assert gpu.name.startswith("cuda@") and gpu.descriptor.sm_count > 0 and gpu.target["arch"].startswith("sm_")
    else:
        out = run_cli("collect", "--platform", "cuda", "--network", "resnet18", "--out", "/nonexistent")
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert "has none" in out.stderr.strip().splitlines()[-1]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="building CUDA kernels needs nvcc")
def test_gpu_candidates_and_the_gpu_load_reference_build_for_sm_90_without_a_gpu():
    from xfer_jax.bridge import measure, tasks

    target = platforms.get_platform("h100").tvm_target()
    task = tasks.extract_tasks(networks.onnx_network(write_matmul_onnx(pathlib.Path(os.environ.get(
        "TMPDIR", "/tmp")) / "xfer-jax-cuda-test.onnx")), target)[0]
    context = ms.TuneContext(task.mod, target=target, space_generator="post-order-apply",
                             search_strategy=ms.search_strategy.ReplayTrace(), task_name=task.name, rand_state=1)
    database = ms.database.MemoryDatabase()
    database.commit_workload(task.mod)
    context.search_strategy.pre_tuning(4, 4, context.space_generator.generate_design_space(task.mod), database, None)
    candidates = list(context.search_strategy.generate_measure_candidates()) + [measure._reference_candidate("cuda")]
    built = measure.make_builder(measure.MeasureConfig()).build(
        [ms.builder.BuilderInput(c.sch.mod, target) for c in candidates])
    assert len(built) == 5 and all(b.error_msg is None for b in built), [b.error_msg for b in built]
    source = measure.fast_build(candidates[-1].sch.mod, target).imports[0].inspect_source()
    assert "blockIdx.x" in source and "threadIdx.x" in source  # the reference really is a GPU kernel


def test_a_task_whose_design_space_tvm_cannot_generate_is_given_up_not_fatal():
    from xfer_jax.bridge import tasks

    target = platforms.get_platform("h100").tvm_target()
    extracted = {t.name: t for t in tasks.extract_tasks(networks.get_network("bert_tiny"), target)}
    strategy = ms.search_strategy.ReplayTrace()
    assert collect._context_and_spaces(extracted["attention"], target, strategy, seed=0) == (None, None)
    context, spaces = collect._context_and_spaces(extracted["layer_norm"], target, strategy, seed=0)
    assert context is not None and len(spaces) >= 1


def test_files_written_whole_leave_no_partial_file_and_read_back_damaged_as_one_line(tmp_path):
    path = tmp_path / "settings.json"
    records.write_whole(path, json.dumps({"seed": 0}))
    assert records.read_json(path) == {"seed": 0} and [p.name for p in tmp_path.iterdir()] == ["settings.json"]
    path.write_text('{"seed": ')  # what a kill in the middle of a plain write leaves
    with pytest.raises(UserError, match="settings.json is damaged; delete it"):
        records.read_json(path)
    with pytest.raises(UserError, match="is damaged"):  # a rerun of the job reads its settings first
        records.write_once(path, {"seed": 0}, ("seed",))


def test_phase_budgets_never_take_a_task_past_its_programs_even_when_resumed():
    config = collect.CollectConfig(programs_per_task=48)  # 24 random samples, then the search
    random, search = {"phase": "random"}, {"phase": "search"}
    assert collect.phase_budget("random", config, [], 0) == 24
    assert collect.phase_budget("search", config, [], 20) == 28  # 4 samples were repeats: the search measures them
    # killed during the search after 20 random and 27 search programs: one left, and no more random samples
    done = [random] * 20 + [search] * 27
    assert collect.phase_budget("random", config, done, 0) == 0 and collect.phase_budget("search", config, done, 0) == 1
    # killed during the random phase: it resumes where it stopped
    assert collect.phase_budget("random", config, [random] * 10, 0) == 14
    assert collect.phase_budget("search", config, [random] * 48, 0) == 0


def test_a_measured_program_read_back_from_its_record_is_recognised_as_measured(tmp_path):
    """A resumed collection skips what it measured before: a candidate's program and the one its stored record
    replays hash alike, for both search strategies."""
    net = networks.onnx_network(write_matmul_onnx(tmp_path / "m.onnx"))
    platform = platforms.get_platform("auto")
    task = extract_tasks(net, platform.tvm_target())[0]
    for strategy in (ms.search_strategy.ReplayTrace(), ms.search_strategy.EvolutionarySearch(population_size=16)):
        context, spaces = collect._context_and_spaces(task, platform.tvm_target(), strategy, seed=1)
        database = ms.database.MemoryDatabase()
        workload = database.commit_workload(task.mod)
        context.search_strategy.pre_tuning(8, 8, spaces, database, ms.cost_model.RandomModel())
        candidates = context.search_strategy.generate_measure_candidates()
        stored = [ms.database.TuningRecord.from_json(
            ms.database.TuningRecord(c.sch.trace, workload, [1.0], platform.tvm_target(), c.args_info).as_json(),
            workload) for c in candidates]
        state = collect._TaskState(task, workload, 0, database, None)
        state.new_programs([r.as_measure_candidate() for r in stored])
        assert candidates and state.new_programs(candidates) == []
