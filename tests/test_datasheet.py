"""Datasheet numbers from a hand-made collection folder (JSON sidecars only, no TVM)."""

from __future__ import annotations

import json

from xfer_jax.bridge import datasheet, records


def _network(root, platform, network, lines):
    net_dir = root / platform / network
    net_dir.mkdir(parents=True)
    descriptor = {"threads": 2, "model": "cpu", "l1_kib": 32, "l2_kib": 512, "l3_kib": 8192, "clock_ghz": 2.0,
                  "mem_bw_gbs": 10.0}
    (net_dir / "platform.json").write_text(json.dumps({"platform": {"target": {"kind": "llvm"},
                                                                    "descriptor": descriptor}}))
    (net_dir / "tasks.json").write_text(json.dumps({"tasks": [{"hash": t} for t in {v["task"] for v in lines}]}))
    records.append_lines(net_dir / records.MEASUREMENTS_FILE, [json.dumps(v) for v in lines])


def _line(task, t, ok=True):
    return {"task": task, "phase": "random", "round": 0, "t": t, "load": 1.0,
            "costs_s": [1e-3, 1.1e-3, 0.9e-3] if ok else None}


def test_a_task_shared_by_two_networks_counts_once_per_platform(tmp_path):
    # task "a" measured 3 times for net1 (one failed) and twice more for net2; task "b" 4 times
    _network(tmp_path, "p", "net1", [_line("a", 0), _line("a", 1), _line("a", 2, ok=False), _line("b", 3)])
    _network(tmp_path, "p", "net2", [_line("a", 4), _line("a", 5), _line("b", 6), _line("b", 7), _line("b", 8)])
    for network, timings in (("net1", [2e-3, 1e-3]), ("net2", [4e-3])):  # the reference matmul, loaded or not
        records.append_lines(tmp_path / "p" / network / "reference.jsonl",
                             [json.dumps({"baseline_s": s, "ratio": 1.0}) for s in timings])
    records.append_lines(tmp_path / "p" / "net2" / "exhausted.jsonl", [json.dumps({"task": "a", "programs": 4})])
    stats = datasheet.collection_stats(tmp_path)
    assert stats["programs"] == 8 and stats["failed"] == 1
    assert stats["hosts"]["p"]["reference_gflops"] == 33.554  # 2 * 256^3 flops in its best time, 1 ms
    groups = stats["programs_per_task_and_platform"]
    assert groups["groups"] == 2 and groups["mean"] == 4.0
    assert groups["exhausted"] == 1 and groups["mean_not_exhausted"] == 4.0  # "a" ran out; "b" ran 4
    assert "mean 4.0" in datasheet.markdown(stats) and "1 pairs are tasks whose search ran out" in datasheet.markdown(stats)
