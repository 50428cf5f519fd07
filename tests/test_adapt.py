import importlib.util
import pathlib

import numpy as np
import pytest

from xfer_jax import dataset, splits, train
from xfer_jax.adapt import (GUARDS, HeadAdapter, Measurements, OnlineAdapter, PartnerWeight, ResidualBooster,
                            StalledTasks, blend_scores, with_partner)
from xfer_jax.metrics import group_pca
from xfer_jax.model import ModelConfig

from helpers import synthetic_shards

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint folder, dataset): a small model trained on cpu-a only, so cpu-b is new hardware to adapt to."""
    root = tmp_path_factory.mktemp("adapt")
    data = dataset.load(synthetic_shards(root / "data", programs=48))
    on_a = np.flatnonzero(data.platform == data.platform_names.index("cpu-a"))
    config = train.TrainConfig(steps=40, eval_every=20, groups_per_batch=4, programs_per_group=8)
    train.train(data, on_a[::2], on_a[1::2], ModelConfig.small(), config, root / "ck", show_progress=False)
    return root / "ck", data


def _per_task(data: dataset.Dataset, platform: str) -> list[Measurements]:
    on = data.platform == data.platform_names.index(platform)
    return [Measurements(*(getattr(data, f)[index] for f in ("features", "mask", "workload", "hardware",
                                                              "trace_ids", "trace_values", "latency")))
            for t in np.unique(data.task[on]) for index in [np.flatnonzero(on & (data.task == t))]]


def test_the_held_out_quarter_is_a_property_of_each_program_not_of_its_batch(trained):
    _, data = trained
    tasks = _per_task(data, "cpu-b")
    whole = tasks[0].extend(tasks[1])
    held = whole.held_out()
    assert 0.1 < held.mean() < 0.4
    order = np.random.default_rng(0).permutation(len(held))
    np.testing.assert_array_equal(whole.take(order).held_out(), held[order])  # any regrouping, same programs


@pytest.mark.parametrize("guard", GUARDS)
def test_every_guard_keeps_or_restores_the_parameters(trained, guard):
    import jax
    import xfer_jax

    checkpoint, data = trained
    predictor = xfer_jax.load(checkpoint)
    before = jax.tree_util.tree_leaves(predictor.params)
    adapter = OnlineAdapter(predictor, time_budget_s=5.0, max_steps=4, guard=guard)
    *history, newest = _per_task(data, "cpu-b")
    kept = adapter.update(history, newest)
    assert adapter.tried == 1 and adapter.kept == int(kept)
    after = jax.tree_util.tree_leaves(predictor.params)
    changed = any(not np.array_equal(a, b) for a, b in zip(before, after))
    assert changed == kept  # a rejected update leaves the parameters exactly as they were
    if guard == "none":
        assert kept


def _embedded(predictor, m: Measurements) -> np.ndarray:
    return predictor.embed(m.features, m.mask, m.workload, m.hardware, m.trace_ids, m.trace_values)


def test_the_head_scores_embedded_programs_exactly_as_predict_does(trained):
    import xfer_jax

    predictor = xfer_jax.load(trained[0])
    task = _per_task(trained[1], "cpu-b")[0]
    embedding = _embedded(predictor, task)
    assert embedding.shape == (len(task.latency), predictor.config.dim)
    np.testing.assert_allclose(HeadAdapter(predictor).scores(embedding), task.scored_by(predictor), rtol=1e-5,
                               atol=1e-5)


def test_fine_tuning_the_head_moves_the_readout_alone_and_keeps_it_only_if_the_newest_rank_no_worse(trained):
    import jax
    import xfer_jax

    predictor = xfer_jax.load(trained[0])
    adapter = HeadAdapter(predictor, learning_rate=1e-2, steps=8)
    *history, newest = _per_task(trained[1], "cpu-b")
    for i, m in enumerate(history):
        assert not adapter.observe(f"task{i}", m, adapt=False)  # embedded, not yet trained on
    leaves = lambda: {jax.tree_util.keystr(k): np.asarray(v)  # noqa: E731
                      for k, v in jax.tree_util.tree_leaves_with_path(predictor.params)}
    before = leaves()
    kept = adapter.observe("newest", newest, adapt=True)
    moved = {path for path, value in leaves().items() if not np.array_equal(value, before[path])}
    assert adapter.tried == 1 and adapter.kept == int(kept) and bool(moved) == kept
    assert all("head_hidden" in path or "head_out" in path for path in moved)
    assert len(adapter.embedded["newest"][0]) == len(newest.latency)  # judged first, then joined the history


def test_the_head_learns_a_task_it_is_trained_on(trained):
    import xfer_jax

    predictor = xfer_jax.load(trained[0])
    adapter = HeadAdapter(predictor, learning_rate=1e-2, steps=100)
    task = _per_task(trained[1], "cpu-b")[0]
    embedding = _embedded(predictor, task)
    before = group_pca(adapter.scores(embedding), task.latency)[0]
    adapter.observe("task", task, adapt=False)
    assert adapter.observe("task", task, adapt=True)  # the same programs again: they judge what they taught
    assert group_pca(adapter.scores(embedding), task.latency)[0] > before


def test_an_unknown_guard_is_refused(trained):
    import xfer_jax

    with pytest.raises(ValueError, match="unknown guard"):
        OnlineAdapter(xfer_jax.load(trained[0]), guard="sometimes")


def test_the_adaptation_replay_bench_runs_on_a_small_dataset(trained, tmp_path):
    spec = importlib.util.spec_from_file_location("adapt_sim", ROOT / "bench" / "adapt_sim.py")
    adapt_sim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(adapt_sim)
    checkpoint, data = trained
    on_b = data.subset(data.platform == data.platform_names.index("cpu-b"))
    tasks = {t: 1.0 for t in np.unique(on_b.task)}
    frozen = adapt_sim.replay(str(checkpoint), on_b, tasks, "frozen", rounds=2, seed=0)
    quarter = adapt_sim.replay(str(checkpoint), on_b, tasks, "quarter", rounds=2, seed=0)
    assert frozen["updates"]["tried"] == 0 and quarter["updates"]["tried"] >= 1
    assert len(frozen["curve"]) == 3 and frozen["curve"][0] == frozen["curve"][-1]  # frozen: nothing changes
    assert frozen["curve"][0] == quarter["curve"][0]  # the same test halves and starting parameters
    assert all(0 <= point["pca"] <= 1 and 0 < point["top1"] <= 1 for point in quarter["curve"])
    blend = adapt_sim.replay(str(checkpoint), on_b, tasks, "blend", rounds=2, seed=0)
    assert blend["booster"]["refits"] >= 1 and "weight" in blend["curve"][-1]
    residual = adapt_sim.replay(str(checkpoint), on_b, tasks, "residual", rounds=2, seed=0)
    assert residual["booster"]["refits"] >= 1 and residual["booster"]["slope"] > 0
    assert residual["curve"][0] == frozen["curve"][0] and residual["updates"]["tried"] == 0


def test_the_online_booster_earns_a_weight_only_where_it_ranks_held_out_programs_better(trained):
    from xfer_jax.adapt import OnlineBooster

    _, data = trained
    history = _per_task(data, "cpu-b")  # latency is a learnable function of the features
    noise = np.random.default_rng(0)
    useless = OnlineBooster(rounds=30)
    assert useless.refit(history, lambda m: noise.normal(size=len(m.latency))) > 0  # random model: the booster wins
    assert useless.booster is not None and useless.refits == 1
    one = history[0]
    blended = useless.blend(noise.normal(size=len(one.latency)), one.features, one.mask)
    assert blended.shape == one.latency.shape and np.isfinite(blended).all()
    perfect = OnlineBooster(rounds=30)
    assert perfect.refit(history, lambda m: -np.where(np.isfinite(m.latency), m.latency, 1.0)) == 0.0
    scores = np.arange(len(one.latency), dtype=float)
    np.testing.assert_array_equal(perfect.blend(scores, one.features, one.mask), scores)  # no booster, no change


def test_a_task_gains_exploration_weight_each_time_it_goes_patience_measurements_without_a_better_program():
    stalls = StalledTasks(patience=3, step=1.0, cap=2.0, gain=0.01)
    assert not stalls.observe("a", np.array([4.0, 3.0, 2.0, 1.0]))  # improving: no weight
    assert not stalls.observe("a", np.array([0.995, np.inf]))  # under 1% better, a failure: 2 of 3
    assert stalls.observe("a", np.array([1.2])) and stalls.weight == {"a": 1.0}
    assert not stalls.observe("a", np.array([0.5, 0.6, 0.6]))  # a better program restarts the count, keeps the weight
    assert stalls.observe("a", np.array([0.6] * 7)) and stalls.weight["a"] == 2.0  # capped after the second stall
    assert not stalls.observe("b", np.array([1.0, 1.0])) and "b" not in stalls.weight  # tasks count apart


def test_blending_a_booster_moves_the_order_from_the_model_to_the_booster_as_its_weight_grows():
    model, booster = np.array([3.0, 2.0, 1.0, 0.0]), np.array([0.0, 1.0, 2.0, 3.0])
    assert np.argsort(-blend_scores(model, booster, 0.0)).tolist() == [0, 1, 2, 3]
    assert np.argsort(-blend_scores(model, booster, 4.0)).tolist() == [3, 2, 1, 0]


def test_a_partner_blend_keeps_the_models_scale_and_moves_the_order_with_the_weight():
    model, partner = np.array([30.0, 20.0, 10.0, 0.0]), np.array([0.0, 1.0, 2.0, 3.5])
    np.testing.assert_allclose(with_partner(model, partner, 1.0), model, atol=1e-12)
    assert np.argsort(-with_partner(model, partner, 0.0)).tolist() == [3, 2, 1, 0]
    even = with_partner(model, partner, 0.5)
    assert even.mean() == pytest.approx(model.mean()) and even.std() == pytest.approx(model.std())
    assert with_partner(model[:1], partner[:1], 0.0).tolist() == [30.0]  # one candidate: the model's score


@pytest.mark.parametrize("model_ranks", [True, False])
def test_the_partner_weight_moves_to_whichever_ranked_the_new_batches_better_once_enough_pairs_came(model_ranks):
    rng = np.random.default_rng(0)
    chooser = PartnerWeight(min_pairs=100)
    weights = []
    for _ in range(6):  # batches of 8: 28 pairs each
        latency = rng.uniform(1, 2, 8)
        right, noise = -latency, rng.normal(size=8)
        model, partner = (right, noise) if model_ranks else (noise, right)
        weights.append(chooser.observe(model, partner, latency))
    assert weights[:3] == [0.5] * 3  # 84 pairs: not enough to leave the even blend
    assert weights[-1] == (1.0 if model_ranks else 0.0)
    fixed = PartnerWeight(0.25, min_pairs=1)
    assert not fixed.online and fixed.observe(model, partner, latency) == 0.25 and fixed.pairs == 0


def test_residual_trees_correct_a_model_that_ranks_badly_and_keep_one_that_ranks_well(trained):
    from xfer_jax import metrics

    _, data = trained
    history = dict(enumerate(_per_task(data, "cpu-b")))  # latency is a (roughly) learnable function of the features
    noise = np.random.default_rng(0)

    def mean_pca(residual, model_scores):
        finite = {task: m.take(np.isfinite(m.latency)) for task, m in history.items()}
        return np.mean([metrics.pca(residual.score(task, model_scores(m), m.features, m.mask), m.latency,
                                    np.zeros(len(m.latency))) for task, m in finite.items()])

    def random_model(m):
        return noise.normal(size=len(m.latency))

    def right_model(m):
        return -np.log(np.where(np.isfinite(m.latency), m.latency, 1.0))

    blind = ResidualBooster(rounds=30)
    blind.refit(history, random_model)  # a model that knows nothing here: the trees rank alone
    assert blind.refits == 1 and blind.slope == blind.min_slope and set(blind.units) == set(history)
    assert mean_pca(blind, random_model) > 0.6  # the random model alone: 0.5
    right = ResidualBooster(rounds=30)
    right.refit(history, right_model)
    assert right.slope > 4 * right.min_slope and mean_pca(right, right_model) > 0.85
    one = history[0]
    model = np.arange(len(one.latency), dtype=float)
    np.testing.assert_array_equal(blind.score("never measured", model, one.features, one.mask), model)


def test_trees_fitted_with_an_offset_learn_only_what_the_offset_misses():
    from xfer_jax.baselines import PackSumXGB

    rng = np.random.default_rng(0)
    features, mask = rng.random((64, 3, 5)).astype(np.float32), np.ones((64, 3), bool)
    labels = (0.2 + 0.6 * features[:, :, 0].mean(1)).astype(np.float32)
    alone = PackSumXGB(rounds=40).fit(features, mask, labels).predict(features, mask)
    assert np.abs(alone - labels).mean() < 0.02  # without an offset the trees fit the labels
    corrections = PackSumXGB(rounds=40).fit(features, mask, labels, offset=labels).predict(features, mask)
    assert np.abs(corrections).max() < 0.02  # an offset that is already right leaves nothing to correct
