#!/usr/bin/env bash
# Issue 4 / 5 tuning runs: xfer (shipped checkpoint, online adaptation on) against TVM's XGBModel on three
# networks, about 1.5 passes over each network's tasks in rounds of 8. Resumable (rerun continues from the
# databases). Run on a quiet machine: no collection or training beside it.
#   nohup bash bench/tune_networks.sh >> runs/tune_networks.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
PLATFORM=${PLATFORM:-avx2-2t}  # the best config this host runs (it has no AVX-512)
tune() { xfer-jax tune --network "$1" --platform "$PLATFORM" --trials "$2" --compare xgb \
           --checkpoint "${CHECKPOINT:-checkpoints/default}" --out runs/tune-$PLATFORM \
           --json "reports/tune/$1-$PLATFORM.json"; }
tune bert_tiny 160
tune resnet18 256
tune mobilenet_v2 384
