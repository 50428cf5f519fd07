"""Per-task best measured latency of two models of one tune job, to find the tasks where a gap comes from.

    python bench/task_bests.py runs/tune-budgets/<job>/<network> xfer xgb-pretrained

Reads the two models' MetaSchedule JSON databases (no TVM). One line per task, slowest first: the blocks of its
first record (which names the operator), each model's best mean latency and trials, and their ratio.
"""

import argparse
import collections
import math
import pathlib

from xfer_jax.bridge import records


def task_bests(folder: pathlib.Path) -> dict:
    """{workload hash: [best mean seconds, trials, block names]} from a JSONDatabase folder."""
    workloads = [line[0] if line else None for _, line in records.iter_json_lines(folder / records.WORKLOAD_FILE)]
    bests = collections.defaultdict(lambda: [math.inf, 0, []])
    for _, line in records.iter_json_lines(folder / records.RECORD_FILE):
        if line is None:  # a corrupt or truncated line
            continue
        index, (trace, *_) = line
        entry = bests[workloads[index]]
        entry[1] += 1
        entry[0] = min(entry[0], records.latency_s(records.run_secs_of(line)))
        if not entry[2]:
            entry[2] = [step[2][0] for step in trace[0] if step[0] == "GetSBlock" and step[2][0] != "root"]
    return bests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", type=pathlib.Path, help="a tune job's network folder (holding one folder per model)")
    parser.add_argument("a")
    parser.add_argument("b")
    args = parser.parse_args()
    a, b = task_bests(args.job / args.a), task_bests(args.job / args.b)
    for key in sorted(a, key=lambda k: -a[k][0]):
        blocks = ",".join(dict.fromkeys(a[key][2]))[:60] or "-"
        other = b.get(key, [math.inf, 0])
        print(f"{blocks:60s} {args.a} {a[key][0] * 1e6:9.1f} us ({a[key][1]:4d} trials)  "
              f"{args.b} {other[0] * 1e6:9.1f} us ({other[1]:4d})  ratio {a[key][0] / other[0]:.2f}")


if __name__ == "__main__":
    main()
