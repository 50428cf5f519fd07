"""Train/test splits as ../shared/METRICS.md defines them; each is deterministic from its seed."""

from __future__ import annotations

import dataclasses

import numpy as np

from .dataset import Dataset
from .errors import UserError

SPLITS = ("within-task", "by-task", "by-network", "by-platform")


@dataclasses.dataclass(frozen=True)
class Split:
    name: str
    train: np.ndarray  # program indices
    test: np.ndarray
    held_out: tuple[str, ...] = ()  # networks or platforms held out, where that applies

    def describe(self) -> str:
        held = f" held out: {', '.join(self.held_out)}" if self.held_out else ""
        return f"{self.name}: {len(self.train)} train / {len(self.test)} test programs{held}"


def within_task(data: Dataset, seed: int = 0, test_fraction: float = 0.2) -> Split:
    """A random share of every group's programs goes to test."""
    rng = np.random.default_rng(seed)
    test = rng.random(len(data)) < test_fraction
    return Split("within-task", np.flatnonzero(~test), np.flatnonzero(test))


def by_task(data: Dataset, seed: int = 0, test_fraction: float = 0.2) -> Split:
    """Whole tasks (on every platform) are held out."""
    rng = np.random.default_rng(seed)
    tasks = np.unique(data.task)
    held = rng.permutation(tasks)[: max(1, int(round(len(tasks) * test_fraction)))]
    test = np.isin(data.task, held)
    return Split("by-task", np.flatnonzero(~test), np.flatnonzero(test))


def by_network(data: Dataset, networks: list[str] | None = None, seed: int = 0) -> Split:
    """Every task of the held-out networks is held out, also where the task appears in another network."""
    names = sorted(data.networks)
    if networks is None:
        networks = [names[np.random.default_rng(seed).integers(len(names))]]
    unknown = set(networks) - set(names)
    if unknown:
        raise UserError(f"unknown network(s) {sorted(unknown)} in this dataset; it has {', '.join(names)}")
    held_tasks = [t for t, nets in data.task_networks().items() if nets & set(networks)]
    test = np.isin(data.task, held_tasks)
    return Split("by-network", np.flatnonzero(~test), np.flatnonzero(test), tuple(networks))


def by_platform(data: Dataset, platform: str, shots: int = 0, seed: int = 0) -> Split:
    """Every record of `platform` is held out, except up to `shots` programs per task allowed in training.

    The test set is the same for every `shots`: a fixed random half of each of the platform's groups. Shots
    come from the other half, so k = 64 on groups of 64 programs uses 32 (the split reports what it used).
    """
    if platform not in data.platform_names:
        raise UserError(f"unknown platform {platform!r} in this dataset; it has {', '.join(data.platform_names)}")
    rng = np.random.default_rng(seed)
    on_platform = data.platform == data.platform_names.index(platform)
    train, test = ~on_platform, np.zeros(len(data), bool)
    for group in np.unique(data.group[on_platform]):
        members = rng.permutation(np.flatnonzero(data.group == group))
        half = (len(members) + 1) // 2
        test[members[:half]] = True
        train[members[half:][:shots]] = True
    return Split(f"by-platform-k{shots}", np.flatnonzero(train), np.flatnonzero(test), (platform,))


def early_stopping_split(train_index: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, valid): 10% of the training programs held out for early stopping, deterministic from the seed."""
    valid = np.random.default_rng(seed + 1).random(len(train_index)) < 0.1
    return train_index[~valid], train_index[valid]


def make_split(data: Dataset, name: str, *, seed: int = 0, holdout: str | None = None, shots: int = 0) -> Split:
    """Dispatch by name; `holdout` names the network or platform where the split needs one."""
    if name == "within-task":
        return within_task(data, seed)
    if name == "by-task":
        return by_task(data, seed)
    if name == "by-network":
        return by_network(data, [holdout] if holdout else None, seed)
    if name == "by-platform":
        return by_platform(data, holdout or data.platform_names[-1], shots, seed)
    raise UserError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
