import numpy as np

from xfer_jax.cascade import cascade_scores, prescreen, search_weights


def test_scores_reach_the_search_positive_and_in_the_model_order():
    scores = np.array([-40.0, -5.0, -4.9, 0.0, 3.0, 14.0])  # TVM clips at 0 and samples parents by weight
    weights = search_weights(scores)
    assert (weights > 0).all() and (np.diff(weights) > 0).all()
    np.testing.assert_allclose(weights[-1], 14.0, rtol=1e-6)  # high scores pass through nearly unchanged


def test_the_cascade_ranks_the_prescreened_best_by_the_whole_model_above_all_the_others():
    cheap = np.array([0.1, 5.0, -3.0, 4.0, 2.0, -1.0, 3.0])
    top, rest = prescreen(cheap, 0.4)  # ceil(0.4 * 7) = 3 pass: cheap's best three
    assert sorted(top) == [1, 3, 6] and list(rest) == [4, 0, 5, 2]
    full_top = np.array([-2.0, 1.0, 0.5])  # the whole model reverses candidates 1 and 3
    scores = cascade_scores(cheap, top, rest, full_top)
    assert (scores > 0).all()
    assert scores[rest].max() < scores[top].min()
    assert list(np.argsort(-scores)) == [3, 6, 1, 4, 0, 5, 2]
    assert len(prescreen(cheap, 0.01)[0]) == 1  # at least one passes
