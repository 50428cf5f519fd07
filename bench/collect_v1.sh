#!/usr/bin/env bash
# Dataset v1: 6 CPU configs (SSE2 / AVX / AVX2 x 1 / 2 threads) x 6 networks, 64 programs per task.
# Resumable: rerun after an interruption. Many hours on 2 cores; run it in the background:
#   nohup bash bench/collect_v1.sh >> runs/collect_v1.log 2>&1 &
# Stage 1 covers 3 configs x 3 networks first, so that every split (by network, by platform) has data early;
# stage 2 fills in the rest. Finished tasks are skipped, so stage 2 repeats nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
collect() { xfer-jax collect --programs-per-task 64 --out data/v1/raw "$@"; }
collect --platform avx2-2t --platform avx2-1t --platform avx-2t \
  --network resnet18 --network bert_tiny --network mobilenet_v2
collect --platform avx2-2t --platform avx2-1t --platform avx-2t --platform avx-1t --platform sse2-2t --platform sse2-1t \
  --network resnet18 --network mobilenet_v2 --network bert_tiny --network squeezenet \
  --network vit_tiny --network resnet50
