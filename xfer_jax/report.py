"""`xfer-jax report`: the transfer, pruning, split and tuning study, regenerated from data and tune results.

Every number in reports/README.md and reports/summary.json is computed here, from the dataset and from the
`xfer-jax tune --json` reports in reports/tune/. Trained models and scores are cached under reports/work/, so a
rerun only trains what is missing.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable

import numpy as np

from . import curves, dataset, prune
from .errors import UserError
from .study import MODELS, SHOTS, TRANSFER_MODELS, Study, mean_report

METRICS = ("pca", "top1", "top5")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _plot(path: pathlib.Path, panels: list[tuple[str, str, dict[str, tuple[list, list]]]], title: str) -> None:
    """panels: (x label, y label, {line name: (xs, ys)})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for axis, (xlabel, ylabel, lines) in zip(np.atleast_1d(axes), panels):
        for name, (xs, ys) in lines.items():
            points = [(x, y) for x, y in zip(xs, ys) if y is not None]
            if points:
                axis.plot(*zip(*points), marker="o", label=name)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        if axis.get_lines():
            axis.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def transfer_section(study: Study, out: pathlib.Path, shots: tuple[int, ...],
                     models: tuple[str, ...] = TRANSFER_MODELS) -> tuple[str, dict]:
    results = study.transfer(study.data.platform_names, list(models), shots)
    mean = {f"k{k}": {m: mean_report([results[p][f"k{k}"][m] for p in results]) for m in models} for k in shots}
    rows = [[f"k={k}", m] + [_fmt((mean[f"k{k}"][m] or {}).get(x)) for x in METRICS] for k in shots for m in models]
    per_platform = [[p, f"k={k}"] + [" / ".join(_fmt((results[p][f"k{k}"][m] or {}).get(x)) for x in ("pca", "top5"))
                                      for m in models] for p in results for k in shots]
    _plot(out / "transfer.png", [("k programs per task from the held-out platform", metric,
                                  {m: (list(shots), [(mean[f"k{k}"][m] or {}).get(metric) for k in shots])
                                   for m in models}) for metric in ("pca", "top5")],
          "leave one platform out (mean over held-out platforms)")
    text = "\n\n".join([
        "## Transfer to an unseen platform (leave one platform out)",
        "Each CPU config is held out in turn. Zero-shot (k=0) the model sees only the held-out config's "
        "hardware vector; with k>0 it is fine-tuned on k measured programs per task of that config (at most "
        "half of each group: the other half is the fixed test set). Baselines: `noHW` (no hardware input), "
        "`mlp-onehot` (TenSet MLP with a one-hot platform code), `xgb` (TVM-style pack-sum XGBoost on every "
        "training program, no hardware input), `xgb-target` (XGBoost trained only on the "
        "held-out config's k programs, which is what a user without xfer-jax has).",
        "Mean over held-out platforms:", _table(["shots", "model", "PCA", "top-1", "top-5"], rows),
        "![transfer](transfer.png)", "Per held-out platform, PCA / top-5:",
        _table(["held out", "shots", *models], per_platform)])
    return text, {"per_platform": results, "mean": mean}


def splits_section(study: Study, transfer_mean: dict, models: tuple[str, ...] = MODELS) -> tuple[str, dict]:
    table = study.compare(list(SPLIT_NAMES), list(models))
    zero_shot = {m: transfer_mean["k0"].get({"mlp": "mlp-onehot"}.get(m, m)) for m in models}
    table["by-platform (k=0, mean)"] = {m: r for m, r in zero_shot.items() if r is not None}
    rows = [[label, m] + [_fmt((row.get(m) or {}).get(x)) for x in METRICS]
            for label, row in table.items() for m in models if m in row]
    text = "\n\n".join([
        "## One model, four splits",
        "The same models under each split of METRICS.md. within-task is the most optimistic: the test programs "
        "come from groups seen in training. by-network holds out every task of one network; by-platform holds "
        "out a whole hardware config (zero-shot here; the mlp row there is mlp-onehot).",
        _table(["split", "model", "PCA", "top-1", "top-5"], rows)])
    return text, table


def pruning_section(study: Study, out: pathlib.Path, fractions: tuple[float, ...], model: str = "xfer",
                    methods: tuple[str, ...] = prune.METHODS) -> tuple[str, dict]:
    results = study.pruning(list(methods), fractions, model=model)
    full = results[methods[0]]["1"]["pca"]
    best = None
    for method, per_keep in results.items():
        for keep, report in per_keep.items():
            if report["pca"] >= full - 0.01 and (best is None or report["kept_fraction"] < best["kept_fraction"]):
                best = {"method": method, "keep": float(keep), "kept_fraction": report["kept_fraction"],
                        "pca": report["pca"], "full_pca": full}
    rows = [[m, k, f"{r['kept_fraction']:.2f}"] + [_fmt(r.get(x)) for x in METRICS]
            for m, per_keep in results.items() for k, r in per_keep.items()]
    _plot(out / "pruning.png", [("fraction of training programs kept", metric,
                                 {m: ([r["kept_fraction"] for r in per_keep.values()],
                                      [r.get(metric) for r in per_keep.values()]) for m, per_keep in results.items()})
                                for metric in ("pca", "top5")], f"pruning (by-task split, {model})")
    verdict = ("no pruned set stayed within 1 point of PCA" if best is None or best["keep"] >= 1.0 else
               f"smallest set within 1 point of full-data PCA: {best['method']} keeping "
               f"{best['kept_fraction']:.0%} (PCA {best['pca']:.3f} vs {full:.3f})")
    text = "\n\n".join([
        "## Dataset pruning",
        f"{model} trained on a pruned by-task training set, always tested on the same held-out tasks. Methods: "
        + ", ".join(methods) + " (see `xfer_jax/prune.py`).", verdict,
        "![pruning](pruning.png)", _table(["method", "keep", "kept", "PCA", "top-1", "top-5"], rows)])
    return text, {"per_method": results, "best_keep_at_1pt": best}


def tuning_section(out: pathlib.Path) -> tuple[str, dict]:
    reports = sorted((out / "tune").glob("*.json"))
    if not reports:
        return "## Tuning\n\nNo tune reports in reports/tune/ yet (`xfer-jax tune ... --json reports/tune/NET.json`).", {}
    rows, summary = [], {}
    for path in reports:
        report = json.loads(path.read_text())
        models = report["models"]
        curves.plot_curves(report, path.with_suffix(".png"))
        to_base, time_to_base = curves.trials_to_baseline(models), curves.seconds_to_baseline(models)
        baseline = models.get("xgb")
        for name, entry in models.items():
            ratio = entry["final_latency_ms"] / baseline["final_latency_ms"] if baseline else None
            share = entry["model_s"] / max(entry["wall_s"], 1e-9)
            reached = time_to_base.get(name)
            seen = (report.get("checkpoint") or {}).get("trained_on_platforms")
            rows.append([report["network"], report["platform"],
                         "-" if name != "xfer" or seen is None else ("yes" if report["platform"] in seen else "no"),
                         name, f"{entry['final_latency_ms']:.2f} ± "
                         f"{entry['latency_spread_ms']:.2f}", str(entry["trials"]), str(to_base.get(name)),
                         "-" if reached is None or not baseline else f"{reached / baseline['wall_s']:.0%}",
                         _fmt(ratio), f"{share:.1%}", f"{entry['wall_s']:.0f}"])
        summary[f"{report['network']}/{report['platform']}"] = {
            "platform": report["platform"], "trials": report["trials"], "trials_to_baseline": to_base,
            "seconds_to_baseline": time_to_base,
            "final_ratio_vs_xgb": {n: e["final_latency_ms"] / baseline["final_latency_ms"]
                                   for n, e in models.items()} if baseline else None,
            "model_share_of_wall": {n: e["model_s"] / max(e["wall_s"], 1e-9) for n, e in models.items()},
            "checkpoint": report.get("checkpoint")}
    images = "\n".join(f"![{p.stem}](tune/{p.stem}.png)" for p in reports)
    text = "\n\n".join([
        "## Tuning whole networks",
        "`xfer-jax tune` with an xfer checkpoint against TVM's XGBModel, same search settings, budget and "
        "seed. Where the checkpoint never saw the tuned platform (column 'seen'), xfer starts zero-shot from the "
        "hardware vector and adapts online. Trials to baseline: trials until the estimated network latency (sum of weight x best task "
        "latency) first reaches xgb's final estimate; time to xgb: the tuning seconds that took, over xgb's whole wall "
        "time. Ratio: final measured end-to-end latency / xgb's, at equal trials. Model share: seconds in the cost "
        "model (featurising, predicting, updating) over wall time.",
        _table(["network", "platform", "seen", "model", "latency ms", "trials", "trials to xgb", "time to xgb / xgb wall",
                "ratio", "model share", "wall s"], rows), images])
    return text, summary


SPLIT_NAMES = ("within-task", "by-task", "by-network")


def compute_part(part: tuple[str, str], data_path: pathlib.Path, work: pathlib.Path, steps: int, finetune_steps: int,
                 seed: int, shots: tuple[int, ...], fractions: tuple[float, ...], transfer_models: tuple[str, ...],
                 split_models: tuple[str, ...], prune_model: str) -> None:
    """Train and score one independent part of the study into the cache: ("transfer", platform),
    ("split", name), ("prune", method) without the full-data point, or ("prune-full", method)."""
    kind, name = part
    study = Study(dataset.load(data_path), work, steps=steps, finetune_steps=finetune_steps, seed=seed,
                  log=lambda line: print(f"[{name}] {line}", flush=True))
    if kind == "transfer":
        study.transfer([name], list(transfer_models), shots)
    elif kind == "split":
        study.compare([name], list(split_models))
    else:
        study.pruning([name], (1.0,) if kind == "prune-full" else tuple(f for f in fractions if f < 1.0),
                      model=prune_model)


def _compute_in_parallel(jobs: int, parts: list[tuple[str, str]], *args) -> None:
    """Independent parts in `jobs` processes (each trains its own models into the shared cache); the sections
    below then read every result from the cache."""
    import concurrent.futures
    import multiprocessing

    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in concurrent.futures.as_completed([pool.submit(compute_part, part, *args) for part in parts]):
            future.result()


def build(data_path: pathlib.Path, out: pathlib.Path, steps: int = 1500, finetune_steps: int = 300,
          shots: tuple[int, ...] = SHOTS, fractions: tuple[float, ...] | None = None, seed: int = 0,
          log: Callable[[str], None] = print, transfer_models: tuple[str, ...] = TRANSFER_MODELS,
          split_models: tuple[str, ...] = MODELS, prune_model: str = "xfer",
          prune_methods: tuple[str, ...] = prune.METHODS, jobs: int = 1) -> dict:
    """Compute what is missing, then write out/README.md, out/summary.json and the plots. Returns the summary.

    The headline numbers are those of the first transfer model (xfer unless the models are overridden).
    With jobs > 1 the missing parts are computed in that many processes first.
    """
    from .study import KEEP

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = dataset.load(data_path)
    study = Study(data, out / "work", steps=steps, finetune_steps=finetune_steps, seed=seed, log=log)
    info = dataset.summary(data)
    fractions = tuple(sorted(set(fractions or KEEP) | {1.0}, reverse=True))
    if jobs > 1:  # the costliest parts first, so that no process is left with a long tail
        parts = ([("transfer", p) for p in data.platform_names] + [("prune", m) for m in prune_methods]
                 + [("split", n) for n in SPLIT_NAMES] + [("prune-full", prune_methods[0])])
        _compute_in_parallel(jobs, parts, pathlib.Path(data_path), out / "work", steps, finetune_steps, seed, shots,
                             fractions, transfer_models, split_models, prune_model)
    transfer_text, transfer = transfer_section(study, out, shots, transfer_models)
    splits_text, split_table = splits_section(study, transfer["mean"], split_models)
    pruning_text, pruning = pruning_section(study, out, fractions, prune_model, prune_methods)
    tuning_text, tuning = tuning_section(out)
    headline = transfer_models[0]
    zero = transfer["mean"]["k0"][headline]
    summary = {
        "data": {"path": str(data_path), "programs": info["programs"], "platforms": info["platforms"],
                 "networks": info["networks"]},
        "training": {"steps": steps, "finetune_steps": finetune_steps, "seed": seed},
        "transfer": {"zero_shot": {"top5": zero["top5"], "top1": zero["top1"], "pca": zero["pca"]},
                     "model": headline,
                     "few_shot": {k: transfer["mean"][k][headline] for k in transfer["mean"] if k != "k0"},
                     "baselines": {k: {m: r for m, r in row.items() if m != headline}
                                   for k, row in transfer["mean"].items()}},
        "splits": split_table,
        "pruning": {"best_keep_at_1pt": pruning["best_keep_at_1pt"]["kept_fraction"]
                    if pruning["best_keep_at_1pt"] else None, "detail": pruning["best_keep_at_1pt"]},
        "tuning": {"trials_to_baseline": {net: s["trials_to_baseline"] for net, s in tuning.items()},
                   "detail": tuning},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    header = "\n\n".join([
        "# xfer-jax study report",
        "Generated by `xfer-jax report` from the committed dataset and tune results; do not edit by hand. "
        "Definitions: ../../shared/METRICS.md (PCA, top-k score, splits).",
        f"Dataset `{data_path}`: {info['programs']} measured programs, {info['tasks']} tasks, platforms "
        f"{', '.join(info['platforms'])}, networks {', '.join(info['networks'])}. Training: {steps} steps "
        f"(fine-tuning {finetune_steps}), seed {seed}."])
    (out / "README.md").write_text("\n\n".join([header, transfer_text, splits_text, pruning_text, tuning_text])
                                   + "\n")
    return summary


def parse_fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values or any(not 0 < v <= 1 for v in values):
        raise UserError(f"--keep-fractions must be fractions in (0, 1], got {text!r}")
    return values
