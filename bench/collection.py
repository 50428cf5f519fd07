"""Pruning for collection on one held-out host: which k programs per task to measure there at all.

    python bench/collection.py --host unlabelled --steps 1500 --shots 16,64

Trains the zero-shot model without the host (cached in --work, shared with `xfer-jax report` when it is the same
folder and budget), then for each method and k fine-tunes it on the k chosen programs per task and config and
scores the fixed test half. One JSON line per row on stdout, as in `xfer-jax report`'s collection table.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from xfer_jax import dataset, prune
from xfer_jax.study import Study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/v1/dataset")
    parser.add_argument("--host", required=True)
    parser.add_argument("--methods", default=",".join(prune.COLLECT_METHODS))
    parser.add_argument("--shots", default="16,64")
    parser.add_argument("--model", default="xfer")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path("runs/work"))
    parser.add_argument("--replay-share", type=float, default=None,
                        help="fine-tune on the new host's groups beside a sample of the others, that share of all")
    args = parser.parse_args()
    study = Study(dataset.load(args.data), args.work, steps=args.steps, finetune_steps=args.finetune_steps,
                  seed=args.seed, log=lambda line: print(line, flush=True))
    results = study.collection(args.host, args.methods.split(","), tuple(int(k) for k in args.shots.split(",")),
                               model=args.model, replay_share=args.replay_share)
    for chosen, report in results.items():
        print(json.dumps({"host": args.host, "chosen": chosen, "seed": args.seed, "steps": args.steps,
                          "replay_share": args.replay_share,
                          "measured": report.get("measured", 0),
                          **{m: round(report[m], 4) for m in ("pca", "top1", "top5")}}), flush=True)


if __name__ == "__main__":
    main()
