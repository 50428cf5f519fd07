"""Models side by side on the very same splits, and transfer to a held-out platform.

Every trained model and every score is cached under a work folder keyed by the dataset, the split, the model
and the training budget, so an interrupted study resumes and a finished one re-renders in seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from collections.abc import Callable

import numpy as np

from . import dataset, prune, splits, train
from .baselines import PackSumXGB
from .checkpoint import load
from .evaluate import ranking_report
from .hardware import NUM_HARDWARE_FEATURES
from .model import ModelConfig

# the split table: every model trained on the same training set. xgb: pack-sum, no hardware input; xgb+hw: the
# hardware vector appended to every store row; noHW: xfer without hardware input; mlp: TenSet's MLP
MODELS = ("xfer", "noHW", "mlp", "xgb", "xgb+hw")
# transfer adds mlp-onehot (a platform code instead of the hardware vector) and xgb-target (only the k shots)
TRANSFER_MODELS = ("xfer", "noHW", "mlp-onehot", "xgb", "xgb+hw", "xgb-target")
XGB_MODELS = ("xgb", "xgb+hw", "xgb-target")
SHOTS = (0, 8, 32, 64)
KEEP = (1.0, 0.75, 0.5, 0.3, 0.2, 0.1)

_NEURAL = {"xfer": ModelConfig(), "noHW": ModelConfig(use_hardware=False),
           "mlp": ModelConfig(kind="mlp", use_hardware=False), "mlp-onehot": ModelConfig(kind="mlp")}


def model_version(model: str) -> str:
    """A short hash of what defines `model` and how it trains, part of every cache key: results of an older
    definition are never reused."""
    spec = ({**_NEURAL[model].to_dict(), "train": train.as_trained(train.TrainConfig(), _NEURAL[model]).to_dict()}
            if model in _NEURAL else
            {"kind": {"xgb-target": "xgb"}.get(model, model), **PackSumXGB().params, "hessian": "stores"})
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]


def one_hot_platforms(data: dataset.Dataset) -> dataset.Dataset:
    """The hardware vector replaced by a one-hot platform code (TenSet-style; an unseen platform is a new column)."""
    if len(data.platforms) > NUM_HARDWARE_FEATURES:
        raise ValueError(f"one-hot codes fit {NUM_HARDWARE_FEATURES} platforms, the dataset has {len(data.platforms)}")
    code = np.zeros((len(data), NUM_HARDWARE_FEATURES), np.float32)
    code[np.arange(len(data)), data.platform] = 1.0
    arrays = {name: getattr(data, name) for name in data.__dataclass_fields__}
    return dataset.Dataset(**{**arrays, "hardware": code})


def fingerprint(data: dataset.Dataset) -> str:
    """Changes whenever the programs, their latencies or the hardware vectors change, so cached results never go
    stale."""
    digest = hashlib.sha256()
    for array in (data.latency, data.task, data.platform):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(json.dumps([[p["name"], p["vector"]] for p in data.platforms]).encode())
    return digest.hexdigest()[:12]


def split_label(split: splits.Split) -> str:
    return split.name + (f"/{split.held_out[0]}" if split.held_out else "")


class Study:
    """Trains and scores models on splits of one dataset, caching both in `work`."""

    def __init__(self, data: dataset.Dataset, work: pathlib.Path, steps: int = 1500, finetune_steps: int = 300,
                 seed: int = 0, log: Callable[[str], None] = print):
        self.data, self.steps, self.finetune_steps, self.seed, self.log = data, steps, finetune_steps, seed, log
        self.work = pathlib.Path(work).absolute() / fingerprint(data)  # results/ (small JSON), checkpoints/
        self.onehot: dataset.Dataset | None = None

    def _data_for(self, model: str) -> dataset.Dataset:
        if model != "mlp-onehot":
            return self.data
        if self.onehot is None:
            self.onehot = one_hot_platforms(self.data)
        return self.onehot

    def _key(self, *parts) -> str:
        return "-".join(str(p).replace("/", "_") for p in parts)

    def checkpoint_path(self, model: str, split: splits.Split, fine_tuned: bool = False) -> pathlib.Path:
        """Where `model` trained on split.train is cached (its folder holds `done` once trained)."""
        # a fine-tuned model also depends on the budget of the model it started from
        budget = f"s{self.steps}-f{self.finetune_steps}" if fine_tuned else f"s{self.steps}"
        return self.work / "checkpoints" / self._key(model, model_version(model), split_label(split), budget,
                                                     f"seed{self.seed}")

    def checkpoint(self, model: str, split: splits.Split, init: pathlib.Path | None = None) -> pathlib.Path:
        """Train `model` on split.train (from `init` when fine-tuning); returns its checkpoint folder."""
        steps = self.finetune_steps if init else self.steps
        out = self.checkpoint_path(model, split, fine_tuned=init is not None)
        if (out / "done").exists():
            return out
        config = train.TrainConfig(steps=steps, seed=self.seed, eval_every=max(steps // 6, 1),
                                   learning_rate=3e-4 if init else 1e-3)
        fit, valid = splits.early_stopping_split(self.data, split, self.seed, config.validation)
        info = {**split.spec, "train_programs": int(len(split.train)), "test_programs": int(len(split.test))}
        train.train(self._data_for(model), fit, valid, _NEURAL[model], config, out,
                    info, show_progress=False, init=init)
        (out / "done").write_text("")
        return out

    def _scores(self, model: str, split: splits.Split, init: pathlib.Path | None) -> np.ndarray:
        data = self._data_for(model)
        test = data.subset(split.test)
        if model in XGB_MODELS:
            index = split.train
            if model == "xgb-target":  # what a user without xfer-jax has: the new hardware's own few programs
                index = index[np.isin(data.group[index], data.group[split.test])]
            fit = data.subset(index)
            hardware = model == "xgb+hw"
            booster = PackSumXGB(seed=self.seed).fit(fit.features, fit.mask, fit.label,
                                                     fit.hardware if hardware else None)
            return booster.predict(test.features, test.mask, test.hardware if hardware else None)
        path = self.checkpoint(model, split, init)
        return load(path).predict_dataset(test)

    def _result_path(self, model: str, label: str, tag: str) -> pathlib.Path:
        return self.work / "results" / (self._key(model, model_version(model), label, tag, f"s{self.steps}",
                                                  f"f{self.finetune_steps}", f"seed{self.seed}") + ".json")

    def _cached(self, model: str, label: str, tag: str) -> dict | None:
        path = self._result_path(model, label, tag)
        return json.loads(path.read_text()) if path.exists() else None

    def score(self, model: str, split: splits.Split, init: Callable[[], pathlib.Path] | None = None,
              extra: dict | None = None) -> dict | None:
        """Ranking report of `model` on split.test (plus `extra` fields, cached with it); None where the model
        has nothing to train on.

        `init` gives the checkpoint to fine-tune from; it is only called when the result is not cached yet.
        """
        tag = "ft" if init else "full"
        path = self._result_path(model, split_label(split), tag)
        if path.exists():
            return json.loads(path.read_text())
        if model == "xgb-target" and split.name.endswith("-k0"):
            return None
        init = init() if init else None
        report = ranking_report(self.data.subset(split.test), self._scores(model, split, init))
        report["train_programs"] = int(len(split.train))
        report.update(extra or {})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report))
        return report

    def compare(self, names: list[str | tuple[str, str]], models: list[str]) -> dict:
        """{split label: {model: report}}; a name is a split, or (split, holdout) such as
        ("by-network", "bert_tiny")."""
        results: dict = {}
        for name in names:
            name, holdout = (name, None) if isinstance(name, str) else name
            chosen = splits.make_split(self.data, name, seed=self.seed, holdout=holdout)
            label = split_label(chosen)
            self.log(chosen.describe())
            results[label] = {}
            for model in models:
                results[label][model] = self.score(model, chosen)
                self._log_row(model, results[label][model])
        return results

    def transfer(self, holdouts: list[str], models: list[str], shots: tuple[int, ...] = SHOTS,
                 by: str = "platform") -> dict:
        """{holdout: {"k<shots>": {model: report}}}: leave each platform (by="platform") or each host's configs
        (by="host") out, then add k programs per task and config.

        Neural models train once without the held-out hardware (zero-shot) and are fine-tuned from there with
        the k shots, which is what online adaptation does during tuning.
        """
        results: dict = {}
        for holdout in holdouts:
            results[holdout] = {}
            zero_shot = splits.make_split(self.data, f"by-{by}", holdout=holdout, shots=0, seed=self.seed)
            for k in shots:
                chosen = splits.make_split(self.data, f"by-{by}", holdout=holdout, shots=k, seed=self.seed)
                self.log(chosen.describe())
                row = results[holdout][f"k{k}"] = {}
                for model in models:
                    fine_tune = model in _NEURAL and k > 0
                    row[model] = self.score(model, chosen, init=(lambda m=model: self.checkpoint(m, zero_shot))
                                            if fine_tune else None)
                    self._log_row(model, row[model])
        return results

    def pruning(self, methods: list[str], fractions: tuple[float, ...] = KEEP, model: str = "xfer",
                split: str = "by-task", holdout: str | None = None) -> dict:
        """{method: {"<keep>": report}}: `model` trained on a pruned training set of `split` (by-task, or
        by-host with `holdout`), always tested on the same test set."""
        base = splits.make_split(self.data, split, seed=self.seed, holdout=holdout)
        measured_train = base.train[np.isfinite(self.data.latency[base.train])]
        self.log(base.describe())
        results: dict = {}
        for method in methods:
            results[method] = {}
            for keep in fractions:
                if keep >= 1.0:  # the split table's (by-host: the zero-shot row's) model, trained once for both
                    report = {**self.score(model, base), "kept_fraction": 1.0}
                else:
                    pruned = splits.Split(f"{base.name}-{method}-keep{keep:g}", measured_train, base.test,
                                          base.held_out, spec=base.spec)
                    # a cached result skips the selection too, which fits boosters for the model-based methods
                    report = self._cached(model, split_label(pruned), "full")
                    if report is None:
                        index = prune.select(self.data, keep, method, self.seed, within=base.train)
                        report = self.score(model, dataclasses.replace(pruned, train=index))
                    report["kept_fraction"] = report["train_programs"] / max(len(measured_train), 1)
                results[method][f"{keep:g}"] = report
                self._log_row(f"{method}@{keep:g}", report)
        return results

    def collection(self, host: str, methods: list[str], shots: tuple[int, ...] = (16, 64),
                   model: str = "xfer", replay_share: float | None = None) -> dict:
        """{"k0" or "<method>-k<k>": report}: pruning for collection. `host` is held out; from the half of each
        of its groups that is not test, `method` picks k programs per group without reading their latency
        (prune.choose_to_measure); `model` is fine-tuned from its zero-shot checkpoint on them and scored on
        the fixed test half. Each report also says how many programs were measured.

        With `replay_share`, fine-tuning sees the new host's groups beside a random sample of the other groups
        (so that the new ones are about that share of all), instead of beside every other group."""
        zero_shot = splits.make_split(self.data, "by-host", holdout=host, shots=0, seed=self.seed)
        self.log(zero_shot.describe())
        results = {"k0": self.score(model, zero_shot)}
        self._log_row("k0", results["k0"])
        untested = splits.on_host(self.data, host)
        untested[zero_shot.test] = False
        candidates = np.flatnonzero(untested)
        start, scores = None, None
        for method in methods:
            for k in shots:
                name = f"by-host-{method}-k{k}" + (f"-replay{replay_share:g}" if replay_share is not None else "")
                label = f"{method}-k{k}"
                cached = self._cached(model, f"{name}/{host}", "ft")
                if cached is not None and "measured" in cached:
                    results[label] = cached
                    self._log_row(label, cached)
                    continue
                if scores is None:  # the zero-shot model's view of the candidates, once
                    start = self.checkpoint(model, zero_shot)
                    new = self.data.subset(candidates)
                    scores = load(start).predict_dataset(new)
                measured = prune.choose_to_measure(self.data, candidates, k, method, scores,
                                                   source=zero_shot.train, seed=self.seed)
                source = zero_shot.train
                if replay_share is not None:
                    source = splits.replay_sample(self.data, source, measured, replay_share, self.seed)
                chosen = splits.Split(name, np.sort(np.concatenate([source, measured])), zero_shot.test, (host,),
                                      spec=zero_shot.spec)
                results[label] = self.score(model, chosen, init=lambda: start, extra={
                    "measured": int(len(measured)),
                    "per_group": len(measured) / max(len(np.unique(self.data.group[measured])), 1)})
                self._log_row(label, results[label])
        return results

    @staticmethod
    def flatten_transfer(results: dict, by: str = "platform") -> dict:
        """{"by-<by>-k<k>/<holdout>": {model: report}} plus the mean over holdouts as ".../mean"."""
        flat: dict = {}
        for holdout, per_k in results.items():
            for k, row in per_k.items():
                flat[f"by-{by}-{k}/{holdout}"] = row
        for k in next(iter(results.values()), {}):
            rows = [per_k[k] for per_k in results.values()]
            flat[f"by-{by}-{k}/mean"] = {model: mean_report([r[model] for r in rows]) for model in rows[0]}
        return flat

    def _log_row(self, model: str, report: dict | None) -> None:
        if report is None:
            self.log(f"  {model:10s} (nothing to train on)")
            return
        cells = " ".join(f"{m} {report[m]:.4f}" if report.get(m) is not None else f"{m} -"
                         for m in ("pca", "top1", "top5"))
        self.log(f"  {model:10s} {cells}")


def mean_report(reports: list[dict | None]) -> dict | None:
    """Mean PCA, top-1 and top-5 over reports (e.g. over held-out platforms); None entries are skipped."""
    present = [r for r in reports if r is not None]
    if not present:
        return None
    mean = {}
    for metric in ("pca", "top1", "top5"):
        values = [r[metric] for r in present if r.get(metric) is not None]
        mean[metric] = float(np.mean(values)) if values else None
    return {**mean, "over": len(present)}
