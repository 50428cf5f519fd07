import json

import numpy as np
import pytest

from xfer_jax import dataset, metrics, splits, study
from xfer_jax.baselines import PackSumXGB
from xfer_jax.errors import UserError

from helpers import run_cli, synthetic_shards


def test_pack_sum_xgb_learns_a_throughput_that_is_a_sum_over_stores_and_reloads(tmp_path):
    rng = np.random.default_rng(0)
    n, stores = 600, 3
    features = rng.random((n, stores, dataset.NUM_STORE_FEATURES)).astype(np.float32)
    mask = np.arange(stores)[None, :] < rng.integers(1, stores + 1, size=n)[:, None]
    throughput = (np.where(mask, features[:, :, 0] ** 2, 0.0)).sum(1)  # what pack-sum assumes
    label = throughput / throughput.max()
    model = PackSumXGB(rounds=100).fit(features[:400], mask[:400], label[:400])
    scores = model.predict(features[400:], mask[400:])
    assert scores.shape == (200,)
    assert metrics.pca(scores, 1.0 / throughput[400:], np.zeros(200, np.int32)) > 0.85
    saved = tmp_path / "booster.json"
    saved.write_bytes(model.to_json())  # what tune's cache writes whole
    np.testing.assert_allclose(PackSumXGB.load(saved).predict(features[400:], mask[400:]), scores, rtol=1e-6)


def test_a_damaged_booster_file_is_one_user_error_not_an_xgboost_traceback(tmp_path):
    damaged = tmp_path / "pretrained.json"
    damaged.write_text('{"learner": ')
    with pytest.raises(UserError, match="pretrained.json is not a readable XGBoost model"):
        PackSumXGB.load(damaged)


def test_study_compares_models_on_the_same_split_and_caches_results(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    runner = study.Study(data, tmp_path / "work", steps=40, log=lambda *_: None)
    results = runner.compare(["by-task"], ["mlp", "xgb"])
    assert list(results) == ["by-task"]
    for model in ("mlp", "xgb"):
        row = results["by-task"][model]
        assert 0.0 <= row["pca"] <= 1.0 and 0.0 < row["top5"] <= 1.0
    # both models were scored on exactly the same test programs
    assert results["by-task"]["mlp"]["programs"] == results["by-task"]["xgb"]["programs"]
    cached = list((runner.work / "results").glob("*.json"))
    assert len(cached) == 2
    assert study.Study(data, tmp_path / "work", steps=40, log=lambda *_: None).compare(["by-task"], ["mlp", "xgb"]) \
        == results


def test_transfer_fine_tunes_from_the_zero_shot_model_and_keeps_one_test_set(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    runner = study.Study(data, tmp_path / "work", steps=30, finetune_steps=10, log=lambda *_: None)
    results = runner.transfer(["cpu-b"], ["mlp-onehot", "xgb-target"], shots=(0, 4))
    assert results["cpu-b"]["k0"]["xgb-target"] is None  # nothing of cpu-b to train on
    assert results["cpu-b"]["k4"]["xgb-target"]["pca"] > 0
    assert results["cpu-b"]["k0"]["mlp-onehot"]["programs"] == results["cpu-b"]["k4"]["mlp-onehot"]["programs"]
    zero = runner.checkpoint("mlp-onehot", splits.by_platform(data, "cpu-b", shots=0))
    assert (zero / "done").exists()
    # its split spec rebuilds its test set
    done = run_cli("eval", "--checkpoint", zero, "--data", synthetic_dataset, "--json", tmp_path / "eval.json")
    assert done.returncode == 0, done.stderr
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["split"].startswith("by-platform-k0:") and "cpu-b" in evaluated["split"]
    assert abs(evaluated["pca"] - results["cpu-b"]["k0"]["mlp-onehot"]["pca"]) < 1e-4
    flat = study.Study.flatten_transfer(results)
    assert set(flat) == {"by-platform-k0/cpu-b", "by-platform-k4/cpu-b", "by-platform-k0/mean", "by-platform-k4/mean"}


def test_one_hot_platform_code_replaces_the_hardware_vector(synthetic_dataset):
    data = dataset.load(synthetic_dataset)
    coded = study.one_hot_platforms(data)
    assert np.array_equal(coded.hardware.argmax(1), data.platform)
    assert np.array_equal(coded.hardware.sum(1), np.ones(len(data)))


def test_xgb_with_hardware_ranks_programs_whose_order_flips_between_two_configs():
    rng = np.random.default_rng(1)
    n = 800
    features = rng.random((n, 1, dataset.NUM_STORE_FEATURES)).astype(np.float32)
    mask = np.ones((n, 1), bool)
    hardware = np.repeat(np.eye(2, 3, dtype=np.float32), n // 2, axis=0)  # two configs
    # on config 0 feature 0 makes a program fast, on config 1 it makes it slow
    throughput = np.where(hardware[:, 0] > 0, features[:, 0, 0], 1.0 - features[:, 0, 0]) + 0.1
    group = hardware[:, 1].astype(np.int32)
    train, test = np.arange(n) % 4 != 0, np.arange(n) % 4 == 0
    blind = PackSumXGB(rounds=60).fit(features[train], mask[train], throughput[train])
    joint = PackSumXGB(rounds=60).fit(features[train], mask[train], throughput[train], hardware[train])
    pca_blind = metrics.pca(blind.predict(features[test], mask[test]), 1 / throughput[test], group[test])
    pca_joint = metrics.pca(joint.predict(features[test], mask[test], hardware[test]), 1 / throughput[test],
                            group[test])
    assert pca_joint > 0.9 and pca_blind < 0.65


def test_collection_simulation_fine_tunes_on_chosen_programs_of_the_held_out_host(tmp_path):
    data = dataset.load(synthetic_shards(tmp_path / "data", platforms=("a@h1", "b@h1", "c@h2")))
    runner = study.Study(data, tmp_path / "work", steps=30, finetune_steps=10, log=lambda *_: None)
    results = runner.collection("h2", ["random", "top-spread"], shots=(3, 8), model="noHW")
    assert set(results) == {"k0", "random-k3", "random-k8", "top-spread-k3", "top-spread-k8"}
    groups_on_h2 = len(np.unique(data.group[data.platform == data.platform_names.index("c@h2")]))
    assert results["random-k3"]["measured"] == 3 * groups_on_h2
    assert results["top-spread-k8"]["measured"] == 8 * groups_on_h2
    test_programs = {r["programs"] for r in results.values()}
    assert len(test_programs) == 1  # one test half for every method and k
    again = study.Study(data, tmp_path / "work", steps=30, finetune_steps=10, log=lambda *_: None)
    assert again.collection("h2", ["random"], shots=(3,), model="noHW")["random-k3"]["pca"] == results["random-k3"]["pca"]


def test_cached_study_results_are_keyed_by_the_hardware_vectors_too(tmp_path):
    root = synthetic_shards(tmp_path / "data")
    before = study.fingerprint(dataset.load(root))
    assert study.fingerprint(dataset.load(root)) == before
    dataset.append_measured_hardware(root, [{"platform": dataset.load(root).platform_names[0], "collection": "c",
                                             "reference_gflops": 20.0}])
    assert study.fingerprint(dataset.load(root)) != before  # same programs, another hardware input
