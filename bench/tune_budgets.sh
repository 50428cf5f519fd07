#!/usr/bin/env bash
# Tuning at realistic budgets (issue 12): each network at 1 round per task (seeds 0 and 1: one round is a
# lottery over each task's best of 8) and at 8 rounds per task (seed 0), xfer against TVM's XGBModel from scratch
# and against xgb-pretrained (XGBoost fitted on the checkpoint's training programs, updated online).
# Hours of machine time: run it alone (no collection or training beside it); rerun to resume.
#   nohup bash bench/tune_budgets.sh >> runs/tune_budgets.log 2>&1 &
#   NETWORKS="resnet18" ONNX=model.onnx ROUNDS="1 8" COMPARE=xgb,xgb-pretrained,xfer-frozen bash bench/tune_budgets.sh
#   SCHEDULER=round-robin NETWORKS=resnet18 ROUNDS=8 COMPARE= bash bench/tune_budgets.sh  # xfer alone, against the gradient runs
#   NETWORKS= ONNX=.venv/lib/python3.11/site-packages/onnx/backend/test/data/light/light_shufflenet.onnx bash bench/tune_budgets.sh
#   TUNE_ARGS="--prescreen 0.25 --adapt-every 64" TAG=-cold-prescreen0.25-every64 ROUNDS=8 bash bench/tune_budgets.sh
#   SEEDS=1 ROUNDS=8 NETWORKS=resnet18 bash bench/tune_budgets.sh  # a second seed at the long budget
# CHECKPOINT must never have seen this host. On a host outside data/v1 the shipped default is one; on a host in
# it, train one without it first: xfer-jax train --data data/v1/dataset --split by-host --holdout <host> --out runs/ck-without-<host>
set -euo pipefail
cd "$(dirname "$0")/.."
PLATFORM=${PLATFORM:-auto}
CHECKPOINT=${CHECKPOINT:-checkpoints/default}
NETWORKS=${NETWORKS-resnet18 mobilenet_v2 bert_tiny}  # NETWORKS= with ONNX=...: the ONNX model alone
ROUNDS=${ROUNDS:-1 8}
COMPARE=${COMPARE-xgb,xgb-pretrained}  # add xfer-frozen (frozen against adapting), xfer-residual or xfer-explore; COMPARE= for xfer alone
SCHEDULER=${SCHEDULER:-gradient}  # or round-robin; its runs are named -round-robin
TUNE_ARGS=${TUNE_ARGS:-}  # more xfer-jax tune options; name their runs with TAG
suffix=$([ "$SCHEDULER" = gradient ] || echo "-$SCHEDULER")${TAG:-}
name=$(python -c "from xfer_jax.bridge.platforms import get_platform, host_cpu_name as h
p = get_platform('$PLATFORM').name; print(p if '@' in p else f'{p}@{h()}')")  # reports name the host
tune() {  # tune <source args> <label> <rounds> <seed>
  local source=$1 label=$2 rounds=$3 seed=$4 run=$name-r$3-s$4$suffix
  xfer-jax tune $source --platform "$PLATFORM" --rounds-per-task "$rounds" --seed "$seed" \
    --checkpoint "$CHECKPOINT" --compare "$COMPARE" --task-scheduler "$SCHEDULER" $TUNE_ARGS --out "runs/tune-budgets/$run" \
    --json "reports/tune/$label-$run.json"
  cp "runs/tune-budgets/$run/$label/tune.png" "reports/tune/$label-$run.png"
}
for rounds in $ROUNDS; do
  seeds="0 1"; [ "$rounds" = 1 ] || seeds=0
  seeds=${SEEDS:-$seeds}  # SEEDS="1": another seed at a long budget
  for seed in $seeds; do
    for network in $NETWORKS; do tune "--network $network" "$network" "$rounds" "$seed"; done
    [ -z "${ONNX:-}" ] || tune "--onnx $ONNX" "$(basename "$ONNX" .onnx)" "$rounds" "$seed"
  done
done
