import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from xfer_jax import dataset
from xfer_jax.hardware import NUM_HARDWARE_FEATURES
from xfer_jax.model import ModelConfig, build_model


def _inputs(n=6, stores=3, seed=0):
    rng = np.random.default_rng(seed)
    features = jnp.asarray(rng.normal(size=(n, stores, dataset.NUM_STORE_FEATURES)), jnp.float32)
    workload = jnp.asarray(rng.normal(size=(n, dataset.NUM_WORKLOAD_FEATURES)), jnp.float32)
    return features, workload


@pytest.mark.parametrize("fusion", [{"hardware_in_stores": True, "hardware_cross": False},
                                    {"hardware_film": True, "hardware_cross": False}, {}])
def test_every_hardware_path_makes_the_score_depend_on_the_hardware(fusion):
    features, workload = _inputs()
    mask = jnp.ones(features.shape[:2], bool)
    model = build_model(ModelConfig(store_hidden=16, **fusion), nnx.Rngs(0))
    one = model(features, mask, workload, jnp.zeros((1, NUM_HARDWARE_FEATURES)))
    other = model(features, mask, workload, jnp.ones((1, NUM_HARDWARE_FEATURES)))
    per_program = model(features, mask, workload, jnp.zeros((len(features), NUM_HARDWARE_FEATURES)))
    assert np.abs(np.asarray(one - other)).max() > 1e-4
    np.testing.assert_allclose(one, per_program, rtol=1e-5, atol=1e-6)  # [1,H] is shared by the batch


def test_without_hardware_input_the_hardware_vector_changes_nothing():
    features, workload = _inputs()
    mask = jnp.ones(features.shape[:2], bool)
    model = build_model(ModelConfig(use_hardware=False, hardware_in_stores=True, hardware_film=True), nnx.Rngs(0))
    np.testing.assert_array_equal(model(features, mask, workload, jnp.zeros((1, NUM_HARDWARE_FEATURES))),
                                  model(features, mask, workload, jnp.ones((1, NUM_HARDWARE_FEATURES))))


def test_logsumexp_readout_adds_the_time_of_an_extra_store_and_ignores_padding():
    features, workload = _inputs(stores=2)
    hardware = jnp.zeros((1, NUM_HARDWARE_FEATURES))
    model = build_model(ModelConfig(layers=0, readout="logsumexp"), nnx.Rngs(0))  # stores do not mix
    one_store = model(features, jnp.array([[True, False]] * len(features)), workload, hardware)
    two_stores = model(features, jnp.ones((len(features), 2), bool), workload, hardware)
    assert (np.asarray(two_stores) < np.asarray(one_store)).all()  # one more store takes more time
    padded = model(features[:, :1], jnp.ones((len(features), 1), bool), workload, hardware)
    np.testing.assert_allclose(one_store, padded, rtol=1e-5)


def test_an_unknown_readout_is_refused():
    with pytest.raises(ValueError, match="unknown readout 'max'"):
        build_model(ModelConfig(readout="max"), nnx.Rngs(0))
