#!/usr/bin/env bash
# Dataset v2 networks: operators v1 lacks (grouped and dilated convolutions, transposed convolution and
# upsampling, causal attention with a 50k-vocabulary projection, token-mixing MLPs, an unrolled LSTM), into the
# same data/v1/raw collection as v1 (one dataset; a task shared with v1 is not measured twice).
# Resumable like collect_v1.sh; networks go one at a time on each config, smallest first, so that an interrupted
# run leaves whole networks:
#   nohup bash bench/collect_v2.sh avx2-2t@host >> runs/collect_v2.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- avx2-2t@host avx2-1t@host
for network in mixer_tiny lstm gpt_tiny deeplab_tiny unet_tiny resnext50 densenet121 bert_base; do
  for platform in "$@"; do
    xfer-jax collect --programs-per-task 72 --out data/v1/raw --platform "$platform" --network "$network"
  done
done
