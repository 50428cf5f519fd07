import numpy as np

from xfer_jax import dataset, metrics, study
from xfer_jax.baselines import PackSumXGB


def test_pack_sum_xgb_learns_a_throughput_that_is_a_sum_over_stores():
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


def test_study_compares_models_on_the_same_split(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    results = study.compare(data, ["by-task"], ["mlp", "xgb"], steps=40, work=tmp_path, log=lambda *_: None)
    assert list(results) == ["by-task"]
    for model in ("mlp", "xgb"):
        row = results["by-task"][model]
        assert 0.0 <= row["pca"] <= 1.0 and 0.0 < row["top5"] <= 1.0
    # both models were scored on exactly the same test programs
    assert results["by-task"]["mlp"]["programs"] == results["by-task"]["xgb"]["programs"]


def test_by_platform_specs_cover_every_platform_and_shot_budget(synthetic_dataset):
    data = dataset.load(synthetic_dataset)
    specs = study.split_specs(data, ["by-platform"])
    assert [(s.held_out[0], s.name) for s in specs] == [
        (p, f"by-platform-k{k}") for p in data.platform_names for k in study.SHOTS]
