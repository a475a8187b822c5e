#!/usr/bin/env bash
# The GPU check: one script, under 10 minutes on one GPU. It runs
#   1. stage 1 with AMP and channels_last (timm:resnet50, 224 px, M=2, synthetic Food-101-shaped data);
#   2. torchrun with NCCL at world size 1, and at 2 where there are two GPUs: the stage-1 command line
#      (python -m mmkit.train), and at 2 also tests/ddp_worker.py, which asserts that every tensor given to
#      a collective is on the GPU (NCCL's rule), a val split smaller than the world, and the bank built once;
#   3. stage 2 from the feature bank (built from stage 1's checkpoint), heads trained on it;
#   4. the loader feeding the GPU (views/s of make_loader alone, then feeding AMP train steps).
# It writes the timings (images/s) and, when nvidia-smi is there, GPU utilisation per step to
# bench/results/gpu.json (--out FILE to change). Without a GPU it says so and exits 0.
#
#   bench/gpu_check.sh                 # on a GPU machine
#   bench/gpu_check.sh --cpu-dry-run   # the same steps, tiny, on the CPU, gloo for torchrun (the tests run it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
DRY="" OUT="bench/results/gpu.json" KEEP=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) DRY=1 ;;
    --out) OUT=$2; shift ;;
    --keep) KEEP=1 ;;  # keep the work folder (data, checkpoints, logs) for a look afterwards
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (use --cpu-dry-run, --out FILE, --keep)" >&2; exit 2 ;;
  esac
  shift
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [ "$NGPU" = 0 ] && [ -z "$DRY" ]; then
  echo "gpu_check: no GPU here (torch.cuda.is_available() is False): nothing to check, $OUT not written."
  echo "gpu_check: run it on a machine with a GPU, or with --cpu-dry-run to try the steps tiny on the CPU."
  exit 0
fi
FLAG=${DRY:+--dry-run}
if [ -n "$DRY" ]; then
  export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  NGPU=0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mmkit-gpu-check.XXXXXX")
SMI_PID=""
cleanup() {
  if [ -n "$SMI_PID" ]; then kill "$SMI_PID" 2>/dev/null || true; fi
  if [ -z "$KEEP" ]; then rm -rf "$WORK"; else echo "gpu_check: work folder kept: $WORK"; fi
}
trap cleanup EXIT
if [ -z "$DRY" ] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv,noheader,nounits \
    -lms 500 >"$WORK/smi.csv" 2>/dev/null &
  SMI_PID=$!
fi
step() { echo "== gpu_check: $1"; }

step "data";   "$PY" bench/gpu_check.py data   --work "$WORK" $FLAG
step "stage 1 (AMP, channels_last)"; "$PY" bench/gpu_check.py stage1 --work "$WORK" $FLAG

# torchrun: NCCL on GPUs (gloo in the dry run); world size 1, and 2 where two GPUs are there (in the dry
# run always: two CPU processes)
if [ -n "$DRY" ]; then
  SIZES="1 2" BACKBONE=timm:test_resnet IMG=32 BATCH=4 WORKERS=0
else
  SIZES="1"; [ "$NGPU" -ge 2 ] && SIZES="1 2"
  BACKBONE=timm:resnet50 IMG=224 BATCH=64 WORKERS=$(( $("$PY" -c "import os; print(os.cpu_count() or 1)") / 2 ))
  [ "$WORKERS" -gt 8 ] && WORKERS=8
fi
run() {  # run WHAT WORLD LOG CMD...: time one torchrun launch, one JSON line in torchrun.jsonl
  local what=$1 n=$2 log=$3; shift 3
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$log" 2>&1 || { tail -40 "$log"; echo "gpu_check: $what at world size $n failed (log above)"; exit 1; }
  t1=$(date +%s.%N)
  echo "{\"what\": \"$what\", \"world_size\": $n, \"backend\": \"$BACKEND\", \"start\": $t0, \"end\": $t1}" \
    >>"$WORK/torchrun.jsonl"
}
BACKEND=$([ -n "$DRY" ] && echo gloo || echo nccl)
for n in $SIZES; do
  step "torchrun --nproc_per_node=$n -m mmkit.train"
  run mmkit.train "$n" "$WORK/ddp$n.log" "$PY" -m torch.distributed.run --standalone --nproc_per_node="$n" \
    -m mmkit.train --dataset upmc_food101 --data_root "$WORK/food" --val_fraction 0.2 \
    --backbone "$BACKBONE" --image_size "$IMG" --batch_size "$BATCH" --copies 2 --num_workers "$WORKERS" \
    --epochs 1 --out_dir "$WORK/ddp$n"
  if [ "$n" -ge 2 ] && [ -z "$DRY" ]; then  # the dry run leaves the worker to tests/test_ddp.py (time)
    step "torchrun --nproc_per_node=$n tests/ddp_worker.py (collectives on the collective device, tiny val, bank once)"
    run tests/ddp_worker.py "$n" "$WORK/worker$n.log" "$PY" -m torch.distributed.run --standalone \
      --nproc_per_node="$n" tests/ddp_worker.py --data "$WORK/food" --out "$WORK/worker$n" --epochs 1
  fi
done

step "stage 2 from the feature bank"; "$PY" bench/gpu_check.py stage2 --work "$WORK" $FLAG
step "the loader feeding the GPU";    "$PY" bench/gpu_check.py loader --work "$WORK" $FLAG
if [ -n "$SMI_PID" ]; then kill "$SMI_PID" 2>/dev/null || true; SMI_PID=""; fi
"$PY" bench/gpu_check.py report --work "$WORK" --out "$OUT" $FLAG
