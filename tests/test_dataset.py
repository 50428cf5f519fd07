import json
import pathlib

import numpy as np
import pytest

from xfer_jax import dataset as ds

from helpers import META_STILL_READABLE, SHARD_DAMAGES, damage_shard, synthetic_shards


def test_shards_round_trip_with_padding_masks_and_group_labels(synthetic_dataset):
    data = ds.load(synthetic_dataset)
    assert data.features.shape == (2 * 6 * 24, 3, ds.NUM_STORE_FEATURES)
    assert data.mask.shape == data.features.shape[:2]
    assert np.all(data.features[~data.mask] == 0)
    assert np.all(data.mask.sum(1) >= 1)
    ok = np.isfinite(data.latency)
    assert np.all(data.label[~ok] == 0)
    for g in np.unique(data.group):
        members = ok & (data.group == g)
        assert np.isclose(data.label[members].max(), 1.0)
        assert np.allclose(data.label[members], data.latency[members].min() / data.latency[members])
    assert len(np.unique(data.group)) == 12  # 6 tasks x 2 platforms
    assert data.hardware.shape[1] == len(data.platforms[0]["vector"])


def test_summary_reports_sizes_per_platform_and_network(synthetic_dataset):
    stats = ds.summary(ds.load(synthetic_dataset))
    assert stats["platforms"] == ["cpu-a", "cpu-b"] and stats["hosts"] == ["unlabelled"]
    assert stats["networks"] == ["net-x", "net-y"]
    assert stats["reference_gflops_per_platform"] == {"cpu-a": 0.0, "cpu-b": 0.0}  # never timed
    assert stats["programs"] + stats["failed"] == 288
    assert sum(stats["programs_per_platform"].values()) == stats["programs"]
    assert stats["tasks"] == 6
    assert stats["distinct_programs"] == stats["programs"] and stats["one_schedule_groups"] == 0  # random rows


def test_a_schedule_timed_twice_counts_once_however_its_latency_differs(synthetic_dataset):
    data = ds.load(synthetic_dataset)
    arrays = [x.copy() for x in (data.features, data.mask, data.trace_ids, data.trace_values)]
    members = np.flatnonzero(data.group == data.group[0])[:5]
    for x in arrays:
        x[members[1]] = x[members[0]]
    assert ds.distinct_programs(tuple(arrays), members) == 4
    for x in arrays:
        x[members] = x[members[0]]
    assert ds.distinct_programs(tuple(arrays), members) == 1


def test_a_task_in_two_networks_belongs_to_both(synthetic_dataset):
    data = ds.load(synthetic_dataset)
    members = data.task_networks()
    shared = [t for t, nets in members.items() if nets == {"net-x", "net-y"}]
    assert [data.tasks[t]["hash"] for t in shared] == [f"{3:016x}"]
    assert data.network_weights("net-y", "cpu-a")[shared[0]] == 2


def test_subset_renormalises_labels_within_the_subset(synthetic_dataset):
    data = ds.load(synthetic_dataset)
    ok = np.flatnonzero(np.isfinite(data.latency))
    best = ok[np.argmax(data.label[ok])]
    rest = data.subset(np.setdiff1d(np.arange(len(data)), [best]))
    group = data.group[best]
    members = np.isfinite(rest.latency) & (rest.group == group)
    assert np.isclose(rest.label[members].max(), 1.0)


def test_loading_a_shard_of_another_schema_names_the_file(tmp_path):
    root = synthetic_shards(tmp_path / "d")
    path = root / "shard-00000.npz"
    with np.load(path) as shard:
        arrays = dict(shard)
    meta = json.loads(arrays["meta"].tobytes())
    meta["schema_version"] = 999
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ds.DatasetError, match="shard-00000.npz has dataset schema 999"):
        ds.load(root)


def test_missing_dataset_is_a_user_error(tmp_path):
    with pytest.raises(ds.DatasetError, match="no dataset"):
        ds.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ds.DatasetError, match="featurize"):
        ds.load(tmp_path / "empty")


def test_shards_hold_no_pickles(synthetic_dataset):
    for path in pathlib.Path(synthetic_dataset).glob("shard-*.npz"):
        with np.load(path, allow_pickle=False) as shard:
            assert all(shard[k].dtype != object for k in shard.files)


def test_a_half_written_shard_is_ignored_and_a_finished_one_is_never_replaced(tmp_path):
    root = synthetic_shards(tmp_path / "d")
    whole = len(ds.load(root))
    (root / "shard-00007.tmp.npz").write_bytes(b"PK\x03\x04 cut off mid-write")  # featurize killed midway
    assert len(ds.load(root)) == whole
    assert [p.name for p in ds.shard_files(root)] == ["shard-00000.npz", "shard-00001.npz"]
    with np.load(root / "shard-00000.npz") as shard:
        arrays = dict(shard)
    meta = json.loads(arrays["meta"].tobytes())
    with pytest.raises(ds.DatasetError, match="written once"):
        ds.write_shard(root / "shard-00000.npz", store_rows=arrays["store_rows"], store_count=arrays["store_count"],
                       workload=arrays["workload"], latency=arrays["latency"], latency_std=arrays["latency_std"],
                       phase=arrays["phase"], record=arrays["record"], platform=meta["platform"],
                       task_hashes=meta["task_hashes"], tables={})


@pytest.mark.parametrize("damage", SHARD_DAMAGES)
def test_a_damaged_shard_is_one_line_that_names_it(tmp_path, damage):
    root = synthetic_shards(tmp_path / "d")
    damage_shard(root / "shard-00001.npz", damage)
    readers = [ds.load, lambda r: ds.write_subset(r, np.arange(3), tmp_path / "out", {})]
    if damage not in META_STILL_READABLE:
        readers.append(lambda r: ds.read_shard(r / "shard-00001.npz", ("meta",))["meta"])
    for read in readers:
        with pytest.raises(ds.DatasetError, match="shard-00001.npz is not a valid dataset shard") as caught:
            read(root)
        assert "\n" not in str(caught.value) and "allow_pickle" not in str(caught.value)


def test_trace_tokens_load_all_or_nothing_and_a_trace_model_refuses_a_dataset_without_them(synthetic_dataset, tmp_path):
    from xfer_jax import train
    from xfer_jax.errors import UserError
    from xfer_jax.model import ModelConfig

    data = ds.load(synthetic_dataset)
    assert data.has_traces and data.trace_values.shape == (len(data), *data.trace_values.shape[1:])
    assert data.subset(np.arange(5)).trace_ids.shape[0] == 5
    ds.trace_path(ds.shard_files(synthetic_dataset)[0]).unlink()
    bare = ds.load(synthetic_dataset)
    assert not bare.has_traces and ds.summary(bare)["trace_tokens"] is False
    with pytest.raises(UserError, match="featurize"):
        train.train(bare, np.arange(100), np.arange(100, 140), ModelConfig(trace=True),
                    train.TrainConfig(steps=2), tmp_path / "ck", show_progress=False)


def test_a_pruned_subset_keeps_the_trace_tokens_of_the_programs_it_keeps(synthetic_dataset, tmp_path):
    data = ds.load(synthetic_dataset)
    keep = np.arange(0, len(data), 3)
    ds.write_subset(synthetic_dataset, keep, tmp_path / "pruned", {"method": "test"})
    pruned = ds.load(tmp_path / "pruned")
    np.testing.assert_array_equal(pruned.trace_ids, data.trace_ids[keep])
    np.testing.assert_array_equal(pruned.trace_values, data.trace_values[keep])


def test_each_platform_gets_its_best_measured_reference_and_subsets_keep_it(tmp_path):
    from xfer_jax.hardware import HARDWARE_FEATURE_NAMES

    root = synthetic_shards(tmp_path / "data", platforms=("cpu-a", "cpu-b"))
    ds.append_measured_hardware(root, [{"platform": "cpu-a", "collection": "cpu-a/x", "reference_gflops": 10.0},
                                       {"platform": "cpu-a", "collection": "cpu-a/y", "reference_gflops": 14.0}])
    with open(root / ds.MEASURED_HARDWARE_FILE, "a") as f:
        f.write('{"platform": "cpu-b", "collec')  # a killed writer's torn line
    ds.append_measured_hardware(root, [{"platform": "cpu-b", "collection": "cpu-b/x", "reference_gflops": 3.0},
                                       {"platform": "cpu-b", "collection": "cpu-b/y", "reference_gflops": np.inf}])
    data = ds.load(root)
    assert [p["descriptor"]["reference_gflops"] for p in data.platforms] == [14.0, 3.0]
    column = HARDWARE_FEATURE_NAMES.index("log2(1+reference_gflops)")
    np.testing.assert_allclose(data.hardware[:, column], np.log2(1 + np.where(data.platform == 0, 14.0, 3.0)), 1e-6)
    ds.write_subset(root, np.arange(0, len(data), 2), tmp_path / "half", provenance={})
    np.testing.assert_array_equal(ds.load(tmp_path / "half").hardware, data.hardware[::2])
