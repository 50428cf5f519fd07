"""The bridge on real TVM: XferCostModel inside MetaSchedule, and tune -> compile -> run -> compare."""

from __future__ import annotations

import collections
import dataclasses
import json
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from xfer_jax import dataset, metrics, splits, train
from xfer_jax.checkpoint import fingerprint
from xfer_jax.errors import UserError
from xfer_jax.model import ModelConfig

from helpers import CLI, assert_one_line, run_cli, write_matmul_onnx, write_two_matmul_onnx

tvm = pytest.importorskip("tvm")
from tvm.s_tir import meta_schedule as ms  # noqa: E402

import xfer_jax  # noqa: E402
from xfer_jax.bridge import networks, platforms, tasks  # noqa: E402
from xfer_jax.baselines import PackSumXGB  # noqa: E402
from xfer_jax.adapt import HeadAdapter, OnlineAdapter  # noqa: E402
from xfer_jax.bridge.cost_model import PretrainedXGBCostModel, TimedCostModel, XferCostModel  # noqa: E402
from xfer_jax.bridge.measure import MeasureConfig, build_and_run, make_builder, make_runner  # noqa: E402
from xfer_jax.bridge import records  # noqa: E402
from xfer_jax.bridge.tune import (TuneConfig, best_measured, best_records, records_to_compile,  # noqa: E402
                                  tune_network, untuned_candidate)

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from helpers import synthetic_shards

    root = tmp_path_factory.mktemp("ckpt")
    data = dataset.load(synthetic_shards(root / "data"))
    split = splits.within_task(data)
    config = train.TrainConfig(steps=40, eval_every=20, groups_per_batch=4, programs_per_group=8)
    # the split recorded, as `xfer-jax train` records it: xgb-pretrained fits the programs the checkpoint trained on
    train.train(data, split.train, split.test, ModelConfig.small(), config, root / "ck", split.spec,
                show_progress=False)
    return root / "ck"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_matmul_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_xfer_cost_model_tunes_a_task_inside_tune_tir(checkpoint, tiny, tmp_path):
    platform = platforms.get_platform("auto")
    target = platform.tvm_target()
    task = tasks.extract_tasks(networks.onnx_network(tiny), target)[0]
    cost_model = XferCostModel.from_checkpoint(checkpoint, platform, adapt_every=8)
    cost_model.save(str(tmp_path / "before-any-update"))  # saving and loading before any update works
    cost_model.load(str(tmp_path / "before-any-update"))
    database = ms.tune_tir(task.mod, target, work_dir=str(tmp_path / "work"), max_trials_global=16,
                           num_trials_per_iter=8, cost_model=cost_model, **fast_measurement(platform))
    records = database.get_all_tuning_records()
    assert 0 < len(records) <= 16
    assert 1 <= cost_model.updates["tried"] <= len(records) // 8  # one try per 8 new measurements at most
    assert cost_model.updates["kept"] <= cost_model.updates["tried"]
    cost_model.save(str(tmp_path / "after"))
    assert xfer_jax.load(tmp_path / "after").max_stores == xfer_jax.load(checkpoint).max_stores


def test_a_frozen_prescreening_model_never_updates_and_featurizes_only_the_best_share(checkpoint, tiny, tmp_path):
    platform = platforms.get_platform("auto")
    target = platform.tvm_target()
    task = tasks.extract_tasks(networks.onnx_network(tiny), target)[0]
    with pytest.raises(UserError, match="prescreening"):
        XferCostModel.from_checkpoint(checkpoint, platform, prescreen=1.0)
    cost_model = XferCostModel.from_checkpoint(checkpoint, platform, frozen=True, prescreen=0.25)
    before = xfer_jax.load(checkpoint).params
    database = ms.tune_tir(task.mod, target, work_dir=str(tmp_path), max_trials_global=16, num_trials_per_iter=8,
                           cost_model=cost_model, **fast_measurement(platform))
    assert 0 < len(database.get_all_tuning_records()) <= 16
    assert cost_model.updates["tried"] == 0
    for a, b in zip(tvm_leaves(before), tvm_leaves(cost_model.predictor.params)):
        np.testing.assert_array_equal(a, b)
    featurized, tokenized = cost_model.candidates.featurized, len(cost_model.candidates.tokens_of)
    assert 0 < featurized < 0.6 * tokenized  # the first call featurizes all; later ones a quarter and the measured


def tune_tiny_task(tiny, cost_model, work_dir, trials: int = 16):
    """The tiny network's one task tuned with `cost_model` on its platform, in rounds of 8; returns the database."""
    platform = cost_model.platform
    target = platform.tvm_target()
    task = tasks.extract_tasks(networks.onnx_network(tiny), target)[0]
    return ms.tune_tir(task.mod, target, work_dir=str(work_dir), max_trials_global=trials, num_trials_per_iter=8,
                       cost_model=cost_model, **fast_measurement(platform))


def assert_unchanged(before, after, moving: tuple[str, ...] = ()) -> None:
    """Every parameter equal, except those whose path names one of `moving`."""
    import jax

    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(before), tvm_leaves(after)):
        if not any(name in jax.tree_util.keystr(path) for name in moving):
            np.testing.assert_array_equal(np.asarray(a), b)


def test_the_booster_adaptation_refits_on_measurements_and_leaves_the_model_frozen(checkpoint, tiny, tmp_path):
    platform = platforms.get_platform("auto")
    with pytest.raises(UserError, match="unknown online adaptation"):
        XferCostModel.from_checkpoint(checkpoint, platform, adapt="sometimes")
    cost_model = XferCostModel.from_checkpoint(checkpoint, platform, adapt_every=8, adapt="booster")
    before = xfer_jax.load(checkpoint).params
    tune_tiny_task(tiny, cost_model, tmp_path)
    assert 1 <= cost_model.updates["tries"] <= 2  # one per 8 measurements
    assert cost_model.updates["refits"] <= 2 and cost_model.updates["weight"] in cost_model.booster.WEIGHTS
    assert_unchanged(before, cost_model.predictor.params)


def test_a_model_left_as_trained_ranks_with_its_partner_which_alone_boosts_online(checkpoint, tiny, tmp_path):
    from helpers import synthetic_shards

    data = dataset.load(synthetic_shards(tmp_path / "data"))
    platform = platforms.get_platform("auto")
    partner = PackSumXGB(rounds=20).fit(data.features, data.mask, data.label)
    with pytest.raises(UserError, match="partners"):
        XferCostModel.from_checkpoint(checkpoint, platform, adapt="residual", partner=partner)
    cost_model = XferCostModel.from_checkpoint(checkpoint, platform, adapt_every=8, adapt="none", partner=partner,
                                               partner_weight=None)
    before = xfer_jax.load(checkpoint).params
    cost_model.partner.update_every, cost_model.partner.update_rounds = 8, 5
    cost_model.partner_weight.min_pairs = 1  # the weight chosen from the first measured batch on
    tune_tiny_task(tiny, cost_model, tmp_path / "work")
    assert cost_model.updates["tried"] == 0 and cost_model.updates["partner_boosted"] >= 1
    assert_unchanged(before, cost_model.predictor.params)
    assert partner.booster.num_boosted_rounds() == 20 + 5 * cost_model.updates["partner_boosted"]
    measured, = cost_model.history.values()
    inputs = (measured.features, measured.mask, measured.workload, measured.hardware, measured.trace_ids,
              measured.trace_values)
    model, boosted = cost_model.predictor.predict(*inputs), partner.predict(measured.features, measured.mask)
    both = cost_model._scored("a task", inputs)
    weight = cost_model.updates["partner_weight"]
    assert cost_model.partner_weight.pairs > 0 and weight in cost_model.partner_weight.WEIGHTS
    expected = weight * metrics.zscore(model) + (1 - weight) * metrics.zscore(boosted)
    assert np.argsort(both, kind="stable").tolist() == np.argsort(expected, kind="stable").tolist()
    # on the model's own scale, which the search samples parents by
    np.testing.assert_allclose([both.mean(), both.std()], [model.mean(), model.std()], rtol=1e-5, atol=1e-6)


def test_the_residual_adaptation_refits_trees_on_the_errors_and_leaves_the_model_frozen(checkpoint, tiny, tmp_path):
    cost_model = XferCostModel.from_checkpoint(checkpoint, platforms.get_platform("auto"), adapt_every=8,
                                               adapt="residual")
    before = xfer_jax.load(checkpoint).params
    tune_tiny_task(tiny, cost_model, tmp_path)
    assert 1 <= cost_model.updates["refits"] <= 2 and cost_model.updates["slope"] > 0
    assert_unchanged(before, cost_model.predictor.params)
    measured, = cost_model.history.values()
    inputs = (measured.features, measured.mask, measured.workload, measured.hardware, measured.trace_ids,
              measured.trace_values)
    plain = cost_model.predictor.predict(*inputs)
    key, = cost_model.history
    assert cost_model._scored(key, inputs).tolist() != plain.tolist()  # the measured task: corrected
    assert cost_model._scored("another task", inputs).tolist() == plain.tolist()  # a task never measured: not


def test_the_head_adaptation_fine_tunes_the_readout_alone_inside_tune_tir(checkpoint, tiny, tmp_path):
    cost_model = XferCostModel.from_checkpoint(checkpoint, platforms.get_platform("auto"), adapt_every=8,
                                               adapt="head")
    before = xfer_jax.load(checkpoint).params
    tune_tiny_task(tiny, cost_model, tmp_path, trials=24)
    assert 1 <= cost_model.updates["tried"] <= 2  # the first batch has nothing before it to train on
    (embedded, latency), = cost_model.adapter.embedded.values()
    assert len(embedded) == len(latency) == len(cost_model.history[next(iter(cost_model.history))].latency)
    assert_unchanged(before, cost_model.predictor.params, moving=("head_hidden", "head_out"))


def test_xfer_explore_blends_a_booster_into_a_task_that_stops_improving(checkpoint, tiny, tmp_path):
    platform = platforms.get_platform("auto")
    target = platform.tvm_target()
    task = tasks.extract_tasks(networks.onnx_network(tiny), target)[0]
    for mistake in (dict(frozen=True, explore_after=2), dict(explore_after=0)):
        with pytest.raises(UserError, match="stalled"):
            XferCostModel.from_checkpoint(checkpoint, platform, **mistake)
    # two measurements without a 1% better program: a 32-trial tune of one task stalls, and search scores it after
    cost_model = XferCostModel.from_checkpoint(checkpoint, platform, adapt_every=8, explore_after=2, prescreen=0.25)
    weights_seen = {"_scored": [], "_prescreened": []}  # the task's stall weight whenever search scored it

    def recording(name, key_of):
        method = getattr(cost_model, name)

        def wrapper(*args):
            weights_seen[name].append(cost_model._stall_weight(key_of(*args)))
            return method(*args)
        setattr(cost_model, name, wrapper)

    recording("_scored", lambda key, inputs: key)
    recording("_prescreened", lambda context, candidates, tokens: tokens[0])
    ms.tune_tir(task.mod, target, work_dir=str(tmp_path), max_trials_global=32, num_trials_per_iter=8,
                cost_model=cost_model, **fast_measurement(platform))
    assert cost_model.updates["stalled_tasks"] == 1 and cost_model.updates["stall_fits"] >= 1
    assert cost_model.updates["tried"] >= 1  # and the model itself still fine-tunes
    assert max(weights_seen["_scored"]) > 0  # search scored the stalled task with the booster blended in
    assert weights_seen["_prescreened"] and max(weights_seen["_prescreened"]) == 0  # and featurized it whole
    measured, = cost_model.history.values()
    inputs = (measured.features, measured.mask, measured.workload, measured.hardware, measured.trace_ids,
              measured.trace_values)
    plain = cost_model.predictor.predict(*inputs)
    assert cost_model._scored("another task", inputs).tolist() == plain.tolist()  # tasks that did not stall


def test_xfer_frozen_and_xfer_booster_are_the_same_checkpoint_adapting_otherwise(checkpoint, tmp_path):
    from xfer_jax.bridge.tune import _make_cost_model

    platform = platforms.get_platform("auto")
    adapting = _make_cost_model("xfer", checkpoint, platform, TuneConfig(), tmp_path)
    frozen = _make_cost_model("xfer-frozen", checkpoint, platform, TuneConfig(), tmp_path)
    assert not adapting.frozen and frozen.frozen and adapting.booster is None and adapting.residual is None
    assert adapting.adapt == "head" and isinstance(adapting.adapter, HeadAdapter)  # the readout alone by default
    whole = _make_cost_model("xfer-finetune", checkpoint, platform, TuneConfig(), tmp_path)
    assert whole.adapt == "finetune" and isinstance(whole.adapter, OnlineAdapter)
    blended = _make_cost_model("xfer-booster", checkpoint, platform, TuneConfig(), tmp_path)
    assert blended.booster is not None and not blended.frozen and blended.residual is None
    residual = _make_cost_model("xfer-residual", checkpoint, platform, TuneConfig(), tmp_path)
    assert residual.residual is not None and residual.booster is None and not residual.frozen
    with pytest.raises(UserError, match="stalled"):
        XferCostModel.from_checkpoint(checkpoint, platform, adapt="residual", explore_after=16)
    exploring = _make_cost_model("xfer-explore", checkpoint, platform, TuneConfig(), tmp_path)
    assert exploring.stalls.patience == 16 and adapting.stalls is None and not exploring.frozen
    assert exploring.adapt == "finetune"  # exploring is a part of fine-tuning the whole model
    with pytest.raises(UserError, match="needs --checkpoint"):
        _make_cost_model("xfer-frozen", None, platform, TuneConfig(), tmp_path)
    # the reference matmul is timed once per job, and every xfer model of it reads that hardware vector
    timed = json.loads((tmp_path / "reference_gflops.json").read_text())
    assert timed > 0 and {m.platform.descriptor.reference_gflops for m in (adapting, frozen, blended)} == {timed}
    (tmp_path / "reference_gflops.json").write_text("123.5")  # as a resumed job finds it
    assert _make_cost_model("xfer", checkpoint, platform, TuneConfig(), tmp_path).platform.descriptor \
        .reference_gflops == 123.5
    (tmp_path / "reference_gflops.json").write_text("{")
    with pytest.raises(UserError, match="damaged"):
        _make_cost_model("xfer", checkpoint, platform, TuneConfig(), tmp_path)


def test_pretrained_xgb_boosts_on_its_own_measurements_and_saves_json_not_pickle(tiny, tmp_path):
    from helpers import synthetic_shards

    data = dataset.load(synthetic_shards(tmp_path / "data"))
    platform = platforms.get_platform("auto")
    target = platform.tvm_target()
    task = tasks.extract_tasks(networks.onnx_network(tiny), target)[0]
    cost_model = PretrainedXGBCostModel(PackSumXGB(rounds=20).fit(data.features, data.mask, data.label),
                                        update_every=8, update_rounds=5)
    trees = cost_model.online.booster.booster.num_boosted_rounds()
    ms.tune_tir(task.mod, target, work_dir=str(tmp_path / "work"), max_trials_global=16, num_trials_per_iter=8,
                cost_model=cost_model, **fast_measurement(platform))
    assert cost_model.updates >= 1
    assert cost_model.online.booster.booster.num_boosted_rounds() == trees + 5 * cost_model.updates
    cost_model.save(str(tmp_path / "booster.json"))
    assert json.loads((tmp_path / "booster.json").read_text())["learner"]  # XGBoost's JSON model format
    reloaded = PretrainedXGBCostModel(PackSumXGB())
    reloaded.load(str(tmp_path / "booster.json"))
    np.testing.assert_allclose(reloaded.online.predict(data.features[:9], data.mask[:9]),
                               cost_model.online.predict(data.features[:9], data.mask[:9]), rtol=1e-6)


def test_saved_tvm_xgb_models_are_never_unpickled(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises((UserError, RuntimeError), match="never loads a pickle"):  # TVM's FFI rewraps the error
        TimedCostModel(ms.cost_model.RandomModel()).load(str(tmp_path / "model.bin"))


def fast_measurement(platform) -> dict:
    """Our pooled builder: TVM's default LocalBuilder imports tensor intrinsics in every worker (minutes here)."""
    config = MeasureConfig()
    return {"builder": make_builder(config), "runner": make_runner(platform, config)}


def test_cold_cache_measurement_is_ten_single_runs_after_a_flush(tiny):
    platform = platforms.get_platform("auto")
    target = platform.tvm_target()
    task = tasks.extract_tasks(networks.onnx_network(tiny), target)[0]
    candidate = untuned_candidate(task)
    config = MeasureConfig.cold_cache()
    assert config.cpu_cache_flush and config.min_repeat_ms == 0 and config.number == 1
    [(seconds, error)] = build_and_run(make_builder(config), make_runner(platform, config), platform, target,
                                       [candidate])
    assert error is None and len(seconds) == 10 and min(seconds) > 0


def tvm_leaves(params):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(params)]


def test_tune_compile_run_matches_untuned_and_resumes(checkpoint, tiny, tmp_path):
    platform = platforms.get_platform("auto")
    network = networks.onnx_network(tiny)
    config = TuneConfig(trials=16, trials_per_round=8, e2e_number=2, e2e_repeat=2)
    # a tune that stopped half way: the longer rerun continues its curve from the best latencies measured
    tune_network(network, platform, ["random"], tmp_path, dataclasses.replace(config, trials=8), checkpoint,
                 show_progress=False)
    report = tune_network(network, platform, ["xfer", "random"], tmp_path, config, checkpoint, show_progress=False)
    curve = report["models"]["random"]["curve"]
    assert [trials for trials, _, _ in curve] == [8, 16] and curve[1][1] >= curve[0][1]
    database = ms.database.JSONDatabase(work_dir=str(tmp_path / "random"))
    untuned = json.loads((tmp_path / "untuned_task_seconds.json").read_text())
    tuned = tasks.extract_tasks(network, platform.tvm_target())
    best = best_measured(database, tuned, untuned)
    assert curve[1][2] == pytest.approx(sum(float(t.weight) * b for t, b in zip(tuned, best)) * 1e3)
    assert curve[1][2] <= curve[0][2]
    # the compiled network takes a task's untuned code where that measured faster, as the estimate assumes
    compiled = lambda untuned_s: [records_to_compile(database, tuned, untuned_s).has_workload(t.mod) for t in tuned]
    assert compiled([0.0] * len(tuned)) == [False] * len(tuned)
    assert compiled([float("inf")] * len(tuned)) == [True] * len(tuned)
    best_s = [records.latency_s(r.run_secs) if r else float("inf") for r in best_records(database, tuned)]
    assert report["models"]["random"]["tasks_left_untuned"] == sum(u < b for u, b in zip(untuned, best_s))
    for name in ("xfer", "random"):
        entry = report["models"][name]
        assert entry["output_matches_untuned"]
        # each task's new bests were checked against its untuned code as they were measured; none computed wrongly
        assert entry["wrong_output_programs"] == 0 and (tmp_path / name / "output_checks.jsonl").exists()
        assert entry["trials"] == 16
        assert entry["final_latency_ms"] > 0 and entry["latency_spread_ms"] >= 0
        assert all(len(point) == 3 for point in entry["curve"])
        assert (tmp_path / name / "tiny.so").exists()
    assert (tmp_path / "tune.png").exists()
    assert 0.1 < report["checkpoint"]["reference_gflops_here"] < 1e5  # timed: the hardware vector's measured entry
    # timed once per job: a resumed tune reads the hardware vector it started with
    assert json.loads((tmp_path / "reference_gflops.json").read_text()) == report["checkpoint"]["reference_gflops_here"]
    saved = json.loads((tmp_path / "tune.json").read_text())
    assert set(saved["models"]) == {"xfer", "random"}
    # the job names the checkpoint's trained model: one retrained in its folder does not resume this job
    assert json.loads((tmp_path / "settings.json").read_text())["checkpoint_id"] == fingerprint(checkpoint)
    again = tune_network(network, platform, ["random"], tmp_path, config, checkpoint, show_progress=False)
    assert again["models"]["random"]["trials"] == 16  # resumed from the database: nothing measured again
    assert again["models"]["random"] == report["models"]["random"]  # nor compiled and timed again
    assert list(again["models"]) == ["random", "xfer"]  # the report keeps what the job finished before
    points = [json.loads(line) for line in (tmp_path / "random" / "curve.jsonl").read_text().splitlines()]
    assert [[p["trials"], p["s"], p["est_ms"]] for p in points] == report["models"]["random"]["curve"]
    with pytest.raises(UserError, match="different seed"):  # another job must not resume these databases
        tune_network(network, platform, ["random"], tmp_path, dataclasses.replace(config, seed=1), checkpoint,
                     show_progress=False)
    with pytest.raises(UserError, match="different cpu_cache_flush"):
        tune_network(network, platform, ["random"], tmp_path, dataclasses.replace(config, measure=MeasureConfig()),
                     checkpoint, show_progress=False)
    with pytest.raises(UserError, match="different adapt_every"):
        tune_network(network, platform, ["xfer"], tmp_path, dataclasses.replace(config, adapt_every=64), checkpoint,
                     show_progress=False)
    # the job gains a baseline on a rerun; that baseline resumes only with the dataset it was fitted on
    data = checkpoint.parent / "data"
    pretrained = dataclasses.replace(config, data=str(data))
    reference = tmp_path / "reference_output.npy"
    np.save(reference, np.load(reference) + 1)  # as if this model's build computed something else
    gained = tune_network(network, platform, ["random", "xgb-pretrained", "xfer+xgb"], tmp_path, pretrained,
                          checkpoint, show_progress=False)
    assert gained["models"]["random"]["output_matches_untuned"]  # finished before: not compiled again
    assert not gained["models"]["xgb-pretrained"]["output_matches_untuned"]  # kept, flagged, and the job goes on
    assert len(list((tmp_path / "xgb-pretrained").glob("pretrained-*.json"))) == 1  # fitted once, for both
    assert "partner_boosted" in gained["models"]["xfer+xgb"]["online_updates"]
    assert json.loads((tmp_path / "xgb-pretrained" / "result.json").read_text()) == gained["models"]["xgb-pretrained"]
    shutil.copytree(data, tmp_path / "same-programs-elsewhere")
    with pytest.raises(UserError, match="different data"):
        tune_network(network, platform, ["xgb-pretrained"], tmp_path,
                     dataclasses.replace(config, data=str(tmp_path / "same-programs-elsewhere")), checkpoint,
                     show_progress=False)
    rerun = tune_network(network, platform, ["random"], tmp_path, config, checkpoint, show_progress=False)
    assert list(rerun["models"]) == ["random", "xfer", "xfer+xgb", "xgb-pretrained"]  # the job resumes as before


def test_top_k_per_task_measures_exactly_k_programs_of_every_task(checkpoint, tiny, tmp_path):
    network = networks.onnx_network(tiny)
    config = TuneConfig(top_k_per_task=2, e2e_number=1, e2e_repeat=1)
    report = tune_network(network, platforms.get_platform("auto"), ["xfer"], tmp_path, config, checkpoint,
                          show_progress=False)
    count = report["tasks"]
    assert report["trials"] == 2 * count and report["models"]["xfer"]["trials"] == 2 * count
    lines = (tmp_path / "xfer" / "database_tuning_record.json").read_text().splitlines()
    assert sorted(collections.Counter(json.loads(line)[0] for line in lines).values()) == [2] * count


def test_round_robin_scheduler_gives_every_task_the_rounds_per_task_it_asks_for(checkpoint, tmp_path):
    network = networks.onnx_network(write_two_matmul_onnx(tmp_path / "two.onnx"))
    count = len(tasks.extract_tasks(network, platforms.get_platform("auto").tvm_target()))
    assert count == 2
    config = TuneConfig(rounds_per_task=2, trials_per_round=2, task_scheduler="round-robin", e2e_number=1,
                        e2e_repeat=1)
    report = tune_network(network, platforms.get_platform("auto"), ["random"], tmp_path, config, checkpoint,
                          show_progress=False)
    assert report["trials"] == 2 * 2 * count  # rounds x trials per round x tasks
    lines = (tmp_path / "random" / "database_tuning_record.json").read_text().splitlines()
    assert sorted(collections.Counter(json.loads(line)[0] for line in lines).values()) == [4] * count
    assert json.loads((tmp_path / "settings.json").read_text())["task_scheduler"] == "round-robin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(port: int, key: str, timeout_s: float = 120) -> None:
    from tvm import rpc

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            servers = rpc.connect_tracker("127.0.0.1", port).summary().get("server_info", [])
            if any(str(s.get("key", "")).split(":")[-1] == key for s in servers):
                return
        except Exception:  # the tracker is still starting
            pass
        time.sleep(1)
    raise TimeoutError(f"no RPC server with key {key} registered at 127.0.0.1:{port}")


def test_tune_through_an_rpc_tracker_on_localhost(checkpoint, tiny, tmp_path):
    port = _free_port()
    tracker = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                                "--port", str(port), "--port-end", str(port + 1)])
    server = None
    try:
        server = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
                                   "--tracker", f"127.0.0.1:{port}", "--key", "xfer-test"])
        _wait_for_server(port, "xfer-test")
        platform = platforms.get_platform("auto")
        config = TuneConfig(trials=8, trials_per_round=8, e2e_number=1, e2e_repeat=1,
                            measure=MeasureConfig(rpc_tracker=f"127.0.0.1:{port}", rpc_key="xfer-test"))
        report = tune_network(networks.onnx_network(tiny), platform, ["xfer"], tmp_path, config, checkpoint,
                              show_progress=False)
        entry = report["models"]["xfer"]
        assert entry["trials"] == 8 and entry["output_matches_untuned"]
        assert any(e is not None for _, _, e in entry["curve"])  # some runs succeeded over RPC
    finally:
        for process in (server, tracker):
            if process:
                process.kill()


def test_tune_bad_input_exits_2_with_one_line(checkpoint, tiny, tmp_path):
    cases = [
        ["tune", "--network", "no-such-net", "--checkpoint", str(checkpoint)],
        ["tune", "--network", "resnet18", "--platform", "no-such-platform", "--checkpoint", str(checkpoint)],
        ["tune", "--onnx", str(tiny), "--checkpoint", str(tmp_path / "missing")],
        ["tune", "--onnx", str(tiny), "--checkpoint", str(checkpoint), "--compare", "xgb-pretrained", "--data",
         str(tmp_path / "no-dataset")],
        ["tune", "--onnx", str(tiny), "--checkpoint", str(checkpoint), "--rounds-per-task", "8", "--trials", "64"],
    ]
    for args in cases:
        assert_one_line(run_cli(*args, "--out", tmp_path / "o"))


@pytest.mark.parametrize("mistake", ["checkpoint typo", "checkpoint damaged", "platform not runnable here"])
def test_a_bad_checkpoint_or_platform_does_not_claim_the_work_folder(checkpoint, tiny, tmp_path, mistake):
    args = ["--checkpoint", str(tmp_path / "typo")]
    if mistake == "checkpoint damaged":
        shutil.copytree(checkpoint, tmp_path / "damaged")
        next((tmp_path / "damaged" / "best").glob("[0-9]*/metadata/metadata")).unlink()
        args = ["--checkpoint", str(tmp_path / "damaged")]
    elif mistake == "platform not runnable here":
        spec = {**platforms.get_platform("avx2-1t").to_dict(), "required_cpu_flags": ["no_such_cpu_flag"]}
        (tmp_path / "mine.json").write_text(json.dumps(spec))
        args = ["--checkpoint", str(checkpoint), "--platform", str(tmp_path / "mine.json")]
    assert_one_line(run_cli("tune", "--onnx", tiny, *args, "--out", tmp_path / "o"))
    assert not list((tmp_path / "o").rglob("settings.json"))  # the corrected rerun is not "a different job"


@pytest.mark.parametrize("address", ["free port", "127.0.0.1:abc"])
def test_a_bad_rpc_tracker_is_reported_before_any_slow_work(checkpoint, tiny, tmp_path, address):
    tracker = f"127.0.0.1:{_free_port()}" if address == "free port" else address
    start = time.time()
    out = run_cli("tune", "--onnx", tiny, "--checkpoint", checkpoint, "--rpc-tracker", tracker, "--rpc-key", "nobody",
                  "--out", tmp_path / "o")
    error = assert_one_line(out)
    assert "--rpc-tracker" in error or "RPC tracker" in error, error
    assert time.time() - start < 30  # TVM's own connect retries for about a minute; task extraction comes later
    assert not list((tmp_path / "o").rglob("settings.json"))


def test_ctrl_c_during_tune_is_one_line_and_exit_code_130_and_keeps_the_curve(checkpoint, tiny, tmp_path):
    import signal

    command = CLI + ["tune", "--onnx", str(tiny), "--checkpoint", str(checkpoint), "--trials", "256",
                     "--trials-per-round", "8", "--compare", "xfer", "--out", str(tmp_path / "out")]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not list(tmp_path.glob("out/**/curve.jsonl")) and time.time() < deadline:  # inside TVM's search loop
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    messages = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]
    assert run.returncode == 130 and "Traceback" not in stderr, stderr[-1500:]
    assert messages and messages[-1] == "interrupted; rerun the same command to resume" and len(messages) <= 3, (
        messages, stderr[-600:])
    curve = next(tmp_path.glob("out/**/curve.jsonl"))
    assert all(json.loads(line)["trials"] > 0 for line in curve.read_text().splitlines())
