#!/usr/bin/env bash
# Attention measured on this host's configs (data/README.md): the attention tasks the collector gave up before
# session 20's build fix are measured again (`--retry-failed-tasks`, 72 programs per task), every program is checked
# for what it computes (verdicts beside the records), then featurized: a program judged wrong joins the dataset as a
# failure. Only networks the config already has a folder for. Resumable: rerun to continue.
#   nohup bash bench/collect_attention.sh avx512-2t@host avx2-2t@host >> runs/collect_attention.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
for config in "${@:-avx2-2t@host}"; do
  folder=data/v1/raw/$(python -c "from xfer_jax.bridge.platforms import get_platform; print(get_platform('$config').name)")
  for network in bert_tiny gpt_tiny vit_tiny; do
    [ -d "$folder/$network" ] || continue
    xfer-jax collect --retry-failed-tasks --programs-per-task 72 --out data/v1/raw --platform "$config" --network "$network"
    python bench/check_outputs.py "$folder/$network" --tasks attention --per-task 1000
  done
done
xfer-jax featurize data/v1/raw --out data/v1/dataset
python bench/update_datasheet.py
