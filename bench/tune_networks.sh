#!/usr/bin/env bash
# Issue 4 / 5 tuning runs: xfer (a checkpoint, online adaptation on) against TVM's XGBModel, about 1.5 passes
# over each network's tasks in rounds of 8. Resumable (rerun continues from the databases). Run on a quiet
# machine: no collection or training beside it.
#   nohup bash bench/tune_networks.sh >> runs/tune_networks.log 2>&1 &                  # all three networks
#   PLATFORM=avx512-2t@znver5 CHECKPOINT=checkpoints/lopo-znver5 bash bench/tune_networks.sh resnet18 bert_tiny
set -euo pipefail
cd "$(dirname "$0")/.."
PLATFORM=${PLATFORM:-avx2-2t}
declare -A TRIALS=([bert_tiny]=160 [resnet18]=256 [mobilenet_v2]=384)
[ $# -gt 0 ] || set -- bert_tiny resnet18 mobilenet_v2
for network in "$@"; do
  xfer-jax tune --network "$network" --platform "$PLATFORM" --trials "${TRIALS[$network]}" --compare xgb \
    --checkpoint "${CHECKPOINT:-checkpoints/default}" --out "runs/tune-$PLATFORM" \
    --json "reports/tune/$network-$PLATFORM.json"
done
