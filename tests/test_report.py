import json
import subprocess

from helpers import run_cli, synthetic_shards
from xfer_jax import report

# a small model set and few steps; the full study runs in `xfer-jax report` (bench, not CI)
QUICK = report.Plan(seeds=(0, 1), steps=20, finetune_steps=5, shots=(0, 4), fractions=(0.5,), networks=("net-x",),
                    platforms=("cpu-b",),
                    transfer_models=("mlp-onehot", "xgb", "xgb-target"), split_models=("mlp", "xgb+hw"), prune_model="mlp",
                    prune_methods=("random", "kcenter"), collect_methods=("random", "top-spread"), collect_shots=(2, 8))


def _tune_report(path, platform="cpu-a", top_k=None, job="job/netz"):
    curve = lambda finals: [[8 * (i + 1), 10.0 * (i + 1), v] for i, v in enumerate(finals)]  # noqa: E731
    models = {"xgb": {"final_latency_ms": 10.0, "latency_spread_ms": 0.1, "trials": 32, "wall_s": 40.0,
                      "model_s": 2.0, "curve": curve([30, 20, 15, 12]), "database": str(path.parent.parent.parent / job / "xgb")},
              "xgb-pretrained": {"final_latency_ms": 12.0, "latency_spread_ms": 0.1, "trials": 32, "wall_s": 40.0,
                                 "model_s": 4.0, "curve": curve([20, 14, 11, 11]), "online_updates": {"boosted": 3}},
              "xfer": {"final_latency_ms": 9.0, "latency_spread_ms": 0.1, "trials": 32, "wall_s": 44.0,
                       "model_s": 6.0, "curve": curve([25, 11, 10, 9]),
                       "online_updates": {"tried": 3, "kept": 2, "seconds": 1.0},
                       "database": str(path.parent.parent.parent / job / "xfer")}}
    settings = {"trials_per_round": 8, "seed": 0, "top_k_per_task": top_k}
    if top_k:  # xfer alone, k trials of each of the 2 tasks
        models = {"xfer": dict(models["xfer"], final_latency_ms=12.5, trials=2 * top_k, wall_s=8.0,
                               curve=curve([14, 12.5][:top_k]))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"network": "netz", "platform": platform, "trials": 2 * (top_k or 16), "tasks": 2,
                                "settings": settings, "models": models,
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
    assert summary["tuning"]["runs"]["netz"]["trials_to"]["xgb"] == {"xgb": 32, "xgb-pretrained": 24, "xfer": 16}
    assert summary["tuning"]["runs"]["netz-b"]["checkpoint"]["trained_on_platforms"] == ["cpu-a"]
    # tuned on a platform it never trained on, beside one it did on the same (unlabelled) host
    assert "| netz-b | host | 2 r | 0 | xfer |" in (out / "README.md").read_text()
    for split in ("by-task", "by-host"):  # the full set always qualifies, so some set is chosen
        best = summary["pruning"]["detail"][split]
        assert best["pca"] >= best["full_pca"] - 0.01 and best["keep"] in (0.5, 1.0)
        assert summary["pruning"]["best_keep_at_1pt"][split] == best["kept_fraction"]
    random_half = summary["pruning"]["per_split"]["by-host"]["random"]["0.5"]
    assert random_half["spread"]["pca"] is not None and 0.4 < random_half["kept_fraction"] < 0.6  # two seeds
    full = summary["pruning"]["per_split"]["by-host"]["random"]["1"]
    losses = [f["pca"] - h["pca"] for f, h in zip(full["seeds"], random_half["seeds"])]  # each seed's own full set
    assert abs(random_half["pca_loss"] - sum(losses) / 2) < 1e-9 and random_half["worst_pca_loss"] == max(losses)
    full_by_task = summary["pruning"]["per_split"]["by-task"]["random"]["1"]  # the split table's model, not a retrain
    assert [s["pca"] for s in full_by_task["seeds"]] == [s["pca"] for s in summary["splits"]["by-task"]["mlp"]["seeds"]]
    every_seed = summary["pruning"]["best_keep_at_1pt_every_seed"]["by-host"]
    assert every_seed >= summary["pruning"]["best_keep_at_1pt"]["by-host"] - 1e-9  # stricter, so never smaller
    collection = summary["pruning"]["collection"]
    assert collection["host"] == "h2"  # the first CPU host of two
    assert set(collection["per_method"]) == {"k0", "random-k2", "random-k8", "top-spread-k2", "top-spread-k8"}
    assert (out / "pruning-by-host.png").exists() and "Pruning for collection (h2 held out)" in (out / "README.md").read_text()
    assert set(summary["splits"]) >= {"within-task", "by-task", "by-network/net-x", "by-network/mean",
                                      "by-platform-k0/cpu-b", "by-platform-k4/mean"}
    assert summary["studies"]["by-platform"]["finetune_steps"] == 5 and summary["studies"]["pruning"]["steps"] == 20
    assert summary["studies"]["by-host"]["held_out"] == ["h2", "unlabelled"]
    assert "plan" not in summary  # "studies" says what each part was computed on
    assert "- every model on every split: " in (out / "README.md").read_text()
    assert ", shots 0, 4, held out cpu-b\n" in (out / "README.md").read_text()
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    # a rerun in one process reads every result from the cache: same numbers, no checkpoints needed
    for folder in (out / "work").glob("*/checkpoints"):
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    assert report.build(synthetic_dataset, out, QUICK, log=lambda *_: None) == summary


def test_tuning_only_rewrites_the_tuning_part_and_keeps_the_study(tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "README.md").write_text("# study\n\nsplit tables\n\n## Tuning whole networks\n\nold rows\n")
    (out / "summary.json").write_text(json.dumps({"splits": {"by-task": 1}, "tuning": {}}))
    _tune_report(out / "tune" / "netz-r2.json")
    _tune_report(out / "tune" / "netz-top1.json", top_k=1)
    remeasured = {"job": str(tmp_path / "job" / "netz"), "ms": {"xfer": {"median": 8.5, "min": 8.4, "max": 8.7}}}
    (out / "tune" / "remeasured.jsonl").write_text(json.dumps(remeasured) + "\n")
    done = run_cli("report", "--out", out, "--tuning-only")
    assert done.returncode == 0, done.stderr
    text = (out / "README.md").read_text()
    assert text.startswith("# study\n\nsplit tables\n\n## Tuning whole networks") and "old rows" not in text
    assert "| netz-r2 | yes | 2 r | 0 | xfer | 9.00 ± 0.10 | 8.50 | 32 | 16 (50%) | 16 (50%) | 0.900 | 0.750 |" in text
    assert "| netz-r2 | - | 2 r | 0 | xgb | 10.00 ± 0.10 | - |" in text  # not timed again
    assert "| 2 of 3 |" in text and "| 3 boosted |" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"] == {"by-task": 1}
    runs = summary["tuning"]["runs"]
    assert runs["netz-r2"]["final_ratio"]["xgb-pretrained"]["xfer"] == 0.75
    assert runs["netz-top1"]["budget"] == "top-1" and runs["netz-r2"]["remeasured_ms"]["xfer"] == 8.5
    top1 = summary["tuning"]["top_k"]["netz-top1"]  # against xgb's longest run on the same network and platform
    assert top1["reference"] == "netz-r2" and top1["performance_vs_xgb_full"] == 10.0 / 12.5
    assert top1["wall_vs_xgb_full"] == 8.0 / 40.0 and top1["timing"] == "as tuned"
    # remeasured together: both networks timed again, interleaved, in one pass of bench/remeasure.py
    _tune_report(out / "tune" / "netz-top2.json", top_k=2, job="job/netz-top2")
    jobs = [str(tmp_path / "job" / "netz"), str(tmp_path / "job" / "netz-top2")]
    together = [{"job": jobs[0], "with": [jobs[1]], "ms": {"xfer": {"median": 8.5}, "xgb": {"median": 9.0}}},
                {"job": jobs[1], "with": [jobs[0]], "ms": {"xfer": {"median": 12.0}}}]
    (out / "tune" / "remeasured.jsonl").write_text("".join(json.dumps(line) + "\n" for line in together))
    assert run_cli("report", "--out", out, "--tuning-only").returncode == 0
    top2 = json.loads((out / "summary.json").read_text())["tuning"]["top_k"]["netz-top2"]
    assert top2["timing"] == "remeasured together" and top2["performance_vs_xgb_full"] == 9.0 / 12.0
    assert (out / "tune" / "netz-top1.png").exists()
    missing = run_cli("report", "--out", tmp_path / "nothing", "--tuning-only")
    assert missing.returncode == 2 and "run `xfer-jax report" in missing.stderr and "Traceback" not in missing.stderr


def test_pruning_only_computes_the_pruning_study_and_rewrites_only_its_section(tmp_path):
    data = synthetic_shards(tmp_path / "data", platforms=("cpu-a", "cpu-b", "cpu-c@h2"))
    out = tmp_path / "reports"
    out.mkdir()
    (out / "README.md").write_text("# study\n\n## Every model on every split\n\nsplit tables\n\n"
                                   "## Tuning whole networks\n\ntune rows\n")
    legacy = {"data": {"programs": 123}, "plan": {"steps": 1000, "seeds": [0, 1], "finetune_steps": 300}}
    (out / "summary.json").write_text(json.dumps({**legacy, "splits": {"by-task": 1}, "pruning": None,
                                                  "tuning": {"t": 1}}))
    plan = report.Plan(**{**QUICK.to_dict(), "seeds": (0,), "pruning": False})  # turned on by refresh_pruning
    pruning = report.refresh_pruning(data, out, plan, log=lambda *_: None)
    text = (out / "README.md").read_text()
    assert text.startswith("# xfer-jax study report") and text.endswith("tune rows\n")
    assert f"- dataset pruning: {pruning['programs']} programs, 20 training steps, seeds 0\n" in text
    assert "- every model on every split: 123 programs, 1000 training steps, seeds 0, 1" in text
    assert text.index("split tables") < text.index("## Dataset pruning") < text.index("## Tuning whole networks")
    assert text.index("### Pruning for collection (h2 held out)") < text.index("## Tuning whole networks")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"] == {"by-task": 1} and summary["tuning"] == {"t": 1}
    assert "plan" not in summary
    assert summary["pruning"] == json.loads(json.dumps(pruning)) and pruning["seeds"] == [0]
    assert set(pruning["best_keep_at_1pt"]) == {"by-task", "by-host"} and (out / "pruning-by-host.png").exists()
    # a second run replaces the section (from the cache) instead of adding one
    assert report.refresh_pruning(data, out, plan, log=lambda *_: None) == pruning
    assert (out / "README.md").read_text() == text
    without = report.refresh_pruning(data, out, report.Plan(**{**plan.to_dict(), "collect_methods": ()}),
                                     log=lambda *_: None)  # --collect-methods none: the curves alone
    assert "collection" not in without and "Pruning for collection" not in (out / "README.md").read_text()
    assert without["per_split"] == pruning["per_split"]
    both = run_cli("report", "--out", out, "--tuning-only", "--pruning-only")
    assert both.returncode == 2 and "pass one of them" in both.stderr
    unknown = run_cli("report", "--data", data, "--out", out, "--pruning-only", "--prune-methods", "random,oracle")
    assert unknown.returncode == 2 and "unknown pruning method oracle" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_splits_only_rewrites_the_split_rows_and_keeps_the_transfer_study_and_its_provenance(tmp_path):
    data = synthetic_shards(tmp_path / "data", platforms=("cpu-a", "cpu-b", "cpu-c@h2"))
    out = tmp_path / "reports"
    out.mkdir()
    old_row = {"xgb+hw": {"pca": 0.5, "top1": 0.5, "top5": 0.5}}
    (out / "README.md").write_text("# study\n\nold header\n\n## Every model on every split\n\nold table\n\n"
                                   "## Transfer to unseen hardware\n\ntransfer rows\n\n## Tuning whole networks\n\nt\n")
    (out / "summary.json").write_text(json.dumps({  # as a build before per-study provenance wrote it
        "data": {"programs": 123}, "plan": {"steps": 1000, "seeds": [0, 1], "finetune_steps": 300},
        "splits": {"by-task": old_row, "by-network/gone": old_row, "by-host-k0/h2": old_row}, "pruning": None}))
    plan = report.Plan(**{**QUICK.to_dict(), "seeds": (0,), "splits": ("by-task",)})
    rows = report.refresh_splits(data, out, plan, log=lambda *_: None)
    assert set(rows) == {"by-task", "by-network/net-x", "by-network/mean"}  # within-task was not asked for
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"]["by-host-k0/h2"] == old_row and "by-network/gone" not in summary["splits"]
    assert summary["splits"]["by-task"]["mlp"]["seeds"] == [{x: rows["by-task"]["mlp"][x] for x in report.METRICS}]
    assert summary["xfer_minus_best_baseline"]["by-task"]["pca"] is None  # no xfer in this plan
    assert summary["studies"]["by-host"] == {"programs": 123, "steps": 1000, "seeds": [0, 1], "finetune_steps": 300}
    assert "by-platform" not in summary["studies"]  # the old summary had no by-platform rows
    assert "plan" not in summary  # stale once one part is refreshed: "studies" holds each part's provenance
    assert summary["studies"]["splits"]["steps"] == 20 and summary["studies"]["splits"]["seeds"] == [0]
    text = (out / "README.md").read_text()
    assert "old header" not in text and "old table" not in text and "transfer rows" in text
    assert "- transfer to unseen hosts: 123 programs, 1000 training steps (fine-tuning 300), seeds 0, 1" in text
    assert text.index("| by-task | mlp |") < text.index("| by-host-k0/h2 | xgb+hw |") < text.index("## Transfer")
    assert report.refresh_splits(data, out, plan, log=lambda *_: None) == rows  # from the cache
    assert (out / "README.md").read_text() == text
    unknown = run_cli("report", "--data", data, "--out", out, "--splits-only", "--splits", "by-task,by-host")
    assert unknown.returncode == 2 and "unknown split by-host" in unknown.stderr and "Traceback" not in unknown.stderr
    both = run_cli("report", "--out", out, "--splits-only", "--pruning-only")
    assert both.returncode == 2 and "pass one of them" in both.stderr


def test_budget_reads_rounds_top_k_and_a_scheduler_other_than_the_default():
    rounds = {"trials": 32, "tasks": 2, "settings": {"trials_per_round": 8}}
    assert report._budget(rounds) == "2 r"
    assert report._budget({**rounds, "settings": {"trials_per_round": 8, "task_scheduler": "round-robin"}}) \
        == "2 r, round-robin"
    assert report._budget({**rounds, "settings": {"trials_per_round": 8, "measure": {"cpu_cache_flush": True}}}) \
        == "2 r, cold"
    assert report._budget({"trials": 4, "settings": {"top_k_per_task": 2}}) == "top-2"
    assert report._budget({"trials": 30}) == "30 trials"


def test_updates_name_what_each_kind_of_online_adaptation_did():
    assert report._updates({"tried": 5, "kept": 3, "seconds": 1.0}) == "3 of 5"
    assert report._updates({"tried": 5, "kept": 3, "stalled_tasks": 2, "stall_fits": 4}) == "3 of 5, 2 tasks stalled"
    assert report._updates({"tries": 4, "refits": 3, "weight": 0.5, "seconds": 1.0}) == "3 refits of 4, weight 0.5"
    assert report._updates({"refits": 21, "slope": 0.226, "seconds": 4.4}) == "21 refits, slope 0.226"
    assert report._updates({"boosted": 7}) == "7 boosted" and report._updates(None) == "-"


def test_seen_tells_the_tuned_platform_from_its_host_and_from_neither():
    trained = {"checkpoint": {"trained_on_platforms": ["avx2-2t@znver5", "avx2-1t"]}}
    assert report._seen({**trained, "platform": "avx2-2t@znver5"}) == "yes"
    assert report._seen({**trained, "platform": "avx512-2t@znver5"}) == "host"
    assert report._seen({**trained, "platform": "avx2-2t"}) == "host"  # unlabelled, as avx2-1t
    assert report._seen({**trained, "platform": "amx-2t@emeraldrapids"}) == "no"
    assert report._seen({"platform": "avx2-2t"}) == "-"


def test_transfer_only_rewrites_one_kind_of_transfer_rows_and_keeps_the_rest(tmp_path):
    data = synthetic_shards(tmp_path / "data", platforms=("cpu-a", "cpu-b", "cpu-c@h2"))
    out = tmp_path / "reports"
    out.mkdir()
    row = lambda pca: {"xfer": {"pca": pca, "top1": pca, "top5": pca}}  # noqa: E731
    old = {"by-task": row(0.6), "by-host-k0/unlabelled": row(0.5), "by-host-k0/gone": row(0.5),
           "by-host-k0/mean": row(0.5), "by-host-k8/gone": row(0.5), "by-platform-k0/cpu-b": row(0.4),
           "by-platform-k0/mean": row(0.4), "by-platform-k8/cpu-b": row(0.45), "by-platform-k8/mean": row(0.45)}
    (out / "README.md").write_text("# study\n\n## Every model on every split\n\nold table\n\n"
                                   "## Transfer to unseen hardware\n\nold transfer\n\n## Dataset pruning\n\np\n")
    (out / "summary.json").write_text(json.dumps({  # as a build before each transfer kind had its provenance
        "data": {"programs": 123}, "plan": {"steps": 1000, "seeds": [0, 1], "finetune_steps": 300},
        "studies": {"splits": {"programs": 123, "steps": 1000, "seeds": [0, 1]},
                    "transfer": {"programs": 123, "steps": 1000, "seeds": [0, 1], "finetune_steps": 300}},
        "splits": old, "pruning": None}))
    plan = report.Plan(**{**QUICK.to_dict(), "seeds": (0,), "shots": (0,), "hosts": ("unlabelled",),
                          "transfer_models": ("mlp-onehot", "xgb")})
    logged = []
    rows = report.refresh_transfer(data, out, plan, ("host",), log=logged.append)
    assert set(rows) == {"by-host-k0/unlabelled", "by-host-k0/mean"}
    assert any(line.startswith("dropped the rows of gone:") for line in logged)
    summary = json.loads((out / "summary.json").read_text())
    table = summary["splits"]
    assert not {"by-host-k0/gone", "by-host-k8/gone"} & set(table)  # the old holdouts of the refreshed kind go
    assert table["by-host-k0/mean"] == table["by-host-k0/unlabelled"] == json.loads(json.dumps(rows["by-host-k0/mean"]))
    assert set(table["by-host-k0/mean"]) == {"mlp-onehot", "xgb"} and set(summary["by_host"]) == set(rows)
    assert table["by-task"] == old["by-task"] and table["by-platform-k8/cpu-b"] == old["by-platform-k8/cpu-b"]
    studies = summary["studies"]
    measured = report.dataset.summary(report.dataset.load(data))["programs"]  # failed builds are not counted
    assert studies["by-host"] == {"programs": measured, "steps": 20, "seeds": [0],
                                  "finetune_steps": 5, "shots": [0], "held_out": ["unlabelled"]}
    assert studies["by-platform"]["steps"] == 1000 and "transfer" not in studies  # the kind left out keeps its own
    text = (out / "README.md").read_text()
    assert "old table" not in text and "old transfer" not in text and text.endswith("## Dataset pruning\n\np\n")
    assert "- transfer to unseen hosts: " in text and ", shots 0, held out unlabelled\n" in text
    assert "- transfer to an unseen config of a seen host: 123 programs, 1000 training steps" in text
    assert "### by-host: mean over 1 held-out hosts (unlabelled)" in text
    assert "| k=8 | xfer | 0.450 |" in text  # the by-platform rows keep their own shots
    assert "| by-task | xfer | 0.600 |" in text  # and the split rows their own models
    assert text.index("## Every model") < text.index("## Transfer") < text.index("## Dataset pruning")
    assert report.refresh_transfer(data, out, plan, ("host",), log=lambda *_: None) == rows  # from the cache
    assert (out / "README.md").read_text() == text
    cli = run_cli("report", "--data", data, "--out", out, "--transfer-only", "--hosts", "unlabelled", "--seeds", "0",
                  "--steps", "20", "--finetune-steps", "5", "--shots", "0", "--transfer-models", "mlp-onehot,xgb")
    assert cli.returncode == 0, cli.stderr
    assert (out / "README.md").read_text() == text  # the same plan from the command line: by-host alone, cached
    four = run_cli("report", "--out", out, "--transfer-only", "--splits-only")
    assert four.returncode == 2 and "pass one of them" in four.stderr
    unknown = run_cli("report", "--data", data, "--out", out, "--transfer-only", "--hosts", "nosuch")
    assert unknown.returncode == 2 and "unknown host nosuch" in unknown.stderr and "Traceback" not in unknown.stderr


def test_a_transfer_refresh_on_a_one_host_dataset_forgets_the_old_by_host_rows_and_their_provenance(tmp_path):
    data = synthetic_shards(tmp_path / "data", platforms=("cpu-a", "cpu-b"))  # one host: nothing to hold out
    out = tmp_path / "reports"
    out.mkdir()
    (out / "README.md").write_text("# study\n\n## Transfer to unseen hardware\n\nold\n")
    run = {"programs": 1, "steps": 1, "seeds": [0]}
    (out / "summary.json").write_text(json.dumps({"studies": {"splits": run, "by-host": run},
                                                  "splits": {"by-host-k0/gone": {"xgb": None}}}))
    assert report.refresh_transfer(data, out, QUICK, ("host",), log=lambda *_: None) == {}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"] == {} and set(summary["studies"]) == {"splits"}
    text = (out / "README.md").read_text()
    assert "### by-host: not run (the dataset has one host)" in text and "transfer.png" not in text


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
