import jax.numpy as jnp
import numpy as np
import pytest

from xfer_jax.hardware import HardwareDescriptor, RELATIVE_FEATURE_NAMES, hardware_vector, relative_store_features
from xfer_jax.normalize import Normalizer


def _data(seed=0, n=200):
    rng = np.random.default_rng(seed)
    features = (np.abs(rng.normal(size=(n, 3, 164))) * 10).astype(np.float32)
    features[:, :, 7] = 0.0  # a column that never varies
    mask = rng.random((n, 3)) < 0.7
    return features, mask, rng.normal(size=(n, 20)).astype(np.float32), rng.normal(size=(n, 19)).astype(np.float32)


@pytest.mark.parametrize("scaling", ["log", "linear", "quantile"])
def test_every_scaling_standardises_training_rows_or_maps_them_into_0_1_and_round_trips_through_json(scaling):
    features, mask, workload, hardware = _data()
    normalizer = Normalizer.fit(features, mask, workload, hardware, store_scaling=scaling)
    rows = normalizer.apply(features, mask, workload, hardware)[0][mask]
    if scaling == "quantile":  # the training CDF: uniform on [0, 1] (mean 1/2) wherever the column varies
        varied = rows[:, np.arange(164) != 7]
        assert varied.min() >= 0 and varied.max() <= 1 and np.abs(varied.mean(0) - 0.5).max() < 0.02
    else:
        assert np.abs(rows.mean(0)).max() < 1e-3 and np.abs(rows.std(0)[np.arange(164) != 7] - 1).max() < 1e-2
    again = Normalizer.from_dict(normalizer.to_dict())
    np.testing.assert_array_equal(again.apply(features, mask, workload, hardware)[0],
                                  normalizer.apply(features, mask, workload, hardware)[0])
    in_jit = normalizer.apply(*(jnp.asarray(x) for x in (features, mask, workload, hardware)), xp=jnp)[0]
    np.testing.assert_allclose(in_jit, normalizer.apply(features, mask, workload, hardware)[0], atol=1e-4)


def test_quantile_scaling_saturates_outside_the_training_range_and_keeps_the_order_inside():
    features, mask, workload, hardware = _data()
    normalizer = Normalizer.fit(features, mask, workload, hardware, store_scaling="quantile")
    seen_max = normalizer.apply(features, mask, workload, hardware)[0][mask].max(0)
    far = normalizer.apply(features * 1000, mask, workload, hardware)[0][mask]
    assert (far.max(0) <= seen_max + 1e-3).all()  # a tree would put it in its last leaf, and so do we
    column = np.sort(features[mask][:, 3])
    probe = np.zeros((len(column), 1, 164), np.float32)
    probe[:, 0, 3] = column
    mapped = normalizer.apply(probe, np.ones((len(column), 1), bool), workload[:1], hardware[:1])[0][:, 0, 3]
    assert (np.diff(mapped) >= -1e-6).all()


def test_a_checkpoint_before_store_scaling_reads_as_log():
    features, mask, workload, hardware = _data()
    old = Normalizer.fit(features, mask, workload, hardware).to_dict()
    del old["store_scaling"]
    assert Normalizer.from_dict(old).store_scaling == "log"


def test_an_unknown_scaling_is_refused():
    with pytest.raises(ValueError, match="unknown store scaling 'cube'"):
        Normalizer.fit(*_data(), store_scaling="cube")


def test_hardware_entries_that_never_varied_in_training_are_zeroed_when_asked():
    features, mask, workload, _ = _data(n=4)
    hardware = np.array([[1.0, 2.0, 3.0], [1.0, 5.0, 3.0]] * 2, np.float32)  # only the middle entry varies
    kept = Normalizer.fit(features, mask, workload, hardware)
    varied = Normalizer.fit(features, mask, workload, hardware, only_varied_hardware=True)
    unseen = np.array([[9.0, 9.0, 9.0]], np.float32)
    np.testing.assert_allclose(varied.apply(features[:1], mask[:1], workload[:1], unseen)[3], [[0.0, 5.5, 0.0]])
    np.testing.assert_allclose(kept.apply(features[:1], mask[:1], workload[:1], unseen)[3], [[8.0, 5.5, 6.0]])
    assert Normalizer.from_dict(varied.to_dict()).hardware_varied.tolist() == [0.0, 1.0, 0.0]
    assert Normalizer.from_dict(kept.to_dict()).hardware_varied is None


def test_relative_features_compare_a_store_with_the_machines_caches_threads_and_lanes():
    machine = hardware_vector(HardwareDescriptor("cpu", vector_bits=512, threads=4, l1_kib=32, l2_kib=1024,
                                                 l3_kib=32768))
    row = np.zeros(164, np.float32)
    row[18] = np.log2(1 + 16)  # PerStoreFeature's vector length: 16, the lanes of AVX-512
    row[39] = np.log2(1 + 64)  # its parallel product: 64 iterations for 4 threads
    row[57 + 11] = np.log2(1 + 2**20)  # its first buffer is reused after 1 MiB, the size of this L2
    relative = dict(zip(RELATIVE_FEATURE_NAMES, relative_store_features(row, machine)))
    assert abs(relative["vector_length/lanes"]) < 1e-6
    assert abs(relative["parallel_prod/threads"] - np.log2(64 / 4)) < 0.35  # log2(1+x) of both
    for cache, expected in (("l1", 5.0), ("l2", 0.0), ("l3", -5.0)):
        assert abs(relative[f"buffer0_reuse_distance_bytes/{cache}"] - expected) < 0.1


def test_relative_columns_join_every_store_row_alike_in_numpy_and_in_jit_and_survive_json():
    features, mask, workload, hardware = _data()
    normalizer = Normalizer.fit(features, mask, workload, hardware, store_scaling="quantile", relative=True)
    store = normalizer.apply(features, mask, workload, hardware)[0]
    assert store.shape == (*features.shape[:2], 164 + len(RELATIVE_FEATURE_NAMES))
    assert (store[~mask] == 0).all() and store[mask][:, 164:].std(0).min() > 0.1  # they vary with the machine
    again = Normalizer.from_dict(normalizer.to_dict())
    assert again.relative and not Normalizer.fit(features, mask, workload, hardware).relative
    np.testing.assert_array_equal(again.apply(features, mask, workload, hardware)[0], store)
    in_jit = normalizer.apply(*(jnp.asarray(x) for x in (features, mask, workload, hardware)), xp=jnp)[0]
    np.testing.assert_allclose(in_jit, store, atol=1e-4)
    one_machine = normalizer.apply(features, mask, workload, hardware[:1])[0]
    np.testing.assert_allclose(one_machine, normalizer.apply(features, mask, workload,
                                                             np.repeat(hardware[:1], len(mask), 0))[0])
