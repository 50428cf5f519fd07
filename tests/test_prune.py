import dataclasses
import json

import numpy as np
import pytest

from helpers import run_cli, synthetic_shards
from xfer_jax import dataset, prune
from xfer_jax.errors import UserError


@pytest.mark.parametrize("method", prune.METHODS)
def test_every_method_keeps_about_the_fraction_of_each_group(synthetic_dataset, method):
    data = dataset.load(synthetic_dataset)
    kept = prune.select(data, 0.3, method, seed=0)
    assert len(np.unique(kept)) == len(kept)
    assert np.isfinite(data.latency[kept]).all()
    for group in np.unique(data.group):
        measured = np.isfinite(data.latency) & (data.group == group)
        chosen = np.isin(kept, np.flatnonzero(measured)).sum()
        assert 2 <= chosen <= max(2, round(measured.sum() * 0.3))


def test_stratified_and_kcenter_always_keep_the_fastest_program(synthetic_dataset):
    data = dataset.load(synthetic_dataset)
    for method in ("stratified", "kcenter"):
        kept = prune.select(data, 0.1, method)
        for group in np.unique(data.group):
            members = np.flatnonzero(data.group == group)
            assert members[np.argmin(data.latency[members])] in kept


def test_dedup_drops_exact_duplicates_first(synthetic_dataset, tmp_path):
    data = dataset.load(synthetic_dataset)
    group = data.group == 0
    index = np.flatnonzero(group)
    doubled = data.subset(np.concatenate([np.arange(len(data)), index]))  # every program of group 0 twice
    kept = prune.select(doubled, 1.0, "dedup")
    g0 = np.isin(kept, np.flatnonzero(doubled.group == 0))
    assert g0.sum() == np.isfinite(data.latency[index]).sum()


def test_prune_command_writes_a_valid_dataset_with_provenance_and_never_overwrites(synthetic_dataset, tmp_path):
    out = tmp_path / "pruned"
    command = ["prune", "--data", synthetic_dataset, "--keep", "0.5", "--method", "stratified", "--out", out]
    done = run_cli(*command)
    assert done.returncode == 0, done.stderr
    pruned, source = dataset.load(out), dataset.load(synthetic_dataset)
    assert 0.4 < len(pruned) / np.isfinite(source.latency).sum() < 0.6
    assert pruned.platform_names == source.platform_names and pruned.networks == source.networks
    assert np.allclose(pruned.label.max(), 1.0)
    info = run_cli("info", out, "--json")
    assert json.loads(info.stdout)["derived_from"]["method"] == "stratified"
    again = run_cli(*command)
    assert again.returncode == 2 and "never rewritten" in again.stderr and "Traceback" not in again.stderr
    bad = run_cli(*command[:-2], "--out", tmp_path / "x", "--keep", "1.5")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_prune_refuses_an_out_inside_its_source_or_onto_a_file(synthetic_dataset, tmp_path):
    (tmp_path / "a-file").write_text("x")
    for out, message in [(synthetic_dataset / "pruned", "inside the source dataset"), (tmp_path / "a-file", "is a file")]:
        with pytest.raises(dataset.DatasetError, match=message):
            dataset.write_subset(synthetic_dataset, np.arange(5), out, {})
    assert not (synthetic_dataset / "pruned").exists()  # refused before anything was written


def test_model_methods_keep_the_fastest_and_prefer_what_the_booster_ranks_worst(synthetic_dataset):
    data = dataset.load(synthetic_dataset)
    pool = np.flatnonzero(np.isfinite(data.latency))
    surprise = prune._surprise(data, pool, "hard", seed=0)
    assert surprise.shape == (len(pool),) and (surprise >= 0).all() and (surprise <= 1).all()
    for method in ("hard", "disagree", "easy"):
        kept = prune.select(data, 0.3, method, seed=0)
        for group in np.unique(data.group):
            members = np.flatnonzero((data.group == group) & np.isfinite(data.latency))
            assert members[np.argmin(data.latency[members])] in kept
    group = data.group[pool[0]]
    at = np.flatnonzero(data.group[pool] == group)
    kept = set(prune.select(data, 0.3, "hard", seed=0)) & set(pool[at])
    worst = pool[at][np.argsort(-surprise[at], kind="stable")][:2]  # the fastest may take one of these places
    assert len(kept & set(worst)) >= 1
    # easy takes the other end of the same ranking
    np.testing.assert_array_equal(prune._surprise(data, pool, "easy", seed=0), -surprise)
    kept = set(prune.select(data, 0.3, "easy", seed=0)) & set(pool[at])
    best = pool[at][np.argsort(surprise[at], kind="stable")][:2]
    assert len(kept & set(best)) >= 1


@pytest.mark.parametrize("method", prune.COLLECT_METHODS)
def test_collection_picks_k_per_group_without_reading_the_candidates_latency(tmp_path, method):
    data = dataset.load(synthetic_shards(tmp_path / "data", platforms=("a@h1", "b@h2")))
    new_host = data.platform == data.platform_names.index("b@h2")
    candidates, source = np.flatnonzero(new_host), np.flatnonzero(~new_host)
    scores = np.random.default_rng(1).normal(size=len(candidates))
    chosen = prune.choose_to_measure(data, candidates, 5, method, scores, source, seed=0)
    assert np.isin(chosen, candidates).all() and len(np.unique(chosen)) == len(chosen)
    for group in np.unique(data.group[candidates]):
        assert (data.group[chosen] == group).sum() == min(5, (data.group[candidates] == group).sum())
    latency = data.latency.copy()
    latency[candidates] = np.random.default_rng(2).permutation(latency[candidates])
    shuffled = dataclasses.replace(data, latency=latency, label=dataset.group_labels(latency, data.group))
    assert np.array_equal(prune.choose_to_measure(shuffled, candidates, 5, method, scores, source, seed=0), chosen)


def test_top_spread_measures_the_best_scored_half_and_spans_the_rest():
    members = np.arange(10, 30)
    scores = np.linspace(1.0, 0.0, 20)  # members[0] is the best scored
    chosen = prune._top_spread(members, scores, 6)
    assert list(chosen[:3]) == [10, 11, 12]
    assert chosen[-1] == 29 and 13 not in chosen  # down to the worst scored, not bunched below the top
    assert list(prune._top_spread(members, scores, 2)) == [10, 29]


def test_collection_rejects_an_unknown_method_or_an_empty_quota(synthetic_dataset):
    data = dataset.load(synthetic_dataset)
    index = np.arange(len(data))
    with pytest.raises(UserError, match="unknown collection method"):
        prune.choose_to_measure(data, index, 4, "oracle", np.zeros(len(data)), index)
    with pytest.raises(UserError, match="at least 1"):
        prune.choose_to_measure(data, index, 0, "random", np.zeros(len(data)), index)
