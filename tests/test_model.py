import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from xfer_jax import dataset
from xfer_jax.hardware import NUM_HARDWARE_FEATURES
from xfer_jax.model import ModelConfig, build_model, piecewise_linear_bins


def _inputs(n=6, stores=3, seed=0, columns=ModelConfig().store_columns):
    """Normalised store rows as the default model reads them: PerStoreFeature's, then the relative features."""
    rng = np.random.default_rng(seed)
    features = jnp.asarray(rng.normal(size=(n, stores, columns)), jnp.float32)
    workload = jnp.asarray(rng.normal(size=(n, dataset.NUM_WORKLOAD_FEATURES)), jnp.float32)
    return features, workload


@pytest.mark.parametrize("fusion", [{"hardware_in_stores": True, "hardware_cross": False},
                                    {"hardware_film": True, "hardware_cross": False}, {}])
def test_every_hardware_path_makes_the_score_depend_on_the_hardware(fusion):
    features, workload = _inputs()
    mask = jnp.ones(features.shape[:2], bool)
    model = build_model(ModelConfig(store_hidden=16, trace=False, **fusion), nnx.Rngs(0))
    one = model(features, mask, workload, jnp.zeros((1, NUM_HARDWARE_FEATURES)))
    other = model(features, mask, workload, jnp.ones((1, NUM_HARDWARE_FEATURES)))
    per_program = model(features, mask, workload, jnp.zeros((len(features), NUM_HARDWARE_FEATURES)))
    assert np.abs(np.asarray(one - other)).max() > 1e-4
    np.testing.assert_allclose(one, per_program, rtol=1e-5, atol=1e-6)  # [1,H] is shared by the batch


def test_without_hardware_input_the_hardware_vector_changes_nothing():
    features, workload = _inputs(columns=dataset.NUM_STORE_FEATURES)
    mask = jnp.ones(features.shape[:2], bool)
    model = build_model(ModelConfig(use_hardware=False, hardware_in_stores=True, hardware_film=True, trace=False), nnx.Rngs(0))
    np.testing.assert_array_equal(model(features, mask, workload, jnp.zeros((1, NUM_HARDWARE_FEATURES))),
                                  model(features, mask, workload, jnp.ones((1, NUM_HARDWARE_FEATURES))))


def test_logsumexp_readout_adds_the_time_of_an_extra_store_and_ignores_padding():
    features, workload = _inputs(stores=2)
    hardware = jnp.zeros((1, NUM_HARDWARE_FEATURES))
    model = build_model(ModelConfig(layers=0, readout="logsumexp", trace=False), nnx.Rngs(0))  # stores do not mix
    one_store = model(features, jnp.array([[True, False]] * len(features)), workload, hardware)
    two_stores = model(features, jnp.ones((len(features), 2), bool), workload, hardware)
    assert (np.asarray(two_stores) < np.asarray(one_store)).all()  # one more store takes more time
    padded = model(features[:, :1], jnp.ones((len(features), 1), bool), workload, hardware)
    np.testing.assert_allclose(one_store, padded, rtol=1e-5)


def test_an_unknown_readout_is_refused():
    with pytest.raises(ValueError, match="unknown readout 'max'"):
        build_model(ModelConfig(readout="max"), nnx.Rngs(0))


def test_piecewise_linear_bins_fill_in_order_and_average_back_to_the_input():
    x = jnp.array([[0.0, 0.3, 0.5, 1.0]])
    bins = np.asarray(piecewise_linear_bins(x, 4)).reshape(4, 4)
    np.testing.assert_allclose(bins[1], [1.0, 0.2, 0.0, 0.0], atol=1e-6)  # 0.3 fills the first bin, 0.2 of the next
    np.testing.assert_allclose(bins.mean(-1), x[0], atol=1e-6)
    assert (np.diff(bins, axis=-1) <= 0).all()


def test_a_binned_model_scores_padded_programs_like_their_unpadded_selves():
    features, workload = _inputs(stores=3)
    features = jnp.clip(features * 0.2 + 0.5, 0.0, 1.0)  # quantile-scaled inputs live in [0, 1]
    model = build_model(ModelConfig(store_hidden=16, store_bins=4, trace=False), nnx.Rngs(0))
    hardware = jnp.zeros((1, NUM_HARDWARE_FEATURES))
    short = model(features[:, :2], jnp.ones((len(features), 2), bool), workload, hardware)
    padded = features.at[:, 2].set(0.0)
    mask = jnp.ones(features.shape[:2], bool).at[:, 2].set(False)
    np.testing.assert_allclose(model(padded, mask, workload, hardware), short, rtol=1e-4, atol=1e-5)


def test_a_trace_reading_model_scores_by_the_tokens_and_ignores_padding_tokens():
    from xfer_jax.trace import MAX_TOKENS, TOKEN_VALUES

    features, workload = _inputs()
    mask, hardware = jnp.ones(features.shape[:2], bool), jnp.zeros((1, NUM_HARDWARE_FEATURES))
    rng = np.random.default_rng(1)
    ids = np.where(np.arange(MAX_TOKENS) < 10, rng.integers(1, 20, (len(features), MAX_TOKENS)), 0).astype(np.int8)
    values = rng.normal(size=(len(features), MAX_TOKENS, TOKEN_VALUES)).astype(np.float32)
    model = build_model(ModelConfig(trace=True), nnx.Rngs(0))
    scores = model(features, mask, workload, hardware, ids, values)
    other_values = values.copy()
    other_values[:, :10] += 1.0
    assert np.abs(np.asarray(scores - model(features, mask, workload, hardware, ids, other_values))).max() > 1e-4
    padding_changed = values.copy()
    padding_changed[:, 10:] += 5.0  # behind id 0: padding
    np.testing.assert_allclose(scores, model(features, mask, workload, hardware, ids, padding_changed), rtol=1e-5,
                               atol=1e-6)



def test_a_trace_only_model_ignores_the_store_rows_and_needs_some_program_input():
    from xfer_jax.trace import MAX_TOKENS, TOKEN_VALUES

    features, workload = _inputs()
    mask, hardware = jnp.ones(features.shape[:2], bool), jnp.zeros((1, NUM_HARDWARE_FEATURES))
    rng = np.random.default_rng(2)
    ids = rng.integers(1, 20, (len(features), MAX_TOKENS)).astype(np.int8)
    values = rng.normal(size=(len(features), MAX_TOKENS, TOKEN_VALUES)).astype(np.float32)
    model = build_model(ModelConfig(stores=False), nnx.Rngs(0))
    scores = model(features, mask, workload, hardware, ids, values)
    np.testing.assert_array_equal(scores, model(features + 3.0, mask, workload, hardware, ids, values))
    assert np.abs(np.asarray(scores - model(features, mask, workload, hardware, ids, values + 1.0))).max() > 1e-4
    assert np.unique(np.asarray(scores)).size == len(features)  # the programs are told apart by their traces
    with pytest.raises(ValueError, match="no program input"):
        build_model(ModelConfig(stores=False, trace=False), nnx.Rngs(0))
