import numpy as np
import pytest

from helpers import synthetic_shards
from xfer_jax import dataset, splits
from xfer_jax.errors import UserError


@pytest.fixture()
def two_hosts(tmp_path):
    """Configs a-1t@h1, a-2t@h1, a-1t@h2 and an unlabelled one."""
    return dataset.load(synthetic_shards(tmp_path / "data", platforms=("a-1t@h1", "a-2t@h1", "a-1t@h2", "old")))


def test_host_of_reads_the_label_after_the_at_sign():
    assert splits.host_of("avx2-2t@znver5") == "znver5"
    assert splits.host_of("avx2-2t") == splits.UNLABELLED_HOST


def test_by_host_holds_out_every_config_of_the_host_and_keeps_sibling_configs_out_of_training(two_hosts):
    data = two_hosts
    assert splits.hosts(data) == ["h1", "h2", splits.UNLABELLED_HOST]
    split = splits.by_host(data, "h1", seed=0)
    on_h1 = [data.platform_names.index(p) for p in ("a-1t@h1", "a-2t@h1")]
    assert not np.isin(data.platform[split.train], on_h1).any()
    assert set(data.platform[split.test]) == set(on_h1)
    assert split.name == "by-host-k0" and split.held_out == ("h1",)
    # every held-out group is tested on half of its programs
    for group in np.unique(data.group[split.test]):
        assert (data.group[split.test] == group).sum() == ((data.group == group).sum() + 1) // 2


def test_by_host_shots_come_from_the_untested_half_and_leave_the_test_set_unchanged(two_hosts):
    data = two_hosts
    zero, few = splits.by_host(data, "h1", shots=3, seed=1), splits.by_host(data, "h1", shots=0, seed=1)
    assert np.array_equal(zero.test, few.test)
    on_h1 = np.isin(data.platform[zero.train], [0, 1])
    assert on_h1.sum() == 3 * len(np.unique(data.group[np.isin(data.platform, [0, 1])]))
    assert not set(zero.train) & set(zero.test)


def test_by_host_refuses_an_unknown_host_in_one_line(two_hosts):
    with pytest.raises(UserError, match="unknown host 'nosuch'.*h1, h2"):
        splits.make_split(two_hosts, "by-host", holdout="nosuch")


def test_early_stopping_holds_out_programs_of_seen_tasks_or_whole_tasks(two_hosts):
    by_task = splits.make_split(two_hosts, "by-task", seed=0)
    fit, valid = splits.early_stopping_split(two_hosts, by_task, seed=0)
    assert set(two_hosts.task[valid]) <= set(two_hosts.task[fit])  # programs of seen tasks
    assert sorted(np.concatenate([fit, valid])) == sorted(by_task.train)
    fit, valid = splits.early_stopping_split(two_hosts, by_task, seed=0, by="tasks")
    assert len(valid) and not set(two_hosts.task[fit]) & set(two_hosts.task[valid])  # whole tasks held out
    assert sorted(np.concatenate([fit, valid])) == sorted(by_task.train)
    with pytest.raises(UserError, match="unknown validation"):
        splits.early_stopping_split(two_hosts, by_task, seed=0, by="nope")


def test_replay_sample_keeps_whole_groups_so_the_new_ones_are_the_share_asked(two_hosts):
    new = np.flatnonzero(two_hosts.platform == two_hosts.platform_names.index("a-1t@h2"))
    source = np.flatnonzero(two_hosts.platform != two_hosts.platform_names.index("a-1t@h2"))
    kept = splits.replay_sample(two_hosts, source, new, share=0.5, seed=0)
    assert len(np.unique(two_hosts.group[kept])) == len(np.unique(two_hosts.group[new]))
    for group in np.unique(two_hosts.group[kept]):  # whole groups, from the source only
        assert set(kept[two_hosts.group[kept] == group]) == set(source[two_hosts.group[source] == group])
    assert len(np.unique(two_hosts.group[splits.replay_sample(two_hosts, source, new, share=0.25)])) == 3 * len(
        np.unique(two_hosts.group[new]))
    with pytest.raises(UserError, match="replay share"):
        splits.replay_sample(two_hosts, source, new, share=0.0)


@pytest.mark.parametrize("name,holdout,shots", [("by-host", "h1", 0), ("by-platform", "a-2t@h1", 0),
                                                ("by-host", "h1", 3), ("by-task", None, 0)])
def test_trained_platforms_are_those_the_split_trains_on(two_hosts, name, holdout, shots):
    data = two_hosts
    split = splits.make_split(data, name, holdout=holdout, shots=shots)
    metadata = {"data": {"platforms": list(data.platform_names)}, "split": split.spec}
    in_training = {data.platform_names[i] for i in np.unique(data.platform[split.train])}
    assert set(splits.trained_platforms(metadata)) == in_training
