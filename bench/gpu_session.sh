#!/usr/bin/env bash
# Issue 13's GPU checks, for a lent CUDA machine (bench/README.md, "GPU"). The device tool carries at most
# 64 MiB per call and TVM alone is ~70 MiB packed, so TVM travels in parts over consecutive calls, each of
# which also does useful work, and the last one assembles it:
#   pack     here: TVM + xgboost for the device's Python 3.12, packed into .gpu1 .gpu2 .gpu3 (ignored by git)
#   train    device: xfer-jax train on the GPU (jit + pmap); samples/s go to $OUT/train-gpu-<split>.json (within-task, by-task)
#   check    device: the GPU platform as the driver describes it, and what the machine has
#   collect  device: TVM from the parts, then `xfer-jax collect --platform cuda` for $COLLECT_S seconds
#   sweep    device: the ablations listed in $JOBS (lines of bench/ablate_model.py arguments), $PARALLEL at a
#            time on the one GPU, for at most $SWEEP_S seconds; their JSON lines in $OUT/sweep.jsonl, saved
#            scores and logs in $OUT/sweep.tgz (the device tool returns a handful of files, not one per job).
#            Needs rax and xgboost wheels in .gpuwheels/ (pack-wheels, here)
#   parts    device: bench/study_parts.py $PARTS ($PARALLEL at a time, none started after $PARTS_S - 300 s): the
#            study's cached results come back as $OUT/results.tgz, its checkpoints as $OUT/checkpoints.tgz.NN
#            (best weights; an unfinished one whole, to resume here): untar both here (cat the parts) and rerun
#            the report to render them
#   report   device: `xfer-jax report --jobs $PARALLEL $REPORT_ARGS` for at most $REPORT_S seconds; reports/
#            without checkpoints comes back as $OUT/report.tgz. The study caches every result, so what a call
#            did not finish, the next call (or this VM) computes; untar here and rerun the report to render it
set -uo pipefail
stage=${1:?usage: bench/gpu_session.sh pack|pack-wheels|train|check|collect|sweep|parts|report}
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"

install_xfer_jax() {  # our package only; the device image has jax, flax, optax, orbax, typer, torch
  python3 -m pip install -q --no-deps --no-build-isolation --no-index --target /tmp/xj . || exit 1
  export PYTHONPATH=/tmp/xj${PYTHONPATH:+:$PYTHONPATH}
}

case $stage in
pack)
  set -e
  rm -rf .whl /tmp/site312 .gpu1 .gpu2 .gpu3 && mkdir -p .whl /tmp/site312 .gpu1 .gpu2 .gpu3
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1 xgboost-cpu==3.2.0
  for wheel in .whl/*.whl; do unzip -q -o "$wheel" -d /tmp/site312; done
  rm -rf /tmp/site312/tvm/3rdparty/cutlass  # headers for CUTLASS kernels; MetaSchedule never includes them
  tar -cf - -C /tmp site312 | xz -9 -T2 > /tmp/site312.tar.xz
  split -n 3 -d /tmp/site312.tar.xz /tmp/site312.part
  mv /tmp/site312.part00 .gpu1/ && mv /tmp/site312.part01 .gpu2/ && mv /tmp/site312.part02 .gpu3/
  du -sh .gpu1 .gpu2 .gpu3
  ;;
pack-wheels)
  rm -rf .gpuwheels && python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 -d .gpuwheels rax==0.4.0 xgboost-cpu==3.2.0
  ;;
sweep)
  install_xfer_jax
  python3 -m pip install -q --no-deps --no-index --target /tmp/xj .gpuwheels/*.whl || exit 1
  export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several trainings share the GPU
  # the device tool brings back only a few files: jobs write under /tmp, and one archive goes to $OUT
  sweep=/tmp/sweep && mkdir -p "$sweep"
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 20 > "$sweep/gpu-use.csv" &
  deadline=$(( $(date +%s) + ${SWEEP_S:-480} ))  # every job ends by then; what finished comes back
  run_job() { eval "timeout $3 python3 bench/ablate_model.py $1" > "$sweep/$2.jsonl" 2> "$sweep/$2.err"; }
  started=0 skipped=0
  while IFS= read -r line; do
    [[ -z $line || $line == \#* ]] && continue
    while [ "$(jobs -rp | wc -l)" -gt "${PARALLEL:-8}" ]; do wait -n; done  # +1: the nvidia-smi logger
    left=$(( deadline - $(date +%s) ))
    if [ "$left" -le 60 ]; then skipped=$((skipped + 1)); continue; fi
    started=$((started + 1))
    run_job "${line//\$OUT\/sweep/$sweep}" "$(printf %02d $started)" "$left" &
  done < "${JOBS:?JOBS names a file of ablate_model.py argument lines}"
  sleep 1; kill %1; wait
  cat "$sweep"/*.jsonl | grep '^{' > "$OUT/sweep.jsonl"
  tar -czf "$OUT/sweep.tgz" -C /tmp sweep
  echo "$(wc -l < "$OUT/sweep.jsonl") results of $started jobs started ($skipped not started: out of time) in" \
    "$OUT/sweep.jsonl; scores and logs in $OUT/sweep.tgz"
  ;;
parts)
  install_xfer_jax
  python3 -m pip install -q --no-deps --no-index --target /tmp/xj .gpuwheels/*.whl || exit 1
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 20 > "$OUT/gpu-use.csv" &
  timeout "${PARTS_S:-540}" python3 bench/study_parts.py --jobs "${PARALLEL:-12}" --deadline-s "$(( ${PARTS_S:-540} - 20 ))" \
    ${PARTS_ARGS:-} ${PARTS:?PARTS lists study parts, e.g. split:by-task prune:by-task:random:0.2} > "$OUT/parts.log" 2>&1
  echo "parts exit $? (124: stopped at PARTS_S; every finished part is cached)"
  pkill -f multiprocessing.spawn; kill %1; sleep 2  # timeout stops the parent only: no worker writes during tar
  tar -czf "$OUT/results.tgz" reports/work/*/results
  for ck in reports/work/*/checkpoints/*/; do  # a finished model needs only its best weights, one to resume all
    if [ -e "$ck/done" ]; then echo "$ck/best" "$ck/done"; else echo "$ck"; fi
  done | xargs tar -czf - | split -b 15M -d - "$OUT/checkpoints.tgz."
  grep '^{' "$OUT/parts.log"
  ;;
report)
  install_xfer_jax
  python3 -m pip install -q --no-deps --no-index --target /tmp/xj .gpuwheels/*.whl || exit 1
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
  # PYTHONSAFEPATH: the repository's xfer_jax/ would shadow the installed one, whose cli lives elsewhere
  PYTHONSAFEPATH=1 timeout "${REPORT_S:-480}" python3 -m xfer_jax.cli report --jobs "${PARALLEL:-12}" \
    ${REPORT_ARGS:-} > "$OUT/report.log" 2>&1
  echo "report exit $? (124: stopped at REPORT_S; the cache keeps what finished)"
  tar -czf "$OUT/report.tgz" --exclude='*/checkpoints' reports
  ;;
train)
  install_xfer_jax
  nvidia-smi -L; which nvcc gcc g++ zstd; find / -name 'libcudart.so.13*' -not -path '/proc/*' 2>/dev/null | head -3
  python3 -c "import jax, flax, optax, orbax.checkpoint; print('jax', jax.__version__, 'flax', flax.__version__, \
'optax', optax.__version__, jax.devices())"
  for split in within-task by-task; do
    python3 -m xfer_jax.cli train --data data/v1/dataset --split "$split" --steps "${STEPS:-1500}" \
      --out "/tmp/ck-gpu-$split" 2>"$OUT/train-gpu-$split.err" | tee "$OUT/train-gpu-$split.json"
  done
  tar -czf "$OUT/ck-gpu-by-task.tgz" -C /tmp ck-gpu-by-task
  ;;
check | collect)
  if [ ! -d /tmp/site312 ]; then
    cat .gpu1/site312.part00 .gpu2/site312.part01 .gpu3/site312.part02 | python3 -c "
import sys, tarfile; tarfile.open(fileobj=sys.stdin.buffer, mode='r|xz').extractall('/tmp', filter='tar')" || exit 1
  fi
  install_xfer_jax
  export PYTHONPATH=$PYTHONPATH:/tmp/site312
  cudart=$(find / -name 'libcudart.so.13*' -not -path '/proc/*' 2>/dev/null | head -1)
  export LD_LIBRARY_PATH=$(dirname "$cudart")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export PATH=$PATH:/usr/local/cuda/bin
  which nvcc && nvcc --version | tail -1
  python3 -m xfer_jax.cli platforms
  python3 -c "
import json; from xfer_jax.bridge.platforms import get_platform
print(json.dumps(get_platform('cuda').to_dict(), indent=1))" | tee "$OUT/cuda-platform.json"
  if [ "$stage" = collect ]; then
    mkdir -p /tmp/cuda-raw  # resume: start from what data/v1 already holds for CUDA platforms
    for measured in data/v1/raw/cuda@*; do [ -d "$measured" ] && cp -rn "$measured" /tmp/cuda-raw/; done
    for net in ${NETWORKS:-resnet18 bert_tiny mobilenet_v2}; do
      timeout "${COLLECT_S:-300}" python3 -m xfer_jax.cli collect --platform cuda --network "$net" \
        --out /tmp/cuda-raw -k "${PROGRAMS:-32}" 2>&1 | tr '\r' '\n' | grep -v "^\s*$" | tail -n 20
    done
    tar -czf "$OUT/cuda-raw.tgz" -C /tmp cuda-raw
  fi
  ;;
*)
  echo "unknown stage $stage" >&2
  exit 2
  ;;
esac
