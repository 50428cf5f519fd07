#!/usr/bin/env bash
# Dataset v1: 4 CPU configs x 6 networks, 96 programs per task. Resumable: rerun after an interruption.
# Hours on 2 cores; run in the background:  nohup bash bench/collect_v1.sh > runs/collect_v1.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
exec xfer-jax collect \
  --platform avx2-2t --platform avx2-1t --platform avx-2t --platform sse2-1t \
  --network resnet18 --network mobilenet_v2 --network bert_tiny --network squeezenet \
  --network vit_tiny --network resnet50 \
  --programs-per-task 96 --out data/v1/raw
