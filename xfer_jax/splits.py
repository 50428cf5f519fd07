"""Train/test splits as ../shared/METRICS.md defines them; each is deterministic from its seed."""

from __future__ import annotations

import dataclasses

import numpy as np

from .dataset import Dataset
from .errors import UserError

SPLITS = ("within-task", "by-task", "by-network", "by-platform", "by-host")
UNLABELLED_HOST = "unlabelled"


@dataclasses.dataclass(frozen=True)
class Split:
    name: str
    train: np.ndarray  # program indices
    test: np.ndarray
    held_out: tuple[str, ...] = ()  # networks, platforms or hosts held out, where that applies
    spec: dict = dataclasses.field(default_factory=dict)  # make_split(data, **spec) rebuilds this split

    def describe(self) -> str:
        held = f" held out: {', '.join(self.held_out)}" if self.held_out else ""
        return f"{self.name}: {len(self.train)} train / {len(self.test)} test programs{held}"


def _spec(name: str, seed: int, holdout: str | None = None, shots: int = 0) -> dict:
    return {"name": name, "holdout": holdout, "shots": shots, "seed": seed}


def within_task(data: Dataset, seed: int = 0, test_fraction: float = 0.2) -> Split:
    """A random share of every group's programs goes to test."""
    rng = np.random.default_rng(seed)
    test = rng.random(len(data)) < test_fraction
    return Split("within-task", np.flatnonzero(~test), np.flatnonzero(test), spec=_spec("within-task", seed))


def by_task(data: Dataset, seed: int = 0, test_fraction: float = 0.2) -> Split:
    """Whole tasks (on every platform) are held out."""
    rng = np.random.default_rng(seed)
    tasks = np.unique(data.task)
    held = rng.permutation(tasks)[: max(1, int(round(len(tasks) * test_fraction)))]
    test = np.isin(data.task, held)
    return Split("by-task", np.flatnonzero(~test), np.flatnonzero(test), spec=_spec("by-task", seed))


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
    return Split("by-network", np.flatnonzero(~test), np.flatnonzero(test), tuple(networks),
                 _spec("by-network", seed, networks[0] if len(networks) == 1 else None))


def host_of(platform: str) -> str:
    """The host a platform was measured on: its `@label` (`avx2-2t@znver5` -> znver5), else UNLABELLED_HOST."""
    return platform.split("@", 1)[1] if "@" in platform else UNLABELLED_HOST


def recorded_holdout(split: dict) -> str | None:
    """The held-out platform, host or network a checkpoint's split records (older checkpoints kept a list)."""
    holdout = split.get("holdout")
    return (holdout or [None])[0] if isinstance(holdout, list) else holdout


def trained_platforms(metadata: dict) -> list[str] | None:
    """The platforms a checkpoint trained on, from its metadata: its dataset's, less those its split held out
    whole (a held-out platform or host with shots > 0 lent training a few programs, so it counts as seen)."""
    platforms = metadata.get("data", {}).get("platforms")
    split = metadata.get("split", {})
    if platforms is None or split.get("shots"):
        return platforms
    holdout = recorded_holdout(split)
    if split.get("name") == "by-host":
        return [p for p in platforms if host_of(p) != holdout]
    if split.get("name") == "by-platform":
        return [p for p in platforms if p != holdout]
    return platforms


def hosts(data: Dataset) -> list[str]:
    return sorted({host_of(p) for p in data.platform_names})


def on_host(data: Dataset, host: str) -> np.ndarray:
    """Per program, whether it was measured on one of `host`'s configs."""
    return np.isin(data.platform, [i for i, name in enumerate(data.platform_names) if host_of(name) == host])


def _hold_out(data: Dataset, held: np.ndarray, shots: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) with every program where `held` is True out of training, except up to `shots` per task
    and platform; the test side is a fixed random half of each held-out group, the same for every `shots`."""
    rng = np.random.default_rng(seed)
    train, test = ~held, np.zeros(len(data), bool)
    for group in np.unique(data.group[held]):
        members = rng.permutation(np.flatnonzero(data.group == group))
        half = (len(members) + 1) // 2
        test[members[:half]] = True
        train[members[half:][:shots]] = True
    return np.flatnonzero(train), np.flatnonzero(test)


def by_platform(data: Dataset, platform: str, shots: int = 0, seed: int = 0) -> Split:
    """Every record of `platform` is held out, except up to `shots` programs per task allowed in training.

    The test set is the same for every `shots`: a fixed random half of each of the platform's groups. Shots
    come from the other half, so k = 64 on groups of 64 programs uses 32 (the split reports what it used).
    """
    if platform not in data.platform_names:
        raise UserError(f"unknown platform {platform!r} in this dataset; it has {', '.join(data.platform_names)}")
    train, test = _hold_out(data, data.platform == data.platform_names.index(platform), shots, seed)
    return Split(f"by-platform-k{shots}", train, test, (platform,), _spec("by-platform", seed, platform, shots))


def by_host(data: Dataset, host: str, shots: int = 0, seed: int = 0) -> Split:
    """Every config measured on `host` is held out, so no sibling config of that host is in training; shots
    and test halves as in by_platform, per (task, config)."""
    known = hosts(data)
    if host not in known:
        raise UserError(f"unknown host {host!r} in this dataset; it has {', '.join(known)}")
    train, test = _hold_out(data, on_host(data, host), shots, seed)
    return Split(f"by-host-k{shots}", train, test, (host,), _spec("by-host", seed, host, shots))


def replay_sample(data: Dataset, source: np.ndarray, new: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """Every program of a random sample of `source`'s groups, as many as make `new`'s groups `share` of all."""
    if not 0.0 < share <= 1.0:
        raise UserError(f"the replay share must be in (0, 1], got {share}")
    groups = np.unique(data.group[source])
    wanted = int(round(len(np.unique(data.group[new])) * (1.0 - share) / share))
    kept = np.random.default_rng(seed).permutation(groups)[:wanted]
    return source[np.isin(data.group[source], kept)]


VALIDATIONS = ("programs", "tasks")


def early_stopping_split(data: Dataset, split: Split, seed: int, by: str = "programs") -> tuple[np.ndarray, np.ndarray]:
    """(fit, valid) of split.train, deterministic from the seed: 10% of the training programs ("programs"), or
    every program of 10% of the training tasks ("tasks"). Validating on unseen tasks sounds like the by-task
    test, but it lost there (session 6, by-task PCA 0.726 against 0.743): a tenth of the tasks is a noisy
    yardstick that stops early, and those tasks are lost to training."""
    if by not in VALIDATIONS:
        raise UserError(f"unknown validation {by!r}; choose {', '.join(VALIDATIONS)}")
    train_index = split.train
    rng = np.random.default_rng(seed + 1)
    if by == "programs":
        valid = rng.random(len(train_index)) < 0.1
    else:
        tasks = np.unique(data.task[train_index])
        held = rng.permutation(tasks)[: max(1, round(0.1 * len(tasks)))] if len(tasks) > 1 else tasks[:0]
        valid = np.isin(data.task[train_index], held)
    return train_index[~valid], train_index[valid]


def make_split(data: Dataset, name: str, *, seed: int = 0, holdout: str | None = None, shots: int = 0) -> Split:
    """Dispatch by name; `holdout` names the network, platform or host where the split needs one."""
    if name == "within-task":
        return within_task(data, seed)
    if name == "by-task":
        return by_task(data, seed)
    if name == "by-network":
        return by_network(data, [holdout] if holdout else None, seed)
    if name == "by-platform":
        return by_platform(data, holdout or data.platform_names[-1], shots, seed)
    if name == "by-host":
        return by_host(data, holdout or hosts(data)[-1], shots, seed)
    raise UserError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
