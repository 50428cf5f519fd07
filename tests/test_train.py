import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import xfer_jax
from helpers import CLI, assert_one_line, run_cli
from xfer_jax import checkpoint, dataset, distill, evaluate, metrics, splits, train
from xfer_jax.errors import UserError
from xfer_jax.hardware import HARDWARE_FEATURE_NAMES
from xfer_jax.model import ModelConfig

TINY = train.TrainConfig(steps=60, eval_every=30, groups_per_batch=4, programs_per_group=8, patience=3)


def test_training_learns_a_ranking_and_checkpoint_round_trips(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    split = splits.within_task(data, seed=0)
    config = train.TrainConfig(steps=150, eval_every=50, groups_per_batch=4, programs_per_group=16)
    result = train.train(data, split.train, split.test, ModelConfig.small(), config, tmp_path / "ck",
                         show_progress=False)
    assert result["best"]["pca"] > 0.65  # the synthetic latency is a linear function of the features
    assert_loaded_checkpoint_scores_as_trained(tmp_path / "ck", data, split, result)


def assert_loaded_checkpoint_scores_as_trained(path, data, split, result) -> None:
    test = data.subset(split.test)
    scores = xfer_jax.load(path).predict_dataset(test)
    assert np.isclose(metrics.pca(scores, test.latency, test.group), result["best"]["pca"], atol=1e-4)


def test_a_model_without_relative_features_trains_and_loads_as_trained(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    split = splits.within_task(data, seed=0)
    config = dataclasses.replace(ModelConfig.small(), relative_features=False)
    result = train.train(data, split.train, split.test, config, TINY, tmp_path / "ck", show_progress=False)
    assert_loaded_checkpoint_scores_as_trained(tmp_path / "ck", data, split, result)
    loaded = xfer_jax.load(tmp_path / "ck")
    assert not loaded.normalizer.relative and not loaded.config.relative_features


def test_a_checkpoint_retrained_in_its_folder_gets_another_fingerprint(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    split = splits.within_task(data, seed=0)
    short = dataclasses.replace(TINY, steps=30, eval_every=30)
    train.train(data, split.train, split.test, ModelConfig.small(), short, tmp_path / "ck", show_progress=False)
    first = checkpoint.fingerprint(tmp_path / "ck")
    assert len(first) == 12 and checkpoint.fingerprint(tmp_path / "ck") == first  # reading it changes nothing
    shutil.rmtree(tmp_path / "ck")
    train.train(data, split.train, split.test, ModelConfig.small(), dataclasses.replace(short, seed=1),
                tmp_path / "ck", show_progress=False)
    assert checkpoint.fingerprint(tmp_path / "ck") != first


def test_only_an_xfer_model_with_hardware_reads_relative_features_and_older_checkpoints_did_not():
    assert ModelConfig().reads_relative_features and ModelConfig().store_columns > ModelConfig().store_features
    for config in (ModelConfig(use_hardware=False), ModelConfig(kind="mlp")):
        assert not config.reads_relative_features and config.store_columns == config.store_features
    written_before = {k: v for k, v in ModelConfig().to_dict().items() if k != "relative_features"}
    assert not checkpoint.model_config_of({"model": written_before}).relative_features


def test_predictor_pads_buckets_and_accepts_one_hardware_vector(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    split = splits.within_task(data, seed=0)
    train.train(data, split.train, split.test, ModelConfig.small(), TINY, tmp_path / "ck", show_progress=False)
    predictor = xfer_jax.load(tmp_path / "ck")
    trace = data.trace_ids[:5], data.trace_values[:5]
    full = predictor.predict(data.features[:5], data.mask[:5], data.workload[:5], data.hardware[:5], *trace)
    one = predictor.predict(data.features[:5, :2], data.mask[:5, :2], data.workload[:5], data.hardware[0], *trace)
    assert full.shape == (5,)
    np.testing.assert_allclose(full[data.mask[:5, 2] == 0], one[data.mask[:5, 2] == 0], rtol=1e-5)
    assert predictor.predict(data.features[:0], data.mask[:0], data.workload[:0], data.hardware[0],
                             data.trace_ids[:0], data.trace_values[:0]).shape == (0,)
    with pytest.raises(checkpoint.CheckpointError, match="trace"):  # a trace model without its tokens says so
        predictor.predict(data.features[:5], data.mask[:5], data.workload[:5], data.hardware[:5])


def test_a_checkpoint_older_than_a_hardware_feature_reads_the_entries_it_knows(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    # trained before the measured reference joined the hardware vector
    shipped = xfer_jax.load(pathlib.Path(__file__).parents[1] / "checkpoints" / "lopo-znver5")
    known = len(shipped.metadata["hardware_features"])
    assert known < data.hardware.shape[1]
    later = data.hardware[:8].copy()
    later[:, known:] += 5.0
    inputs = data.features[:8], data.mask[:8], data.workload[:8]
    trace = data.trace_ids[:8], data.trace_values[:8]
    scores = shipped.predict(*inputs, data.hardware[:8], *trace)
    np.testing.assert_array_equal(scores, shipped.predict(*inputs, later, *trace))
    np.testing.assert_array_equal(scores, shipped.predict(*inputs, data.hardware[:8, :known], *trace))
    renamed = {**shipped.metadata, "hardware_features": ["cores", *shipped.metadata["hardware_features"][1:]]}
    with pytest.raises(checkpoint.CheckpointError, match="not a leading part"):
        checkpoint._check_metadata(tmp_path, renamed)
    newer = {**shipped.metadata, "hardware_features": [*HARDWARE_FEATURE_NAMES, "tensor_cores"]}
    with pytest.raises(checkpoint.CheckpointError, match="newer version"):
        checkpoint._check_metadata(tmp_path, newer)


def test_training_resumes_from_its_latest_checkpoint(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    split = splits.within_task(data, seed=0)
    first = train.train(data, split.train, split.test, ModelConfig.small(), TINY, tmp_path / "ck",
                        show_progress=False)
    longer = train.TrainConfig(**{**TINY.to_dict(), "steps": 90})
    resumed = train.train(data, split.train, split.test, ModelConfig.small(), longer, tmp_path / "ck",
                          show_progress=False)
    assert [h["step"] for h in first["history"]] == [30, 60]
    assert [h["step"] for h in resumed["history"]] == [30, 60, 90]  # the history carries over
    assert resumed["best"]["pca"] >= first["best"]["pca"]
    other = train.TrainConfig(**{**TINY.to_dict(), "steps": 120, "store_dropout": 0.5})
    with pytest.raises(UserError, match="store_dropout=0.25, this run asks for 0.5"):  # would mix two recipes
        train.train(data, split.train, split.test, ModelConfig.small(), other, tmp_path / "ck", show_progress=False)


def test_checkpoint_of_another_feature_schema_is_refused(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    split = splits.within_task(data, seed=0)
    train.train(data, split.train, split.test, ModelConfig.small(), TINY, tmp_path / "ck", show_progress=False)
    meta_files = list((tmp_path / "ck" / "best").glob("*/metadata/metadata"))
    meta = json.loads(meta_files[0].read_text())
    meta["store_features"] = 100
    meta_files[0].write_text(json.dumps(meta))
    with pytest.raises(checkpoint.CheckpointError, match="store_features"):
        xfer_jax.load(tmp_path / "ck")
    meta["store_features"] = dataset.NUM_STORE_FEATURES
    meta["model"]["from_a_newer_version"] = 1
    meta_files[0].write_text(json.dumps(meta))
    with pytest.raises(checkpoint.CheckpointError, match="from_a_newer_version"):
        xfer_jax.load(tmp_path / "ck")
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        xfer_jax.load(tmp_path / "missing")


def test_checkpoint_loads_from_a_plain_script_without_tvm_or_training_code(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    split = splits.within_task(data, seed=0)
    train.train(data, split.train, split.test, ModelConfig.small(), TINY, tmp_path / "ck", show_progress=False)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import xfer_jax
        predictor = xfer_jax.load({str(tmp_path / 'ck')!r})
        scores = predictor.predict(np.zeros((3, 2, 164), np.float32), np.ones((3, 2), bool),
                                   np.zeros((3, {dataset.NUM_WORKLOAD_FEATURES}), np.float32),
                                   np.zeros({len(data.platforms[0]['vector'])}, np.float32),
                                   np.ones((3, 48), np.int8), np.ones((3, 48, 6), np.float32))
        assert scores.shape == (3,) and np.all(np.isfinite(scores))
        banned = [m for m in sys.modules if m == 'tvm' or m.startswith('tvm.') or m == 'xfer_jax.train']
        assert not banned, banned
        print('ok')
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_pmap_on_two_devices_matches_one_device(synthetic_dataset, tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        import jax
        from xfer_jax import dataset, splits, train
        from xfer_jax.model import ModelConfig
        data = dataset.load({str(synthetic_dataset)!r})
        split = splits.within_task(data, seed=0)
        config = train.TrainConfig(steps=40, eval_every=20, groups_per_batch=4, programs_per_group=8)
        result = train.train(data, split.train, split.test, ModelConfig.small(), config, sys.argv[1],
                             show_progress=False)
        print(json.dumps({{"devices": jax.local_device_count(), "history": result["history"]}}))
    """)
    runs = {}
    for count in (1, 2):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}"}
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path / f"ck{count}")], capture_output=True,
                             text=True, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        runs[count] = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs[1]["devices"] == 1 and runs[2]["devices"] == 2
    for one, two in zip(runs[1]["history"], runs[2]["history"]):
        assert abs(one["loss"] - two["loss"]) < 1e-3
        assert abs(one["valid_pca"] - two["valid_pca"]) < 1e-2


def test_splits_are_deterministic_and_disjoint(synthetic_dataset):
    data = dataset.load(synthetic_dataset)
    for name, holdout in [("within-task", None), ("by-task", None), ("by-network", "net-x"),
                          ("by-platform", "cpu-b")]:
        a = splits.make_split(data, name, seed=3, holdout=holdout)
        b = splits.make_split(data, name, seed=3, holdout=holdout)
        assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
        assert not set(a.train) & set(a.test)
        assert len(a.test) > 0
    by_network = splits.make_split(data, "by-network", holdout="net-x")
    held_tasks = set(data.task[by_network.test])
    assert not held_tasks & set(data.task[by_network.train])
    assert 3 in held_tasks  # task 3 is in both networks, so it is held out too
    few = splits.by_platform(data, "cpu-b", shots=4, seed=0)
    on_b = data.platform[few.train] == data.platform_names.index("cpu-b")
    assert on_b.sum() == 4 * 6


def test_eval_refuses_a_split_or_dataset_the_checkpoint_was_not_trained_on(synthetic_dataset, tmp_path):
    from helpers import synthetic_shards
    from xfer_jax.evaluate import evaluate_checkpoint

    data = dataset.load(synthetic_dataset)
    split = splits.within_task(data, seed=0)
    train.train(data, split.train, split.test, ModelConfig.small(), TINY, tmp_path / "ck", split_info={
        "name": "within-task", "holdout": [], "shots": 0, "seed": 0}, show_progress=False)
    report = evaluate_checkpoint(tmp_path / "ck", synthetic_dataset)
    assert report["split"].startswith(f"within-task: {len(split.train)} train / {len(split.test)} test")
    with pytest.raises(UserError, match="by-task test set would hold training programs"):
        evaluate_checkpoint(tmp_path / "ck", synthetic_dataset, split="by-task")
    other = synthetic_shards(tmp_path / "other", programs=30)
    with pytest.raises(UserError, match="split would differ"):
        evaluate_checkpoint(tmp_path / "ck", other)
    grown = tmp_path / "grown"  # the training dataset plus an appended shard: evaluated on what it trained on
    shutil.copytree(synthetic_dataset, grown)
    synthetic_shards(tmp_path / "more", seed=1, platforms=("cpu-c",))
    shutil.copy(tmp_path / "more" / "shard-00000.npz", grown / "shard-00002.npz")
    shutil.copy(tmp_path / "more" / "trace-00000.npz", grown / "trace-00002.npz")
    assert evaluate_checkpoint(tmp_path / "ck", grown) == report


def test_a_model_with_a_per_store_mlp_round_trips_through_its_checkpoint(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    split = splits.within_task(data, seed=0)
    config = ModelConfig(dim=16, heads=2, layers=1, hardware_tokens=2, store_hidden=24)
    result = train.train(data, split.train, split.test, config, TINY, tmp_path / "ck", show_progress=False)
    assert xfer_jax.load(tmp_path / "ck").metadata["model"]["store_hidden"] == 24
    assert_loaded_checkpoint_scores_as_trained(tmp_path / "ck", data, split, result)


def test_a_binned_model_trains_on_quantile_inputs_and_refuses_others(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    split = splits.within_task(data, seed=0)
    config = ModelConfig(dim=16, heads=2, layers=1, hardware_tokens=2, store_hidden=24, store_bins=4)
    train.train(data, split.train, split.test, config, TINY, tmp_path / "ck", show_progress=False)
    assert xfer_jax.load(tmp_path / "ck").normalizer.store_scaling == "quantile"  # chosen by store_scaling="auto"
    log_scaled = dataclasses.replace(TINY, store_scaling="log")
    with pytest.raises(UserError, match="store_bins needs store_scaling='quantile'"):
        train.train(data, split.train, split.test, config, log_scaled, tmp_path / "other", show_progress=False)
    mlp = ModelConfig(kind="mlp", use_hardware=False)  # TenSet's MLP keeps its signed-log inputs
    assert TINY.scaling_for(mlp) == "log" and TINY.scaling_for(ModelConfig()) == "quantile"


def test_train_and_eval_commands_refuse_bad_input_in_one_line(synthetic_dataset, tmp_path):
    train = ["train", "--data", str(synthetic_dataset), "--out", str(tmp_path / "ck")]
    our_checks = [train + ["--split", "by-host", "--holdout", "nosuch"],
                  ["eval", "--data", str(synthetic_dataset), "--checkpoint", str(tmp_path / "missing")]]
    for args in our_checks:
        assert_one_line(run_cli(*args))
    # a choice option is checked by typer itself, which names the option and the allowed values
    out = run_cli(*train, "--loss", "nosuch")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-800:]
    assert "'--loss'" in out.stderr and "lambdarank" in out.stderr, out.stderr[-800:]


@pytest.mark.parametrize("damage", ["params deleted", "params truncated", "metadata corrupt", "metadata missing"])
def test_a_damaged_checkpoint_is_one_line_naming_its_folder(synthetic_dataset, tmp_path, damage):
    data = dataset.load(synthetic_dataset)
    split = splits.within_task(data, seed=0)
    train.train(data, split.train, split.test, ModelConfig.small(), TINY, tmp_path / "ck", show_progress=False)
    step = next((tmp_path / "ck" / "best").glob("[0-9]*"))
    if damage == "metadata corrupt":
        (step / "metadata" / "metadata").write_text("{not json")
    elif damage == "metadata missing":
        (step / "metadata" / "metadata").unlink()
    else:
        files = sorted(p for p in (step / "params").rglob("*") if p.is_file() and p.stat().st_size > 100)
        for path in files:
            if damage == "params deleted":
                path.unlink()
            else:
                path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(checkpoint.CheckpointError, match=f"checkpoint {tmp_path / 'ck'}") as caught:
        xfer_jax.load(tmp_path / "ck")
    assert "\n" not in str(caught.value)


def test_ctrl_c_during_training_is_one_line_and_exit_code_130(synthetic_dataset, tmp_path):
    import signal
    import time

    command = CLI + ["train", "--data", str(synthetic_dataset), "--out", str(tmp_path / "ck"), "--steps", "100000",
                     "--size", "small"]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    state = tmp_path / "ck" / "state"  # the first checkpoint step folder: training is under way, not compiling
    while not (state.exists() and any(p.name.isdigit() for p in state.iterdir())) and time.time() < deadline:
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr[-800:]
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"


def test_taught_latency_ranks_as_the_teacher_and_keeps_the_measured_spread(synthetic_dataset):
    data = dataset.load(synthetic_dataset)
    index = np.flatnonzero(np.isfinite(data.latency))
    scores = np.random.default_rng(0).normal(size=len(index))
    taught = distill.taught_latency(data, index, scores, mix=1.0)
    group = index[data.group[index] == data.group[index[0]]]
    at = np.searchsorted(index, group)
    assert np.array_equal(np.argsort(taught[group]), np.argsort(-scores[at]))  # the best score is the fastest
    assert np.isclose(np.log(taught[group]).std(), np.log(data.latency[group]).std(), rtol=1e-4)
    assert np.array_equal(distill.taught_latency(data, index, scores, mix=0.0), data.latency)
    with pytest.raises(UserError, match="mix"):
        distill.taught_latency(data, index, scores, mix=1.5)


def test_distil_trains_a_student_on_the_teachers_split_and_reports_both(synthetic_dataset, tmp_path):
    teachers = [tmp_path / "t0", tmp_path / "t1"]
    for teacher, loss in zip(teachers, ("lambdarank+pairwise", "pairwise")):  # two models of one split
        train.train_and_evaluate(synthetic_dataset, "by-task", teacher, steps=20, eval_every=10, loss=loss,
                                 show_progress=False)
    result = distill.distill(teachers, synthetic_dataset, tmp_path / "student", steps=20, eval_every=10,
                             show_progress=False)
    student = xfer_jax.load(tmp_path / "student")
    assert student.config.store_bins == 0 and student.metadata["split"]["distilled_from"][1].endswith("t1")
    assert 0 <= result["test"]["pca"] <= 1 and 0 <= result["teacher_test"]["pca"] <= 1
    evaluated = evaluate.evaluate_checkpoint(tmp_path / "student", synthetic_dataset)  # its split rebuilds
    assert abs(evaluated["pca"] - result["test"]["pca"]) < 1e-6
    train.train_and_evaluate(synthetic_dataset, "within-task", tmp_path / "other", steps=10, eval_every=10,
                             show_progress=False)
    with pytest.raises(UserError, match="different splits"):
        distill.distill([teachers[0], tmp_path / "other"], synthetic_dataset, tmp_path / "s2", steps=5)


def test_distil_command_rejects_a_missing_teacher_or_a_bad_mix_in_one_line(synthetic_dataset, tmp_path):
    common = ("--data", synthetic_dataset, "--out", tmp_path / "s")
    assert_one_line(run_cli("distill", "--teacher", tmp_path / "nope", *common), "no checkpoint")
    assert_one_line(run_cli("distill", "--teacher", tmp_path / "nope", "--mix", "2", *common), "--mix")


def test_store_dropout_hides_every_store_of_whole_groups_of_trace_reading_models_only(synthetic_dataset,
                                                                                        tmp_path):
    data = dataset.load(synthetic_dataset)
    inputs = (data.features, data.mask, data.workload, data.hardware, data.trace_ids, data.trace_values)
    plain = train.GroupSampler(data, inputs, dataclasses.replace(TINY, groups_per_batch=64)).next()
    dropped = train.GroupSampler(data, inputs, dataclasses.replace(TINY, groups_per_batch=64,
                                                                   store_dropout=0.5)).next()
    hidden = ~dropped.mask.any(axis=(1, 2))  # groups whose programs show no store at all
    assert 0.2 < hidden.mean() < 0.8
    np.testing.assert_array_equal(dropped.mask[~hidden], plain.mask[~hidden])  # the others are untouched
    np.testing.assert_array_equal(dropped.trace_ids, plain.trace_ids)
    assert train.TrainConfig().store_dropout > 0  # the default: every trace-reading model can prescreen
    with pytest.raises(UserError, match="store_dropout"):  # asked for where the model reads no traces
        train.train_and_evaluate(synthetic_dataset, "within-task", tmp_path / "asked", use_trace=False,
                                 size="small", store_dropout=0.5, steps=2, show_progress=False)
    # a model without traces trains on every store under the default
    split = splits.within_task(data, seed=0)
    train.train(data, split.train, split.test, dataclasses.replace(ModelConfig.small(), trace=False),
                dataclasses.replace(TINY, steps=2), tmp_path / "ck", show_progress=False)
    assert checkpoint.load(tmp_path / "ck").metadata["train"]["store_dropout"] == 0.0
    with pytest.raises(UserError, match="store_dropout"):
        train.TrainConfig(store_dropout=1.0)


def test_hardware_noise_moves_each_groups_hardware_vector_as_one_and_only_the_entries_that_vary(synthetic_dataset):
    data = dataset.load(synthetic_dataset)
    inputs = (data.features, data.mask, data.workload, data.hardware, data.trace_ids, data.trace_values)
    config = dataclasses.replace(TINY, groups_per_batch=16, hardware_noise=0.0)
    plain = train.GroupSampler(data, inputs, config).next()
    noisy = train.GroupSampler(data, inputs, dataclasses.replace(config, hardware_noise=0.5)).next()
    shift = noisy.hardware - plain.hardware
    spread = data.hardware.std(axis=0)
    varies = spread > 1e-3  # the rest differ by float rounding only
    assert varies.any() and not varies.all()
    assert np.all(np.abs(shift[..., varies]) > 0) and np.all(np.abs(shift[..., ~varies]) <= 1e-3)
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1], shift.shape))  # one draw per group
    np.testing.assert_array_equal(noisy.features, plain.features)
    with pytest.raises(UserError, match="hardware_noise"):
        train.TrainConfig(hardware_noise=-1.0)


def test_groups_that_measured_one_program_again_and_again_are_never_drawn(synthetic_dataset):
    data = dataset.load(synthetic_dataset)
    repeated = data.group[0]
    at = np.flatnonzero(data.group == repeated)
    features, mask, trace_ids, trace_values = (x.copy() for x in (data.features, data.mask, data.trace_ids,
                                                                   data.trace_values))
    for x in (features, mask, trace_ids, trace_values):
        x[at] = x[at[0]]  # one schedule, timed len(at) times: only the noise in its latency tells them apart
    inputs = (features, mask, data.workload, data.hardware, trace_ids, trace_values)

    def groups(config):  # the groups a sampler draws from
        return {int(data.group[m[0]]) for m in train.GroupSampler(data, inputs, config).members}
    every = groups(dataclasses.replace(TINY, distinct_groups=False))
    assert repeated in every and groups(TINY) == every - {repeated}
    # a dataset of such groups alone has nothing to rank: one line that says why
    only_repeats = data.subset(at)
    with pytest.raises(UserError, match="two or more different measured programs"):
        train.GroupSampler(only_repeats, tuple(x[at] for x in inputs), TINY)
