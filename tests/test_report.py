import json
import subprocess

from helpers import run_cli, synthetic_shards
from xfer_jax import report

# a small model set and few steps; the full study runs in `xfer-jax report` (bench, not CI)
QUICK = report.Plan(seeds=(0, 1), steps=20, finetune_steps=5, shots=(0, 4), fractions=(0.5,), networks=("net-x",),
                    platforms=("cpu-b",),
                    transfer_models=("mlp-onehot", "xgb", "xgb-target"), split_models=("mlp", "xgb+hw"), prune_model="mlp",
                    prune_methods=("random", "kcenter"), collect_methods=("random", "top-spread"), collect_shots=(2, 8))


def _tune_report(path, platform="cpu-a"):
    curve = lambda finals: [[8 * (i + 1), 10.0 * (i + 1), v] for i, v in enumerate(finals)]  # noqa: E731
    models = {"xgb": {"final_latency_ms": 10.0, "latency_spread_ms": 0.1, "trials": 32, "wall_s": 40.0,
                      "model_s": 2.0, "curve": curve([30, 20, 15, 12])},
              "xfer": {"final_latency_ms": 9.0, "latency_spread_ms": 0.1, "trials": 32, "wall_s": 44.0,
                       "model_s": 6.0, "curve": curve([25, 11, 10, 9])}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"network": "netz", "platform": platform, "trials": 32, "models": models,
                                "checkpoint": {"trained_on_platforms": ["cpu-a"]}}))


def test_report_regenerates_readme_plots_and_summary_from_data_and_tune_results(tmp_path):
    synthetic_dataset = synthetic_shards(tmp_path / "data", platforms=("cpu-a", "cpu-b", "cpu-c@h2"))  # two hosts
    out = tmp_path / "reports"
    _tune_report(out / "tune" / "netz.json")
    _tune_report(out / "tune" / "netz-b.json", platform="cpu-b")  # one network tuned on two platforms
    summary = report.build(synthetic_dataset, out, QUICK, log=lambda *_: None, jobs=2)  # parts in 2 processes
    for name in ("README.md", "summary.json", "transfer.png", "pruning.png", "tune/netz.png"):
        assert (out / name).exists(), name
    zero_shot = summary["splits"]["by-platform-k0/mean"]["mlp-onehot"]
    assert 0 < zero_shot["top5"] <= 1 and 0 <= zero_shot["pca"] <= 1 and len(zero_shot["seeds"]) == 2
    assert zero_shot["pca"] == sum(s["pca"] for s in zero_shot["seeds"]) / 2  # a mean over the seeds
    assert set(summary["by_host"]) == {f"by-host-k{k}/{h}" for k in (0, 4) for h in ("h2", "unlabelled", "mean")}
    assert "xgb-target" not in summary["splits"]["by-host-k0/mean"]  # zero-shot it has nothing to train on
    assert summary["tuning"]["trials_to_baseline"]["netz/cpu-a"] == {"xgb": 32, "xfer": 16}
    assert summary["tuning"]["detail"]["netz/cpu-b"]["checkpoint"]["trained_on_platforms"] == ["cpu-a"]
    assert "| netz | cpu-b | no | xfer |" in (out / "README.md").read_text()  # tuned where it never trained
    for split in ("by-task", "by-host"):  # the full set always qualifies, so some set is chosen
        best = summary["pruning"]["detail"][split]
        assert best["pca"] >= best["full_pca"] - 0.01 and best["keep"] in (0.5, 1.0)
        assert summary["pruning"]["best_keep_at_1pt"][split] == best["kept_fraction"]
    random_half = summary["pruning"]["per_split"]["by-host"]["random"]["0.5"]
    assert random_half["spread"]["pca"] is not None and 0.4 < random_half["kept_fraction"] < 0.6  # two seeds
    collection = summary["pruning"]["collection"]
    assert collection["host"] == "h2"  # the first CPU host of two
    assert set(collection["per_method"]) == {"k0", "random-k2", "random-k8", "top-spread-k2", "top-spread-k8"}
    assert (out / "pruning-by-host.png").exists() and "Pruning for collection (h2 held out)" in (out / "README.md").read_text()
    assert set(summary["splits"]) >= {"within-task", "by-task", "by-network/net-x", "by-network/mean",
                                      "by-platform-k0/cpu-b", "by-platform-k4/mean"}
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    # a rerun in one process reads every result from the cache: same numbers, no checkpoints needed
    for folder in (out / "work").glob("*/checkpoints"):
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    assert report.build(synthetic_dataset, out, QUICK, log=lambda *_: None) == summary


def test_xfer_margin_is_over_the_best_other_model_and_ignores_xgb_target():
    row = {"xfer": {"pca": 0.8}, "xgb": {"pca": 0.75}, "noHW": {"pca": 0.78}, "xgb-target": {"pca": 0.9}, "mlp": None}
    assert abs(report._margin(row) - 0.02) < 1e-12
    assert report._margin({"xgb": {"pca": 0.7}}) is None


def test_report_rejects_bad_input_in_one_line(synthetic_dataset, tmp_path):
    for args in (["--data", str(tmp_path / "missing")], ["--keep-fractions", "0,2"], ["--keep-fractions", "abc"],
                 ["--seeds", "x"], ["--data", str(synthetic_dataset), "--hosts", "nosuch"],
                 ["--data", str(synthetic_dataset), "--networks", "nosuch"],
                 ["--data", str(synthetic_dataset), "--models", "xfer,nosuch"],
                 ["--data", str(synthetic_dataset), "--transfer-models", "mlp"],
                 ["--data", str(synthetic_dataset), "--prune-host", "nosuch"],
                 ["--data", str(synthetic_dataset), "--collect-shots", "0,16"]):
        done = run_cli("report", "--out", tmp_path / "r", *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


def test_cached_results_are_keyed_by_the_model_definition(monkeypatch):
    import dataclasses

    from xfer_jax import study, train
    from xfer_jax.model import ModelConfig

    before = study.model_version("xfer")
    assert len({before, study.model_version("noHW"), study.model_version("xgb")}) == 3
    monkeypatch.setitem(study._NEURAL, "xfer", ModelConfig(store_hidden=64))
    assert study.model_version("xfer") != before  # a changed default never reads the old model's results
    monkeypatch.undo()
    longer = dataclasses.replace(train.TrainConfig(), patience=50)
    monkeypatch.setattr(study.train, "TrainConfig", lambda: longer)
    assert study.model_version("xfer") != before  # nor does a changed training default


def test_transfer_and_network_means_cover_every_holdout_not_the_last_part():
    row = lambda pca: {"xfer": {"pca": pca, "top1": pca, "top5": pca}}  # noqa: E731
    table = {"by-host-k0/a": row(0.7), "by-host-k0/b": row(0.8), "by-host-k0/mean": row(0.8),  # b's own part mean
             "by-network/x": row(0.6), "by-network/y": row(0.7), "by-task": row(0.5)}
    means = report._with_means(table)
    assert abs(means["by-host-k0/mean"]["xfer"]["pca"] - 0.75) < 1e-9
    assert abs(means["by-network/mean"]["xfer"]["pca"] - 0.65) < 1e-9 and "by-task/mean" not in means
