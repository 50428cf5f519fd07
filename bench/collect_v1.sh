#!/usr/bin/env bash
# Dataset v1: CPU configs x 6 networks, 72 programs per task (failed builds count; about 68 run), into data/v1/raw/<platform>/<network>/.
# Resumable: rerun after an interruption; finished tasks are skipped. Hours on 2 cores; run it in the background:
#   nohup bash bench/collect_v1.sh >> runs/collect_v1.log 2>&1 &
#   nohup bash bench/collect_v1.sh avx2-2t@host avx2-1t@host >> runs/collect_v1.log 2>&1 &   # chosen configs
#   PROGRAMS=128 nohup bash bench/collect_v1.sh ...   # deeper: tops up every task measured before to 128
# Configs are labelled with the host's LLVM CPU name (`avx512-2t@host` -> avx512-2t@znver5), so collections
# from several machines share one dataset without mixing; the unlabelled avx2-2t, avx2-1t and avx-2t folders
# were measured on an AMD Zen 1 host (see data/README.md). Configs go two at a time, network by network, so
# every split has data early.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  if grep -qw avx512f /proc/cpuinfo; then set -- avx512-2t@host avx2-2t@host avx512-1t@host avx2-1t@host
  else set -- avx2-2t@host avx-2t@host avx2-1t@host sse2-2t@host; fi
fi
networks=(--network resnet18 --network mobilenet_v2 --network bert_tiny --network squeezenet
          --network vit_tiny --network resnet50)
while [ $# -gt 0 ]; do
  pair=(--platform "$1"); shift
  if [ $# -gt 0 ]; then pair+=(--platform "$1"); shift; fi
  xfer-jax collect --programs-per-task "${PROGRAMS:-72}" --out data/v1/raw "${pair[@]}" "${networks[@]}"
done
