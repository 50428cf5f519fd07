import numpy as np

from xfer_jax import metrics


def test_pca_counts_correct_pairs_and_excludes_ties():
    latency = np.array([1.0, 2.0, 3.0, 3.0])
    scores = np.array([3.0, 1.0, 2.0, 0.0])  # pairs: (0,1) ok, (0,2) ok, (0,3) ok, (1,2) wrong, (1,3) ok
    value, pairs = metrics.group_pca(scores, latency)
    assert pairs == 5  # the tied pair (2,3) is excluded
    assert value == 4 / 5


def test_pca_weights_groups_by_size_and_ignores_singletons_and_failures():
    latency = np.array([1.0, 2.0, 1.0, 2.0, 3.0, 5.0, np.inf])
    group = np.array([0, 0, 1, 1, 1, 2, 1])
    scores = np.array([1.0, 0.0, 0.0, 1.0, 2.0, 9.0, 100.0])  # group 0 right, group 1 all wrong
    assert np.isclose(metrics.pca(scores, latency, group), (1.0 * 2 + 0.0 * 3) / 5)


def test_topk_score_is_one_when_best_program_is_in_top_k():
    latency = np.array([1.0, 2.0, 4.0, 1.0, 3.0])
    task = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.0, 1.0, 2.0, 5.0, 0.0])
    assert metrics.topk_score(scores, latency, task, {0: 1, 1: 1}, k=3) == 1.0
    # top-1 picks latency 4 for task 0 and 1 for task 1: (1 + 1) / (4 + 1)
    assert np.isclose(metrics.topk_score(scores, latency, task, {0: 1, 1: 1}, k=1), 2 / 5)
    # weights count: task 0 occurs 3 times
    assert np.isclose(metrics.topk_score(scores, latency, task, {0: 3, 1: 1}, k=1), (3 + 1) / (12 + 1))


def test_topk_score_skips_failed_programs_and_absent_tasks():
    latency = np.array([np.inf, 2.0])
    scores = np.array([9.0, 0.0])
    assert metrics.topk_score(scores, latency, np.array([0, 0]), {0: 1, 7: 1}, k=1) == 1.0
    assert metrics.topk_score(scores, latency, np.array([0, 0]), {7: 1}, k=1) is None


def test_zscore_puts_scores_on_one_scale_and_leaves_constant_scores_at_zero():
    z = metrics.zscore(np.array([1.0, 2.0, 3.0, 6.0]))
    assert np.isclose(z.mean(), 0.0) and np.isclose(z.std(), 1.0) and np.all(np.diff(z) > 0)
    assert np.array_equal(metrics.zscore(np.full(3, 7.0, np.float32)), np.zeros(3))
