"""Damaged files reach the user as one line and exit code 2 through every command that reads them.

The commands run in this process (helpers.run_cli), so each case costs milliseconds, not an interpreter start.
"""

from __future__ import annotations

import pytest

from xfer_jax.checkpoint import default_path

from helpers import (META_STILL_READABLE, SHARD_DAMAGES, assert_one_line, damage_shard, run_cli, synthetic_shards,
                     write_matmul_onnx)


@pytest.mark.parametrize("damage", SHARD_DAMAGES)
def test_a_damaged_shard_is_one_line_in_every_command_that_reads_it(tmp_path, damage):
    data = synthetic_shards(tmp_path / "data")
    damage_shard(data / "shard-00001.npz", damage)
    commands = [("info", data),
                ("train", "--data", data, "--out", tmp_path / "ck", "--steps", 1),
                ("prune", "--data", data, "--keep", 0.5, "--out", tmp_path / "pruned"),
                ("eval", "--checkpoint", default_path(), "--data", data)]
    if damage not in META_STILL_READABLE:  # featurize reads the meta of the shards it appends to
        (tmp_path / "collection" / "cpu" / "net").mkdir(parents=True)
        (tmp_path / "collection" / "cpu" / "net" / "platform.json").write_text("{}")
        commands.append(("featurize", tmp_path / "collection", "--out", data))
    for command in commands:
        assert_one_line(run_cli(*command), "shard-00001.npz is not a valid dataset shard")
    assert not (tmp_path / "pruned").exists() and not (tmp_path / "ck").exists()


@pytest.mark.tvm
@pytest.mark.parametrize("mistake, message", [
    ('num_thread = 2', "unknown platform fields ['num_thread']"),
    ('num_threads = 2\n[descriptor]\nkind = "cpu"\nthreads = "two"', "'threads' must be of type int"),
    ('num_threads = 1\ntarget = {kind = "vulkan"}', "kind 'llvm' or 'cuda'"),
    ('num_threads = 2\n[descriptor\nkind = "cpu"', "mine.toml"),  # not TOML at all
])
def test_a_bad_platform_file_is_one_line_in_collect_and_tune(tmp_path, mistake, message):
    body = 'name = "mine"\n' + ('' if "target =" in mistake else 'target = {kind = "llvm", mcpu = "core-avx2"}\n')
    body += mistake + ("" if "[descriptor" in mistake else '\n[descriptor]\nkind = "cpu"\nthreads = 2')
    platform = tmp_path / "mine.toml"
    platform.write_text(body + "\n")
    onnx = write_matmul_onnx(tmp_path / "tiny.onnx")
    assert_one_line(run_cli("collect", "--platform", platform, "--onnx", onnx, "--out", tmp_path / "c"), message)
    assert_one_line(run_cli("tune", "--platform", platform, "--onnx", onnx, "--out", tmp_path / "t"), message)
    assert not (tmp_path / "c").exists() and not (tmp_path / "t").exists()


def test_training_a_trace_model_on_a_dataset_without_traces_says_what_to_do_and_the_ablations_train(tmp_path):
    import xfer_jax
    from xfer_jax import dataset

    data = synthetic_shards(tmp_path / "data")
    for shard in dataset.shard_files(data):
        dataset.trace_path(shard).unlink()
    assert_one_line(run_cli("train", "--data", data, "--out", tmp_path / "ck", "--steps", 1), "featurize",
                    "--no-trace")
    assert not (tmp_path / "ck").exists()
    done = run_cli("train", "--data", data, "--out", tmp_path / "ck", "--steps", 2, "--size", "small", "--no-trace",
                   "--no-relative-features")
    assert done.returncode == 0, done.stderr[-800:]
    loaded = xfer_jax.load(tmp_path / "ck")
    assert loaded.config.trace is False and loaded.config.relative_features is False and not loaded.normalizer.relative
