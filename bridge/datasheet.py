"""The dataset's datasheet numbers, computed from the collection folders (never typed in by hand).

Reads only the JSON sidecars (measurements.jsonl, reference.jsonl, runs.jsonl, tasks.json): no TVM needed.
"""

from __future__ import annotations

import collections
import json
import pathlib

import numpy as np

from xfer_jax.hardware import reference_gflops

from . import records


def collection_stats(root: pathlib.Path) -> dict:
    root = pathlib.Path(root)
    sizes: dict = {}
    hosts: dict = {}  # platform -> what its programs ran on
    per_task: dict = collections.defaultdict(collections.Counter)  # platform -> task -> programs that ran
    exhausted: set = set()  # (platform, task) pairs whose search ran out of new programs
    cvs, loads, stamps = [], [], []
    remeasured = batches = 0
    for net_dir in sorted(p.parent for p in root.glob("*/*/platform.json") if (p.parent / "tasks.json").exists()):
        platform, network = net_dir.parent.name, net_dir.name
        lines = [v for _, v in records.iter_json_lines(net_dir / records.MEASUREMENTS_FILE) if v]
        ok = [v for v in lines if v.get("costs_s")]
        tasks = json.loads((net_dir / "tasks.json").read_text())["tasks"]
        spec = json.loads((net_dir / "platform.json").read_text())["platform"]
        d = spec["descriptor"]
        hosts.setdefault(platform, {"mcpu": spec["target"].get("mcpu", spec["target"]["kind"]), "threads": d["threads"],
                                    "cpu": d["model"], "caches_kib": [d["l1_kib"], d["l2_kib"], d["l3_kib"]],
                                    "clock_ghz": d["clock_ghz"], "mem_bw_gbs": d["mem_bw_gbs"]})
        best = records.best_reference_seconds(net_dir)
        if best is not None:  # the best over every collection of the platform
            hosts[platform]["reference_gflops"] = max(hosts[platform].get("reference_gflops", 0.0),
                                                      reference_gflops(best))
        per_task[platform].update(v["task"] for v in ok)
        exhausted.update((platform, v["task"]) for _, v in records.iter_json_lines(net_dir / records.EXHAUSTED_FILE)
                         if v is not None and "task" in v)
        sizes.setdefault(platform, {})[network] = {
            "programs": len(ok), "failed": len(lines) - len(ok), "tasks": len(tasks),
            "tasks_measured_here": len({v["task"] for v in lines}),
            "random": sum(1 for v in ok if v.get("phase") == "random"),
            "search": sum(1 for v in ok if v.get("phase") == "search")}
        for v in ok:
            costs = np.array(v["costs_s"])
            if len(costs) > 1 and costs.mean() > 0:
                cvs.append(float(costs.std() / costs.mean()))
            loads.append(float(v.get("load", 1.0)))
            stamps.append(float(v["t"]))
        batch_ids = {(v["task"], v.get("phase"), v.get("round")): v.get("attempts", 1) for v in lines}
        batches += len(batch_ids)
        remeasured += sum(1 for a in batch_ids.values() if a > 1)
    stamps.sort()
    gaps = np.diff(stamps) if len(stamps) > 1 else np.zeros(0)
    active_s = float(gaps[gaps < 300].sum())  # pauses of 5 minutes or more are restarts, not collection
    programs = sum(c["programs"] + c["failed"] for p in sizes.values() for c in p.values())
    group_sizes = [n for counts in per_task.values() for n in counts.values()]  # a task shared by networks: once
    open_sizes = [n for p, counts in per_task.items() for t, n in counts.items() if (p, t) not in exhausted]
    return {
        "sizes": sizes,
        "hosts": hosts,
        "programs": sum(c["programs"] for p in sizes.values() for c in p.values()),
        "failed": sum(c["failed"] for p in sizes.values() for c in p.values()),
        "programs_per_task_and_platform": {
            "groups": len(group_sizes), "mean": float(np.mean(group_sizes)) if group_sizes else None,
            "median": float(np.median(group_sizes)) if group_sizes else None,
            "exhausted": len(exhausted & {(p, t) for p, counts in per_task.items() for t in counts}),
            "mean_not_exhausted": float(np.mean(open_sizes)) if open_sizes else None,
            "per_platform": {p: round(float(np.mean(list(c.values()))), 1) if c else 0.0
                             for p, c in sorted(per_task.items())}},
        "noise": {"repeat_cv_median": float(np.median(cvs)) if cvs else None,
                  "repeat_cv_p90": float(np.percentile(cvs, 90)) if cvs else None,
                  "reference_ratio_median": float(np.median(loads)) if loads else None,
                  "reference_ratio_p95": float(np.percentile(loads, 95)) if loads else None,
                  "batches": batches, "batches_remeasured_under_load": remeasured},
        "throughput": {"active_hours": round(active_s / 3600, 2),
                       "programs_per_hour": round(programs / (active_s / 3600), 0) if active_s else None},
    }


def markdown(stats: dict) -> str:
    platforms = sorted(stats["sizes"])
    networks = sorted({n for p in stats["sizes"].values() for n in p})
    per_task = stats["programs_per_task_and_platform"]
    out = ["| platform | " + " | ".join(networks) + " | total | per task |", "|---" * (len(networks) + 3) + "|"]
    for p in platforms:
        cells = [stats["sizes"][p].get(n, {}).get("programs", 0) for n in networks]
        out.append(f"| {p} | " + " | ".join(str(c) for c in cells)
                   + f" | {sum(cells)} | {per_task['per_platform'][p]} |")
    out += ["", "| platform | target mcpu (or kind) | threads | device | L1d / L2 / L3 KiB (a GPU: its L2 as L3) "
                "| clock GHz | copy bandwidth GB/s | reference matmul GFLOP/s (measured) |",
            "|---|---|---|---|---|---|---|---|"]
    for p in platforms:
        h = stats["hosts"][p]
        caches = " / ".join(f"{c:g}" for c in h["caches_kib"])
        out.append(f"| {p} | {h['mcpu']} | {h['threads']} | {h['cpu']} | {caches} "
                   f"| {h['clock_ghz']} | {h['mem_bw_gbs']} | {h.get('reference_gflops', 'n/a')} |")
    noise, speed = stats["noise"], stats["throughput"]
    fmt = lambda x, spec: "n/a" if x is None else format(x, spec)  # noqa: E731
    out += ["", f"- successfully measured programs: {stats['programs']}; failed builds or runs: {stats['failed']}",
            f"- programs that ran per (task, platform), a task shared by networks counted once: mean "
            f"{fmt(per_task['mean'], '.1f')}, median {fmt(per_task['median'], '.0f')}, "
            f"over {per_task['groups']} pairs; "
            f"{per_task['exhausted']} pairs are tasks whose search ran out of new programs before the collection's "
            f"target (small design spaces), and the other pairs hold {fmt(per_task['mean_not_exhausted'], '.1f')} "
            "on average",
            "- repeat spread (coefficient of variation of the 3 repeats): "
            f"median {fmt(noise['repeat_cv_median'], '.2%')}, "
            f"90th percentile {fmt(noise['repeat_cv_p90'], '.2%')}",
            f"- reference-program slowdown at measurement time: median {fmt(noise['reference_ratio_median'], '.3f')}, "
            f"95th percentile {fmt(noise['reference_ratio_p95'], '.3f')}; "
            f"{noise['batches_remeasured_under_load']} of {noise['batches']} batches were measured again under load",
            f"- collector throughput: {fmt(speed['programs_per_hour'], '.0f')} programs per hour over "
            f"{speed['active_hours']} active hours"]
    return "\n".join(out)
