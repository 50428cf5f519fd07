"""Which measured programs of a database compute a wrong output: records replayed on their task's module and checked
against its untuned code on random inputs (`bridge/check.py`), per task.

    python bench/check_outputs.py data/v1/raw/avx2-2t@znver3/bert_tiny --tasks attention --per-task 1000
    python bench/check_outputs.py runs/tune-budgets/<job>/bert_tiny/xfer

A folder of MetaSchedule JSON database files: a collection's network folder (task names from its tasks.json) or a
tune's model folder. Per task, --per-task records spread evenly over its latency ranking are checked, built for
this machine (`--platform auto`: correctness does not depend on the ISA level). One line per task: records
checked, wrong ones, and the wrong share among the fastest tenth of those checked. Verdicts are kept in --verdicts
(one JSON line each), so a rerun checks nothing twice. A collection's verdicts go beside its records
(output_checks.jsonl, appended), where `xfer-jax featurize` reads them: a program judged wrong becomes a failure in
the shards featurized from then on.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib

from tvm.s_tir import meta_schedule as ms

from xfer_jax.bridge import records
from xfer_jax.bridge.check import OutputCheck
from xfer_jax.bridge.platforms import get_platform
from xfer_jax.bridge.tasks import Task, workload_hash


def read_database(folder: pathlib.Path) -> tuple[dict, dict]:
    """({workload line: Workload}, {workload line: [(mean seconds, record json)]}) of a database folder."""
    workloads = {number: ms.database.Workload.from_json(value)
                 for number, value in records.iter_json_lines(folder / records.WORKLOAD_FILE) if value is not None}
    measured = collections.defaultdict(list)
    for _, line in records.iter_json_lines(folder / records.RECORD_FILE):
        if isinstance(line, list) and line and line[0] in workloads:
            latency = records.latency_s(records.run_secs_of(line))
            if latency < float("inf"):
                measured[line[0]].append((latency, line[1]))
    return workloads, measured


def spread(items: list, count: int) -> list:
    """`count` items evenly spaced over `items` (all of them when there are fewer), the first always among them."""
    if len(items) <= count:
        return items
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)] if count > 1 else items[:1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=pathlib.Path, help="a folder of MetaSchedule JSON database files")
    parser.add_argument("--tasks", default="", help="only tasks whose name contains this")
    parser.add_argument("--per-task", type=int, default=40, help="records checked per task")
    parser.add_argument("--platform", default="auto")
    parser.add_argument("--verdicts", type=pathlib.Path,
                        help="[default: a collection's own output_checks.jsonl; for a tune's folder "
                             "runs/output-checks/<the folder's last two names>.jsonl, never the tune's own]")
    args = parser.parse_args()
    if not (args.folder / records.WORKLOAD_FILE).exists() and not records.segments(args.folder / records.WORKLOAD_FILE):
        raise SystemExit(f"error: {args.folder} holds no {records.WORKLOAD_FILE}")
    names, default = {}, pathlib.Path("runs/output-checks", "-".join(args.folder.resolve().parts[-2:]) + ".jsonl")
    if (args.folder / "tasks.json").exists():  # a collection
        names = {t["hash"]: t["name"] for t in json.loads((args.folder / "tasks.json").read_text())["tasks"]}
        default = args.folder / records.OUTPUT_CHECKS_FILE
    workloads, measured = read_database(args.folder)
    name_of = {n: names.get(workload_hash(w.mod), workload_hash(w.mod)) for n, w in workloads.items()}  # else its hash
    numbers = [n for n in sorted(measured) if args.tasks in name_of[n]]
    tasks = [Task(name_of[n], workloads[n].mod, 1, 0.0) for n in numbers]
    verdicts = args.verdicts or default
    verdicts.parent.mkdir(parents=True, exist_ok=True)
    check = OutputCheck(tasks, get_platform(args.platform).tvm_target(), verdicts)
    for task_id, number in enumerate(numbers):
        ranked = sorted(measured[number], key=lambda pair: pair[0])
        chosen = spread(ranked, args.per_task)
        wrong = [not check.record_matches(task_id, ms.database.TuningRecord.from_json(record, workloads[number]))
                 for _, record in chosen]
        fastest = wrong[:max(1, len(wrong) // 10)]
        print(f"{tasks[task_id].name:45s} records {len(ranked):5d}  checked {len(chosen):4d}  wrong {sum(wrong):4d}  "
              f"wrong among the fastest tenth {sum(fastest)}/{len(fastest)}  fastest {ranked[0][0] * 1e6:.1f} us  "
              f"fastest right {next((s * 1e6 for (s, _), w in zip(chosen, wrong) if not w), float('nan')):.1f} us",
              flush=True)
    print(f"checked in {check.seconds:.0f} s; verdicts: {check.path}")


if __name__ == "__main__":
    main()
