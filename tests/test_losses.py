import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xfer_jax import losses


def test_lambdarank_matches_hand_computed_case():
    # worse program ranked first: |dNDCG| = |(1-.5)(1/log2(3)-1)| / (1 + .5/log2(3)), times log(1+e)
    delta = abs(0.5 * (1 / np.log2(3) - 1)) / (1 + 0.5 / np.log2(3))
    expected = delta * np.log1p(np.e)
    got = losses.lambdarank(jnp.array([[0.0, 1.0]]), jnp.array([[1.0, 0.5]]))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(expected, 0.1842, atol=1e-4)


def test_pairwise_logistic_matches_docstring_example():
    got = losses.pairwise_logistic(jnp.array([[2.0, 0.0]]), jnp.array([[1.0, 0.5]]))
    np.testing.assert_allclose(got, np.log1p(np.exp(-2.0)), rtol=1e-6)


@pytest.mark.parametrize("loss", list(losses.LOSSES))
def test_losses_ignore_fully_masked_groups(loss):
    scores = jnp.array([[0.3, 0.1, 0.9], [5.0, -5.0, 2.0]])
    labels = jnp.array([[1.0, 0.2, 0.5], [0.1, 1.0, 0.4]])
    where = jnp.array([[True, True, True], [False, False, False]])
    alone = losses.LOSSES[loss](scores[:1], labels[:1], where=where[:1])
    np.testing.assert_allclose(losses.LOSSES[loss](scores, labels, where=where), alone, rtol=1e-6)


@pytest.mark.parametrize("loss", ["lambdarank", "pairwise"])
def test_ranking_loss_of_groups_of_one_is_zero_with_finite_gradient(loss):
    fn = losses.LOSSES[loss]
    scores = jnp.array([[0.7, 0.0], [0.2, 0.0]])
    where = jnp.array([[True, False], [True, False]])
    value, grad = jax.value_and_grad(lambda s: fn(s, jnp.ones((2, 2)), where=where))(scores)
    assert value == 0.0
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("loss", list(losses.LOSSES))
def test_gradients_stay_finite_for_extreme_scores(loss):
    scores = jnp.array([[1e4, -1e4, 0.0, 3e3]])
    labels = jnp.array([[1e-6, 1.0, 0.5, 0.999]])
    grad = jax.grad(lambda s: losses.LOSSES[loss](s, labels))(scores)
    assert np.all(np.isfinite(grad))


def test_lambdarank_prefers_correct_order():
    labels = jnp.array([[1.0, 0.6, 0.3, 0.1]])
    good = losses.lambdarank(jnp.array([[3.0, 2.0, 1.0, 0.0]]), labels)
    bad = losses.lambdarank(jnp.array([[0.0, 1.0, 2.0, 3.0]]), labels)
    assert good < bad


def test_lambdarank_weights_top_mistakes_more_than_bottom_mistakes():
    labels = jnp.array([[1.0, 0.9, 0.2, 0.1]])
    swap_top = losses.lambdarank(jnp.array([[2.0, 3.0, 1.0, 0.0]]), labels)
    swap_bottom = losses.lambdarank(jnp.array([[3.0, 2.0, 0.0, 1.0]]), labels)
    assert swap_top > swap_bottom
