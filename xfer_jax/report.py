"""`xfer-jax report`: the transfer, pruning, split and tuning study, regenerated from data and tune results.

Every number in reports/README.md and reports/summary.json is computed here, from the dataset and from the
`xfer-jax tune --json` reports in reports/tune/. Trained models and scores are cached under reports/work/, so a
rerun only trains what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable

import numpy as np

from . import curves, dataset, plots, prune, splits
from .errors import UserError
from .study import KEEP, MODELS, SHOTS, TRANSFER_MODELS, Study, mean_report

METRICS = ("pca", "top1", "top5")
WHOLE_SPLITS = ("within-task", "by-task")  # the split table's rows besides by-network and the zero-shot ones


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the study trains and scores. None holdouts mean: every platform, every host, two networks."""

    seeds: tuple[int, ...] = (0, 1)  # every number is a mean over these, with the spread shown
    # training steps per model: the boosters fit to the end, a transformer stopped early under-ranks (session 25);
    # about 10 minutes per model on 2 CPU cores, seconds on a GPU
    steps: int = 8000
    finetune_steps: int = 300  # few-shot fine-tuning steps
    shots: tuple[int, ...] = SHOTS  # k programs per task and config from the held-out hardware
    networks: tuple[str, ...] | None = None  # by-network holdouts; None: two drawn with seed 0
    platforms: tuple[str, ...] | None = None  # by-platform holdouts
    hosts: tuple[str, ...] | None = None  # by-host holdouts
    splits: tuple[str, ...] = WHOLE_SPLITS
    split_models: tuple[str, ...] = MODELS
    transfer_models: tuple[str, ...] = TRANSFER_MODELS
    pruning: bool = True  # the pruning curves (by-task and by-host, every seed) and the collection simulation
    fractions: tuple[float, ...] = KEEP
    prune_model: str = "xfer"
    prune_methods: tuple[str, ...] = prune.METHODS
    prune_host: str | None = None  # by-host pruning and collection hold this host out; None: the first CPU host
    collect_methods: tuple[str, ...] = prune.COLLECT_METHODS  # () skips the collection simulation
    collect_shots: tuple[int, ...] = (16, 64)  # programs measured per task and config of the held-out host

    def networks_of(self, data: dataset.Dataset) -> tuple[str, ...]:
        names = sorted(data.networks)
        return self.networks or tuple(np.random.default_rng(0).permutation(names)[:2].tolist())

    def platforms_of(self, data: dataset.Dataset) -> tuple[str, ...]:
        """Holding out needs something left to train on: none for a one-platform dataset."""
        return self.platforms or (tuple(data.platform_names) if len(data.platform_names) > 1 else ())

    def hosts_of(self, data: dataset.Dataset) -> tuple[str, ...]:
        return self.hosts or (tuple(splits.hosts(data)) if len(splits.hosts(data)) > 1 else ())

    def prune_host_of(self, data: dataset.Dataset) -> str | None:
        """The host that by-host pruning and the collection simulation hold out (None: a one-host dataset)."""
        if self.prune_host or len(splits.hosts(data)) < 2:
            return self.prune_host
        gpu = {splits.host_of(p["name"]) for p in data.platforms if p["descriptor"].get("kind") == "gpu"}
        return next((h for h in splits.hosts(data) if h not in gpu), splits.hosts(data)[0])

    def check(self, data: dataset.Dataset) -> None:
        """Unknown names are one-line UserErrors before anything trains."""
        for what, chosen, known in (("network", self.networks_of(data), sorted(data.networks)),
                                    ("platform", self.platforms_of(data), data.platform_names),
                                    ("host", self.hosts_of(data), splits.hosts(data)),
                                    ("model", self.split_models, MODELS),
                                    ("transfer model", self.transfer_models, TRANSFER_MODELS),
                                    ("split", self.splits, WHOLE_SPLITS),
                                    ("pruning method", self.prune_methods, prune.METHODS),
                                    ("pruning host", (self.prune_host,) if self.prune_host else (), splits.hosts(data)),
                                    ("collection method", self.collect_methods, prune.COLLECT_METHODS)):
            unknown = sorted(set(chosen) - set(known))
            if unknown:
                raise UserError(f"unknown {what} {', '.join(unknown)}; this dataset has {', '.join(known)}")
            if what in ("platform", "host") and chosen and len(known) < 2:
                raise UserError(f"holding out a {what} needs a dataset of two {what}s or more; this one has {known[0]}")
        if any(not 0 < f <= 1 for f in self.fractions) or any(k < 0 for k in self.shots):
            raise UserError(f"keep fractions must be in (0, 1] and shots >= 0, got {self.fractions}, {self.shots}")
        if any(k < 1 for k in self.collect_shots):
            raise UserError(f"collection shots must be >= 1, got {self.collect_shots}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _cell(entry: dict | None, metric: str) -> str:
    """mean over seeds, with the spread (max - min over seeds) where there are several."""
    if not entry or entry.get(metric) is None:
        return "-"
    spread = (entry.get("spread") or {}).get(metric)
    return f"{entry[metric]:.3f}" + (f" ± {spread / 2:.3f}" if spread is not None else "")


def _margin(row: dict, metric: str = "pca") -> float | None:
    """xfer minus the best baseline (every other model in the row but xgb-target, which sees less data)."""
    others = [e[metric] for m, e in row.items() if m not in ("xfer", "xgb-target") and e and e.get(metric) is not None]
    if not row.get("xfer") or row["xfer"].get(metric) is None or not others:
        return None
    return row["xfer"][metric] - max(others)


def _shots_and_models_of(table: dict, by: str) -> tuple[list[int], list[str]]:
    """The shots and the transfer models that `table`'s by-<by> rows hold: a refreshed kind keeps its own."""
    shots = sorted({int(label.split("/", 1)[0].rsplit("-k", 1)[1]) for label in table
                    if label.startswith(f"by-{by}-k")})
    models = {m for label, row in table.items() if label.startswith(f"by-{by}-k") for m, e in row.items() if e}
    return shots, [m for m in TRANSFER_MODELS if m in models]


def transfer_section(table: dict, out: pathlib.Path) -> str:
    """Shots curves (mean over held-out configs or hosts) and the per-holdout table, for platforms and hosts."""
    panels, parts = [], []
    for by in ("host", "platform"):
        if not any(label.startswith(f"by-{by}-k") for label in table):
            parts.append(f"### by-{by}: not run (the dataset has one {by})")
            continue
        shots, models = _shots_and_models_of(table, by)
        rows = [[f"k={k}", m] + [_cell(table[f"by-{by}-k{k}/mean"].get(m), x) for x in METRICS]
                for k in shots for m in models]
        holdouts = sorted({label.split("/", 1)[1] for label in table if label.startswith(f"by-{by}-k")} - {"mean"})
        per_holdout = [[h, f"k={k}"] + [" / ".join(_cell(table[f"by-{by}-k{k}/{h}"].get(m), x) for x in ("pca", "top5"))
                                         for m in models] for h in holdouts for k in shots]
        for metric in ("pca", "top5"):
            panels.append(("k programs per task and config from the held-out hardware", f"{metric}, by-{by}",
                           {m: (shots, [(table[f"by-{by}-k{k}/mean"].get(m) or {}).get(metric) for k in shots])
                            for m in models}))
        parts += [f"### by-{by}: mean over {len(holdouts)} held-out {by}s ({', '.join(holdouts)})",
                  _table(["shots", "model", "PCA", "top-1", "top-5"], rows),
                  f"Per held-out {by}, PCA / top-5:", _table([f"held-out {by}", "shots", *models], per_holdout)]
    if panels:  # a one-host, one-config dataset holds nothing out
        plots.line_panels(out / "transfer.png", panels,
                          "transfer to unseen hardware (mean over held-out hosts / configs and seeds)", columns=2)
    return "\n\n".join([
        "## Transfer to unseen hardware",
        "by-host holds out every config of one host (one physical CPU): no sibling config of that host is in "
        "training, so only the hardware vector says where the programs run. by-platform holds out one config "
        "while its siblings stay in training. Zero-shot (k=0) the model sees only the held-out hardware's vector; "
        "with k>0 the neural models are fine-tuned from the zero-shot model on k measured programs per task and "
        "config of the held-out hardware (at most half of each group: the other half is the fixed test set), and "
        "the boosters are retrained with them. `xgb-target` trains on those k programs alone (what a user without "
        "a pretrained model has).", *(["![transfer](transfer.png)"] if panels else []), *parts])


SPLIT_TABLE_MODELS = ("xfer", "noHW", "mlp", "mlp-onehot", "xgb", "xgb+hw")  # xgb-target has no zero-shot row


def splits_section(table: dict) -> str:
    """Every model each row holds: rows of studies refreshed apart keep their own models."""
    labels = ["within-task", "by-task", *[label for label in table if label.startswith("by-network/")],
              "by-platform-k0/mean", "by-host-k0/mean"]
    labels += sorted(label for label in table if label.startswith("by-host-k0/") and label != "by-host-k0/mean")
    rows = []
    for label in labels:
        row = table.get(label, {})
        margin = _margin(row)
        rows += [[label, m, *[_cell(row[m], x) for x in METRICS], _fmt(margin) if m == "xfer" else ""]
                 for m in SPLIT_TABLE_MODELS if row.get(m)]
    return "\n\n".join([
        "## Every model on every split",
        "Mean over each study's seeds (the lines at the top), ± half the spread between seeds (a difference "
        "smaller than that is no difference). Every model of a row trains on the same programs. `xgb`: "
        "TVM-style pack-sum XGBoost, no hardware input; `xgb+hw`: the same booster with the hardware vector "
        "appended to every store row; `noHW`: xfer without hardware input; `mlp`: TenSet's segment-sum MLP "
        "(`mlp-onehot` in the transfer rows: a platform code instead of the hardware vector). by-network holds "
        "out every task of one network; the by-platform and by-host rows are the transfer study's zero-shot rows "
        "(each study's dataset, steps and seeds: the lines at the top). 'xfer - best' is xfer's PCA minus the "
        "best other model's.",
        _table(["split", "model", "PCA", "top-1", "top-5", "xfer - best"], rows)])


def _mean_and_spread(reports: list[dict], extra: tuple[str, ...] = ()) -> dict:
    """One entry from the same row's reports of several seeds: means of the metrics (and of `extra` fields) and
    "spread", max - min of each metric over two seeds or more; a metric no seed has stays None."""
    entry: dict = {"spread": {}}
    for metric in (*METRICS, *extra):
        values = [r[metric] for r in reports if r.get(metric) is not None]
        entry[metric] = float(np.mean(values)) if values else None
        if metric in METRICS:
            entry["spread"][metric] = float(np.ptp(values)) if len(values) > 1 else None
    return entry


def _cells(entry: dict) -> list[str]:
    return [_cell(entry, m) for m in METRICS]


def _pruning_over_seeds(runs: list[dict]) -> dict:
    """{method: {keep: report}} per seed -> the same, each entry a _mean_and_spread over the seeds plus the PCA lost
    against the full set: "pca_loss" (mean over seeds) and "worst_pca_loss" (the worst seed's). Each seed tests
    on its own split, so its loss is against its own full set: the split's spread cancels."""
    results = {}
    for method, per_keep in runs[0].items():
        results[method] = {}
        for keep in per_keep:
            reports = [run[method][keep] for run in runs]
            losses = [run[method]["1"]["pca"] - report["pca"] for run, report in zip(runs, reports)]
            results[method][keep] = {**_mean_and_spread(reports, ("kept_fraction",)),
                                     "seeds": [{x: r.get(x) for x in METRICS} for r in reports],
                                     "pca_loss": float(np.mean(losses)), "worst_pca_loss": max(losses)}
    return results


def _smallest_within_1pt(results: dict, loss: str = "pca_loss") -> dict | None:
    """The smallest kept fraction that loses at most 1 point of PCA against the full set: on the mean over seeds
    ("pca_loss"), or on every seed ("worst_pca_loss")."""
    best = None
    for method, per_keep in results.items():
        for keep, report in per_keep.items():
            if report[loss] <= 0.01 and (best is None or report["kept_fraction"] < best["kept_fraction"]):
                best = {"method": method, "keep": float(keep), "kept_fraction": report["kept_fraction"],
                        "pca": report["pca"], "full_pca": per_keep["1"]["pca"], "pca_loss": report["pca_loss"],
                        "worst_pca_loss": report["worst_pca_loss"]}
    return best


def pruning_section(studies: list[Study], out: pathlib.Path, plan: Plan, host: str | None) -> tuple[str, dict]:
    """Pruning for training (by-task and by-host curves, mean over the seeds' studies) and for collection."""
    fractions = tuple(sorted(set(plan.fractions) | {1.0}, reverse=True))
    methods, model = list(plan.prune_methods), plan.prune_model
    programs = int((~studies[0].data.failed).sum())  # measured, as the header and `xfer-jax info` count them
    text = ["## Dataset pruning",
            f"Pruning for training: {model} trained on a pruned training set, always tested on the same test set, "
            f"mean over seeds {', '.join(str(s.seed) for s in studies)} (± half the spread). Dataset: {programs} "
            f"programs; {plan.steps} training steps per model. Methods: "
            + ", ".join(methods) + " (see `xfer_jax/prune.py`)."]
    summary: dict = {"programs": programs, "steps": plan.steps, "seeds": [s.seed for s in studies],
                     "best_keep_at_1pt": {}, "best_keep_at_1pt_every_seed": {}, "detail": {}, "per_split": {}}
    for name, holdout in _prune_splits(host):
        results = _pruning_over_seeds([s.pruning(methods, fractions, model=model, split=name, holdout=holdout)
                                    for s in studies])
        best, every_seed = _smallest_within_1pt(results), _smallest_within_1pt(results, "worst_pca_loss")
        label = name if not holdout else f"{name} ({holdout} held out)"
        image = "pruning.png" if name == "by-task" else f"pruning-{name}.png"
        curves = {metric: {m: ([r["kept_fraction"] for r in per_keep.values()], [r[metric] for r in per_keep.values()])
                           for m, per_keep in results.items()} for metric in ("pca", "top5")}
        plots.line_panels(out / image, [("fraction of training programs kept", metric, curves[metric])
                                        for metric in ("pca", "top5")], f"pruning ({label}, {model})")
        verdict = ("no pruned set stayed within 1 point of PCA" if best is None or best["keep"] >= 1.0 else
                   f"smallest set within 1 point of full-data PCA (mean over seeds): {best['method']} keeping "
                   f"{best['kept_fraction']:.0%}, PCA {best['pca']:.3f} vs {best['full_pca']:.3f} (loss "
                   f"{best['pca_loss']:.3f}, worst seed {best['worst_pca_loss']:.3f})")
        if every_seed is not None and every_seed["keep"] < 1.0:
            verdict += (f"; on every seed: {every_seed['method']} keeping {every_seed['kept_fraction']:.0%} "
                        f"(worst seed's loss {every_seed['worst_pca_loss']:.3f})")
        rows = [[m, k, f"{r['kept_fraction']:.2f}", f"{r['pca_loss']:.3f} / {r['worst_pca_loss']:.3f}", *_cells(r)]
                for m, per_keep in results.items() for k, r in per_keep.items() if k != "1" or m == methods[0]]
        text += [f"### {label}", verdict, f"![pruning {label}]({image})",
                 _table(["method", "keep", "kept", "PCA loss (mean / worst seed)", "PCA", "top-1", "top-5"], rows)]
        summary["best_keep_at_1pt"][name] = best["kept_fraction"] if best else None
        summary["best_keep_at_1pt_every_seed"][name] = every_seed["kept_fraction"] if every_seed else None
        summary["detail"][name] = best
        summary["per_split"][name] = results
    if host and plan.collect_methods:
        collection_text, summary["collection"] = collection_section(studies, plan, host)
        text.append(collection_text)
    return "\n\n".join(text), summary


def collection_section(studies: list[Study], plan: Plan, host: str) -> tuple[str, dict]:
    """Pruning for collection: k programs per task and config measured on a held-out host, chosen by a method
    that cannot see their latency, then fine-tuning; mean over the seeds' studies."""
    runs = [s.collection(host, list(plan.collect_methods), plan.collect_shots, model=plan.prune_model) for s in studies]
    results = {key: {**_mean_and_spread([run[key] for run in runs]), "measured": runs[0][key].get("measured", 0)}
               for key in runs[0]}
    rows = [[key, str(entry["measured"]), *_cells(entry)] for key, entry in results.items()]
    few, many = min(plan.collect_shots), max(plan.collect_shots)
    data = studies[0].data
    half = float(np.mean(np.unique(data.group[splits.on_host(data, host)], return_counts=True)[1])) / 2
    bar = results.get(f"random-k{many}", {}).get("pca")
    reached = sorted(m for m in plan.collect_methods if bar is not None and m != "random"
                     and results.get(f"{m}-k{few}", {}).get("pca", 0) >= bar)
    verdict = (f"random selection needs {many} programs per task for PCA {bar:.3f}; at {few}, "
               + (f"{', '.join(reached)} reach it" if reached else "no method reaches it")) if bar is not None else ""
    text = "\n\n".join([
        f"### Pruning for collection ({host} held out)",
        f"Which programs to measure on a new host at all: from the half of each of {host}'s groups that is not "
        f"test, a method picks k per task and config without seeing their latency, {plan.prune_model} is "
        f"fine-tuned from its zero-shot checkpoint on them, and the fixed test half scores it. k0 is zero-shot. "
        f"The non-test half of a group holds {half:.0f} programs on average, which caps k. Methods: "
        + ", ".join(plan.collect_methods) + " (`prune.choose_to_measure`).", verdict,
        _table(["chosen", "measured", "PCA", "top-1", "top-5"], rows)])
    return text, {"host": host, "per_method": results, "methods_matching_random_at_max_k": reached}


TUNE_BASELINES = ("xgb", "xgb-pretrained")  # TVM's XGBModel from scratch; XGBoost fitted on the checkpoint's data


def _budget(report: dict) -> str:
    """'8 r' (rounds of every task), 'top-2' (the model's k best per task) or plain trials for older reports;
    ', round-robin' where the task scheduler was not MetaSchedule's gradient-based default; ', cold' where the
    candidates were timed on cold caches."""
    settings = report.get("settings") or {}
    if settings.get("top_k_per_task"):
        budget = f"top-{settings['top_k_per_task']}"
    elif settings.get("trials_per_round") and report.get("tasks"):
        budget = f"{report['trials'] / (report['tasks'] * settings['trials_per_round']):.3g} r"
    else:
        budget = f"{report['trials']} trials"
    scheduler = settings.get("task_scheduler", "gradient")
    budget = budget if scheduler == "gradient" else f"{budget}, {scheduler}"
    return f"{budget}, cold" if (settings.get("measure") or {}).get("cpu_cache_flush") else budget


def _remeasure_lines(out: pathlib.Path) -> list[dict]:
    """bench/remeasure.py's lines: per job, its models' interleaved timings and the jobs timed in the same pass."""
    path = out / "tune" / "remeasured.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _resolved(job: str) -> str:
    return str(pathlib.Path(job).resolve())


def _remeasured(lines: list[dict]) -> dict:
    """Per resolved tune job folder, its latest line."""
    return {_resolved(line["job"]): line for line in lines}


def _remeasure_passes(lines: list[dict]) -> dict:
    """{the jobs one pass timed together: {job: its models' timings}}; a later pass over the same jobs wins."""
    passes: dict = {}
    for line in lines:
        jobs = frozenset(map(_resolved, [line["job"], *line.get("with", [])]))
        passes.setdefault(jobs, {})[_resolved(line["job"])] = line["ms"]
    return passes


def tune_summary(report: dict, remeasured: dict | None = None) -> dict:
    """One `xfer-jax tune --json` report in the numbers issue-style targets use: trials and seconds until each
    model's estimate first reaches each baseline's final estimate, final latency over each baseline's, the cost
    model's share of wall time and the online updates."""
    models = report["models"]
    baselines = [b for b in TUNE_BASELINES if b in models]
    job = next((_job(e) for e in models.values() if _job(e)), None)  # every model of a report tuned in one job
    remeasured_line = (remeasured or {}).get(job, {})
    return {
        "network": report["network"], "platform": report["platform"], "budget": _budget(report),
        "seed": (report.get("settings") or {}).get("seed"), "trials": report["trials"], "tasks": report.get("tasks"),
        "final_latency_ms": {n: e["final_latency_ms"] for n, e in models.items()},
        "wall_s": {n: e["wall_s"] for n, e in models.items()},
        "trials_to": {b: curves.trials_to_baseline(models, b) for b in baselines},
        "seconds_to": {b: curves.seconds_to_baseline(models, b) for b in baselines},
        "final_ratio": {b: {n: e["final_latency_ms"] / models[b]["final_latency_ms"] for n, e in models.items()}
                        for b in baselines},
        "model_share_of_wall": {n: e["model_s"] / max(e["wall_s"], 1e-9) for n, e in models.items()},
        "online_updates": {n: e["online_updates"] for n, e in models.items() if "online_updates" in e},
        "remeasured_ms": {n: remeasured_line.get("ms", {}).get(n, {}).get("median") for n in models},
        "job": job,
        "checkpoint": report.get("checkpoint")}


def _job(entry: dict) -> str | None:
    """The tune work folder (OUT/NETWORK) a model's entry was tuned in."""
    return str(pathlib.Path(entry["database"]).resolve().parent) if entry.get("database") else None


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _reached(run: dict, baseline: str, name: str) -> str:
    if baseline not in run["trials_to"]:
        return "-"
    trials = run["trials_to"][baseline].get(name)
    return "never" if trials is None else f"{trials} ({trials / run['trials']:.0%})"


def _updates(entry: dict | None) -> str:
    if not entry:
        return "-"
    if "slope" in entry:  # xfer (residual trees)
        return f"{entry['refits']} refits, slope {entry['slope']:g}"
    if "refits" in entry:  # xfer-booster
        return f"{entry['refits']} refits of {entry['tries']}, weight {entry['weight']:g}"
    if "kept" not in entry:  # xgb-pretrained
        return f"{entry.get('boosted', 0)} boosted"
    stalled = f", {entry['stalled_tasks']} tasks stalled" if "stalled_tasks" in entry else ""  # xfer-explore
    partner = f", xgb {entry['partner_boosted']} boosted, weight {entry.get('partner_weight', 0.5):g}" \
        if "partner_boosted" in entry else ""  # xfer+xgb
    return f"{entry['kept']} of {entry['tried']}{stalled}{partner}"


def _remeasured_together(passes: dict, run: dict, reference: dict) -> tuple[float, float] | None:
    """(xgb's, xfer's) median ms from the latest bench/remeasure.py pass that timed both runs' networks, if any."""
    found = None
    for timings in passes.values():
        if run["job"] in timings and reference["job"] in timings:
            xgb, xfer = timings[reference["job"]].get("xgb"), timings[run["job"]].get("xfer")
            found = (xgb["median"], xfer["median"]) if xgb and xfer else found
    return found


def _top_k_rows(runs: dict, passes: dict) -> tuple[list[list[str]], dict]:
    """Runs that measured only the model's k best per task, against xgb's longest run on the same network and
    platform: the share of its performance (its latency over ours) and of its wall time. Latencies remeasured
    together where a pass timed both runs (tune times each network once, minutes or sessions apart), else tune's."""
    rows, summary = [], {}
    for stem, run in runs.items():
        if not run["budget"].startswith("top-"):
            continue
        references = [s for s, r in runs.items() if "xgb" in r["final_latency_ms"]
                      and not r["budget"].startswith("top-")
                      and (r["network"], r["platform"]) == (run["network"], run["platform"])]
        if not references:
            continue
        together = {s: ms for s in references if (ms := _remeasured_together(passes, run, runs[s]))}
        reference_stem = max(together or references, key=lambda s: (runs[s]["trials"], s))
        reference = runs[reference_stem]
        xgb_ms, xfer_ms = together.get(reference_stem) or (reference["final_latency_ms"]["xgb"],
                                                            run["final_latency_ms"]["xfer"])
        performance = xgb_ms / xfer_ms
        wall_share = run["wall_s"]["xfer"] / reference["wall_s"]["xgb"]
        timing = "remeasured together" if together else "as tuned"
        summary[stem] = {"reference": reference_stem, "performance_vs_xgb_full": performance,
                         "wall_vs_xgb_full": wall_share, "timing": timing}
        rows.append([stem, str(run["trials"]), f"{xfer_ms:.2f}",
                     f"{xgb_ms:.2f} ({reference_stem}, {reference['trials']} trials)", timing,
                     f"{performance:.0%}", f"{run['wall_s']['xfer']:.0f}", f"{wall_share:.0%}"])
    return rows, summary


def _seen(report: dict) -> str:
    """Whether the checkpoint trained on the tuned platform ("yes"), on other configs of its host ("host"), or
    on neither ("no")."""
    trained = (report.get("checkpoint") or {}).get("trained_on_platforms")
    if trained is None:
        return "-"
    if report["platform"] in trained:
        return "yes"
    return "host" if splits.host_of(report["platform"]) in {splits.host_of(p) for p in trained} else "no"


def tuning_section(out: pathlib.Path) -> tuple[str, dict]:
    paths = sorted((out / "tune").glob("*.json"))
    if not paths:
        return ("## Tuning\n\nNo tune reports in reports/tune/ yet "
                "(`xfer-jax tune ... --json reports/tune/NET.json`)."), {}
    lines = _remeasure_lines(out)
    runs, rows, remeasured = {}, [], _remeasured(lines)
    for path in paths:
        report = json.loads(path.read_text())
        plots.tuning_curves(report, path.with_suffix(".png"))
        run = runs[path.stem] = tune_summary(report, remeasured)
        seen = _seen(report)
        for name, entry in report["models"].items():
            ratios = [_fmt(run["final_ratio"][b][name]) if b in run["final_ratio"] else "-" for b in TUNE_BASELINES]
            rows.append([path.stem, seen if name.startswith("xfer") else "-", run["budget"],
                         "-" if run["seed"] is None else str(run["seed"]), name,
                         f"{entry['final_latency_ms']:.2f} ± {entry['latency_spread_ms']:.2f}"
                         + ("" if entry.get("output_matches_untuned", True) else " (output differs)"),
                         _fmt_ms(run["remeasured_ms"][name]), str(entry["trials"]),
                         *[_reached(run, b, name) for b in TUNE_BASELINES], *ratios,
                         f"{run['model_share_of_wall'][name]:.1%}", _updates(entry.get("online_updates")),
                         f"{entry['wall_s']:.0f}"])
    top_k_rows, top_k = _top_k_rows(runs, _remeasure_passes(lines))
    images = "\n".join(f"![{p.stem}](tune/{p.stem}.png)" for p in paths)
    text = "\n\n".join([
        "## Tuning whole networks",
        "`xfer-jax tune` with an xfer checkpoint against TVM's XGBModel from scratch (`xgb`) and XGBoost fitted on the "
        "checkpoint's training programs and updated online (`xgb-pretrained`), same search settings, budget and seed. "
        "Column 'seen': whether the checkpoint trained on the tuned platform ('yes'), only on other configs of its host"
        " ('host'), or on neither ('no'); where it never saw the platform, xfer starts zero-shot from the hardware "
        "vector and adapts online by fine-tuning (`xfer-frozen`: the same checkpoint without online updates; `xfer"
        "-residual`: the checkpoint frozen, with trees refitted to its errors on the run's measurements added to its "
        "scores, named `xfer` and its fine-tuning twin `xfer-finetune` in the runs tagged `-residual`; `xfer-explore`: "
        "xfer with a booster fitted on the run's measurements blended into every task whose best stops improving; "
        "`xfer+xgb`: xfer and xgb-pretrained's booster ranking together, their z-scores added per task, each adapting "
        "online as it does alone). Budget: rounds of 8 trials per task ('r'), or top-k (only the model's k best "
        "candidates of each task measured); ', cold': candidates timed on cold CPU caches (ten single runs after a "
        "flush), else warm repeats. Since session 32 a program counts as its task's best, and is compiled, only if it "
        "computes what the task's untuned code computes on random inputs; '(output differs)' marks an earlier run "
        "whose compiled network did not. 'to xgb' and 'to xgb-pre': trials until the estimated network latency (sum of "
        "weight x best task latency) first reaches that baseline's final estimate, and the share of the budget. '/ "
        "xgb', '/ xgb-pre': final measured end-to-end latency over the baseline's, at equal trials. Remeasured: the "
        "median of `bench/remeasure.py`'s passes, which time every model's compiled network again, interleaved (tune "
        "times each once, minutes apart). Share: seconds in the cost model (featurising, predicting, updating) over "
        "wall time. Updates: fine-tuning updates kept of tried (and xfer-explore's stalled tasks), residual refits and "
        "the slope that puts the model's scores on the label scale, xfer-booster's refits of tries and its final "
        "weight, xgb-pretrained's boosting updates (and xfer+xgb's).",
        _table(["run", "seen", "budget", "seed", "model", "latency ms", "remeasured", "trials", "to xgb",
                "to xgb-pre", "/ xgb", "/ xgb-pre", "share", "updates", "wall s"], rows)]
        + (["### Only the model's k best per task measured",
            "Only xfer's k best-scored candidates of each task measured, against xgb's longest run on the same "
            "network and platform, preferring one whose networks `bench/remeasure.py` timed together with this "
            "run's. Performance: xgb's latency over this run's, both remeasured together where they were, else as "
            "tune timed each.",
            _table(["run", "trials", "latency ms", "xgb's full-budget ms (run, trials)", "timing", "performance",
                    "wall s", "wall / xgb's"], top_k_rows)] if top_k_rows else [])
        + [images])
    return text, {"runs": runs, "top_k": top_k}


def _parts(data: dataset.Dataset, plan: Plan) -> list[tuple[int, str, str | None]]:
    """Independent pieces of the study, (seed, kind, holdout), the costliest first."""
    pieces = ([("host", h) for h in plan.hosts_of(data)] + [("platform", p) for p in plan.platforms_of(data)]
              + [("network", n) for n in plan.networks_of(data)] + [("split", name) for name in plan.splits])
    parts = [(seed, kind, name) for kind, name in pieces for seed in plan.seeds]
    if plan.pruning:
        host = plan.prune_host_of(data)
        for seed in plan.seeds:
            for split in _prune_splits(host):
                parts += [(seed, "prune", (split, m)) for m in plan.prune_methods]
                parts += [(seed, "prune-full", (split, plan.prune_methods[0]))]
            if host and plan.collect_methods:
                parts += [(seed, "collect", host)]
    return parts


PRUNING_PARTS = ("prune", "prune-full", "collect")  # the parts the pruning section computes or reads itself
SPLIT_PARTS = ("network", "split")  # the split table's own rows; "host" and "platform" are the transfer study's


def _prune_splits(host: str | None) -> list[tuple[str, str | None]]:
    """(split, holdout): by-task, and by-host holding out `host` where the dataset has a second host."""
    return [("by-task", None)] + ([("by-host", host)] if host else [])


def compute_part(part: tuple, data_path: pathlib.Path, work: pathlib.Path, plan: Plan) -> dict:
    """Train and score one part of the study (cached in `work`); returns {split label: {model: report}}."""
    seed, kind, name = part
    study = Study(dataset.load(data_path), work, steps=plan.steps, finetune_steps=plan.finetune_steps, seed=seed,
                  log=lambda line: print(f"[seed {seed} {name}] {line}", flush=True))
    return _run_part(study, kind, name, plan)


def _run_part(study: Study, kind: str, name, plan: Plan) -> dict:
    """`name`: the holdout or split the part computes; for pruning parts ((split, holdout), method)."""
    if kind in ("host", "platform"):
        return study.flatten_transfer(study.transfer([name], list(plan.transfer_models), plan.shots, by=kind), kind)
    if kind == "network":
        return study.compare([("by-network", name)], list(plan.split_models))
    if kind == "split":
        return study.compare([name], list(plan.split_models))
    if kind == "collect":
        study.collection(name, list(plan.collect_methods), plan.collect_shots, model=plan.prune_model)
        return {}
    fractions = (1.0,) if kind == "prune-full" else tuple(f for f in plan.fractions if f < 1.0)
    (split, holdout), method = name
    study.pruning([method], fractions, model=plan.prune_model, split=split, holdout=holdout)
    return {}


def _compute_in_parallel(jobs: int, parts: list, data_path: pathlib.Path, work: pathlib.Path, plan: Plan) -> None:
    """Independent parts in `jobs` processes (each trains its own models into the shared cache); the sections
    below then read every result from the cache."""
    import concurrent.futures
    import multiprocessing

    # the pruning curves' full points are the models the split and host parts train, and the collection parts
    # fine-tune the zero-shot by-host ones: each goes in a later wave, so that no two processes train one
    # checkpoint folder at once
    later = ("prune-full", "collect")
    waves = [[p for p in parts if p[1] not in later]] + [[p for p in parts if p[1] == kind] for kind in later]
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for wave in waves:
            for future in concurrent.futures.as_completed([pool.submit(compute_part, part, data_path, work, plan)
                                                           for part in wave]):
                future.result()


def over_seeds(tables: list[dict]) -> dict:
    """{label: {model: {pca, top1, top5 (means over seeds), spread: {metric: max - min}, seeds: [per seed]}}}."""
    combined: dict = {}
    for label in tables[0]:
        combined[label] = {}
        for model in tables[0][label]:
            runs = [t[label][model] for t in tables if t.get(label, {}).get(model) is not None]
            if not runs:
                continue
            combined[label][model] = {"seeds": [{x: r.get(x) for x in METRICS} for r in runs],
                                      **_mean_and_spread(runs)}
    return combined


def _with_means(table: dict) -> dict:
    """Adds ".../mean" over the holdouts of by-network and of every by-host / by-platform shots row. Parts run one
    holdout each, so a mean they carry covers that holdout alone and is recomputed here over all of them."""
    prefixes = {label.rsplit("/", 1)[0] for label in table if "/" in label}
    for prefix in prefixes:
        rows = [row for label, row in table.items() if label.startswith(prefix + "/") and not label.endswith("/mean")]
        if rows:
            models = dict.fromkeys(m for row in rows for m in row)
            table[f"{prefix}/mean"] = {m: mean_report([row.get(m) for row in rows]) for m in models}
    return table


def build(data_path: pathlib.Path, out: pathlib.Path, plan: Plan | None = None, log: Callable[[str], None] = print,
          jobs: int = 1) -> dict:
    """Compute what is missing, then write out/README.md, out/summary.json and the plots. Returns the summary.

    With jobs > 1 the missing parts are computed in that many processes first.
    """
    plan = plan or Plan()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = dataset.load(data_path)
    plan.check(data)
    work = out / "work"
    parts = _parts(data, plan)
    if jobs > 1:
        _compute_in_parallel(jobs, parts, pathlib.Path(data_path), work, plan)
    table = _table_over_seeds(data, work, plan, log, [p for p in parts if p[1] not in PRUNING_PARTS])
    info = dataset.summary(data)
    sections = [splits_section(table), transfer_section(table, out)]
    pruning = None
    if plan.pruning:
        pruning_text, pruning = pruning_section(_studies(data, work, plan, log), out, plan, plan.prune_host_of(data))
        sections.append(pruning_text)
    tuning_text, tuning = tuning_section(out)
    sections.append(tuning_text)
    studies = {"splits": _computed_on(info["programs"], plan.steps, plan.seeds),
               **_transfer_studies(data, info["programs"], plan, TRANSFER_KINDS)}
    if pruning:
        studies["pruning"] = _computed_on(pruning["programs"], pruning["steps"], pruning["seeds"])
    summary = {
        "data": {"path": str(data_path), "programs": info["programs"], "platforms": info["platforms"],
                 "networks": info["networks"]},
        "studies": studies,
        "splits": table,
        "by_host": {label: row for label, row in table.items() if label.startswith("by-host")},
        "xfer_minus_best_baseline": {label: {x: _margin(row, x) for x in METRICS} for label, row in table.items()},
        "pruning": pruning,
        "tuning": tuning,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "README.md").write_text("\n\n".join([_header(data_path, info, studies), *sections]) + "\n")
    return summary


def _table_over_seeds(data: dataset.Dataset, work: pathlib.Path, plan: Plan, log: Callable[[str], None],
                      parts: list) -> dict:
    """The split and transfer rows of `parts` (computed or read from the cache), means over the plan's seeds."""
    tables = {seed: {} for seed in plan.seeds}
    for seed, kind, name in parts:
        tables[seed].update(_run_part(_studies(data, work, plan, log, (seed,))[0], kind, name, plan))
    return over_seeds([_with_means(t) for t in tables.values()])


def _computed_on(programs: int, steps: int, seeds, **extra) -> dict:
    """What one study was computed on, as summary.json["studies"] and the report's header keep it."""
    return {"programs": programs, "steps": steps, "seeds": list(seeds), **extra}


TRANSFER_KINDS = ("host", "platform")


def _transfer_studies(data: dataset.Dataset, programs: int, plan: Plan, kinds: tuple[str, ...]) -> dict:
    """{"by-host": ..., "by-platform": ...} provenance for the transfer kinds the plan holds something out of;
    `programs`: the measured ones, as every study counts them."""
    holdouts = {"host": plan.hosts_of(data), "platform": plan.platforms_of(data)}
    return {f"by-{by}": _computed_on(programs, plan.steps, plan.seeds, finetune_steps=plan.finetune_steps,
                                     shots=list(plan.shots), held_out=list(holdouts[by]))
            for by in kinds if holdouts[by]}


STUDY_NAMES = {"splits": "every model on every split", "by-host": "transfer to unseen hosts",
               "by-platform": "transfer to an unseen config of a seen host", "pruning": "dataset pruning"}


def _header(data_path: pathlib.Path, info: dict, studies: dict) -> str:
    """The report's title and what each study was computed on: sections refreshed alone (`--splits-only`,
    `--pruning-only`) can differ from the rest in dataset size, steps and seeds."""
    lines = [f"- {STUDY_NAMES[name]}: {run['programs']} programs, {run['steps']} training steps"
             + (f" (fine-tuning {run['finetune_steps']})" if "finetune_steps" in run else "")
             + f", seeds {', '.join(map(str, run['seeds']))}"
             + (f", shots {', '.join(map(str, run['shots']))}" if "shots" in run else "")
             + (f", held out {', '.join(run['held_out'])}" if "held_out" in run else "")
             for name, run in ((n, studies[n]) for n in STUDY_NAMES if n in studies)]
    return "\n\n".join([
        "# xfer-jax study report",
        "Generated by `xfer-jax report` from the committed dataset and tune results; do not edit by hand. "
        "Definitions: ../../shared/METRICS.md (PCA, top-k score, splits).",
        f"Dataset `{data_path}` now: {info['programs']} measured programs, {info['tasks']} tasks, platforms "
        f"{', '.join(info['platforms'])}, networks {', '.join(info['networks'])}. Each study was computed on:",
        "\n".join(lines)])


def _studies_of(summary: dict) -> dict:
    """What each study of an existing summary was computed on. A summary written before "studies" existed had one
    dataset and plan for the split and transfer tables; one written before each transfer kind kept its own
    provenance had one "transfer" entry for both."""
    studies = dict(summary.get("studies") or {})
    if not studies:
        run = _computed_on(summary["data"]["programs"], summary["plan"]["steps"], summary["plan"]["seeds"])
        studies = {"splits": run, "transfer": {**run, "finetune_steps": summary["plan"]["finetune_steps"]}}
        if summary.get("pruning"):
            pruning = summary["pruning"]
            studies["pruning"] = _computed_on(pruning["programs"], pruning["steps"], pruning["seeds"])
    transfer = studies.pop("transfer", None)
    if transfer:
        studies.update({f"by-{by}": transfer for by in TRANSFER_KINDS
                        if any(label.startswith(f"by-{by}-k") for label in summary.get("splits", {}))})
    return studies


def _with_header(text: str, header: str) -> str:
    """`text` with everything before its first `## ` section replaced by `header`."""
    first = text.find("\n## ")
    return header + "\n\n" + (text[first + 1:] if first >= 0 else "")


def _studies(data: dataset.Dataset, work: pathlib.Path, plan: Plan, log: Callable[[str], None],
             seeds: tuple[int, ...] | None = None) -> list[Study]:
    return [Study(data, work, steps=plan.steps, finetune_steps=plan.finetune_steps, seed=seed, log=log)
            for seed in (plan.seeds if seeds is None else seeds)]


def _existing_report(out: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """out/README.md and out/summary.json, which a partial rewrite needs; a one-line UserError without them."""
    readme, summary_path = out / "README.md", out / "summary.json"
    if not readme.exists() or not summary_path.exists():
        raise UserError(f"no report in {out} yet: run `xfer-jax report --out {out}` once first")
    return readme, summary_path


def _with_section(text: str, heading: str, section: str, before: str | None = None) -> str:
    """`text` with its `## heading` section (up to the next `## `) replaced by `section`; without one, `section`
    goes before the `## before` section, or last."""
    start = text.find(f"\n## {heading}")
    if start >= 0:
        following = text.find("\n## ", start + 1)
        end = following if following >= 0 else len(text)
    else:
        start = text.find(f"\n## {before}") if before and f"\n## {before}" in text else len(text.rstrip("\n"))
        end = start
    rest = text[end:].lstrip("\n")
    return text[:start].rstrip("\n") + "\n\n" + section + "\n" + ("\n" + rest if rest else "")


def refresh_tuning(out: pathlib.Path) -> dict:
    """Rewrite only the tuning part of out/README.md and out/summary.json from out/tune/: new tune results
    without retraining the study. Returns the tuning summary."""
    out = pathlib.Path(out)
    readme, summary_path = _existing_report(out)
    tuning_text, tuning = tuning_section(out)
    summary = json.loads(summary_path.read_text())
    summary["tuning"] = tuning
    readme.write_text(_with_section(readme.read_text(), "Tuning", tuning_text))
    summary_path.write_text(json.dumps(summary, indent=1))
    return tuning


def refresh_pruning(data_path: pathlib.Path, out: pathlib.Path, plan: Plan, log: Callable[[str], None] = print,
                    jobs: int = 1) -> dict:
    """Compute what is missing of the pruning study alone, then rewrite only its section of out/README.md and
    summary["pruning"]: the pruning curves without the split and transfer tables. Returns the pruning summary."""
    out = pathlib.Path(out)
    readme, summary_path = _existing_report(out)
    data = dataset.load(data_path)
    plan = dataclasses.replace(plan, pruning=True)
    plan.check(data)
    work = out / "work"
    if jobs > 1:
        parts = [p for p in _parts(data, plan) if p[1] in PRUNING_PARTS]
        _compute_in_parallel(jobs, parts, pathlib.Path(data_path), work, plan)
    pruning_text, pruning = pruning_section(_studies(data, work, plan, log), out, plan, plan.prune_host_of(data))
    summary = json.loads(summary_path.read_text())
    studies = {**_studies_of(summary), "pruning": _computed_on(pruning["programs"], pruning["steps"], pruning["seeds"])}
    text = _with_section(readme.read_text(), "Dataset pruning", pruning_text, before="Tuning")
    readme.write_text(_with_header(text, _header(data_path, dataset.summary(data), studies)))
    summary.pop("plan", None)
    summary.update(pruning=pruning, studies=studies)
    summary_path.write_text(json.dumps(summary, indent=1))
    return pruning


def _is_split_row(label: str) -> bool:
    return label in WHOLE_SPLITS or label.startswith("by-network/")


def _recomputed_rows(data_path: pathlib.Path, out: pathlib.Path, plan: Plan, part_kinds: tuple[str, ...],
                     log: Callable[[str], None], jobs: int) -> tuple[dataset.Dataset, dict, dict]:
    """(dataset, the rows of the plan's parts of `part_kinds` computed or read from the cache, the existing
    summary) for a partial refresh of an existing report."""
    out = pathlib.Path(out)
    _existing_report(out)
    data = dataset.load(data_path)
    plan.check(data)
    parts = [p for p in _parts(data, plan) if p[1] in part_kinds]
    if jobs > 1:
        _compute_in_parallel(jobs, parts, pathlib.Path(data_path), out / "work", plan)
    rows = _table_over_seeds(data, out / "work", plan, log, parts)
    return data, rows, json.loads((out / "summary.json").read_text())


def _rewrite_tables(data_path: pathlib.Path, out: pathlib.Path, info: dict, summary: dict, table: dict,
                    studies: dict, transfer: bool) -> None:
    """summary.json and README.md's header and split table (and with `transfer` its transfer section) from
    `table`; the rest stays."""
    out = pathlib.Path(out)
    summary.pop("plan", None)  # written before "studies" said what each part was computed on, and stale after this
    summary.update(splits=table, studies=studies,
                   by_host={label: row for label, row in table.items() if label.startswith("by-host")},
                   xfer_minus_best_baseline={label: {x: _margin(row, x) for x in METRICS}
                                             for label, row in table.items()})
    readme = out / "README.md"
    text = _with_section(readme.read_text(), "Every model on every split", splits_section(table),
                         before="Transfer to unseen hardware")
    if transfer:
        text = _with_section(text, "Transfer to unseen hardware", transfer_section(table, out),
                             before="Dataset pruning")
    readme.write_text(_with_header(text, _header(data_path, info, studies)))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


def refresh_splits(data_path: pathlib.Path, out: pathlib.Path, plan: Plan, log: Callable[[str], None] = print,
                   jobs: int = 1) -> dict:
    """Compute what is missing of the split table's own rows (within-task, by-task, by-network) and rewrite only
    them: the transfer study's rows and the pruning study stay as they were (the header says what each was
    computed on). Returns the new rows."""
    data, rows, summary = _recomputed_rows(data_path, out, plan, SPLIT_PARTS, log, jobs)
    info = dataset.summary(data)
    studies = {**_studies_of(summary), "splits": _computed_on(info["programs"], plan.steps, plan.seeds)}
    table = {**{label: row for label, row in summary["splits"].items() if not _is_split_row(label)}, **rows}
    _rewrite_tables(data_path, out, info, summary, table, studies, transfer=False)
    return rows


def refresh_transfer(data_path: pathlib.Path, out: pathlib.Path, plan: Plan, kinds: tuple[str, ...] = TRANSFER_KINDS,
                     log: Callable[[str], None] = print, jobs: int = 1) -> dict:
    """Compute what is missing of the transfer study's `kinds` ("host", "platform") and rewrite only their rows:
    every other row, the pruning study and each kind left out keep what they were computed on (the header says).
    A refreshed kind's rows are all replaced: its means cover the plan's holdouts alone. Returns the new rows."""
    unknown = sorted(set(kinds) - set(TRANSFER_KINDS))
    if unknown:
        raise UserError(f"unknown transfer kind {', '.join(unknown)}; there are {', '.join(TRANSFER_KINDS)}")
    data, rows, summary = _recomputed_rows(data_path, out, plan, kinds, log, jobs)
    refreshed = tuple(f"by-{by}-k" for by in kinds)
    dropped = sorted({label.split("/", 1)[1] for label in summary["splits"] if label.startswith(refreshed)}
                     - {label.split("/", 1)[1] for label in rows})
    if dropped:
        log(f"dropped the rows of {', '.join(dropped)}: name every holdout to keep (--hosts, --platforms)")
    studies = {name: run for name, run in _studies_of(summary).items() if name not in {f"by-{by}" for by in kinds}}
    info = dataset.summary(data)
    studies.update(_transfer_studies(data, info["programs"], plan, kinds))
    table = {**{label: row for label, row in summary["splits"].items() if not label.startswith(refreshed)}, **rows}
    _rewrite_tables(data_path, out, info, summary, table, studies, transfer=True)
    return rows


def parse_list(text: str, kind=str, what: str = "values") -> tuple:
    """Comma-separated values; a bad one is a one-line UserError."""
    try:
        values = tuple(kind(x.strip()) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values:
        raise UserError(f"{what} must be a comma-separated list, got {text!r}")
    return values


def parse_fractions(text: str) -> tuple[float, ...]:
    values = parse_list(text, float, "--keep-fractions")
    if any(not 0 < v <= 1 for v in values):
        raise UserError(f"--keep-fractions must be fractions in (0, 1], got {text!r}")
    return values
