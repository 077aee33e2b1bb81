#!/usr/bin/env bash
# The GPU checks in one prepared script, about 8 minutes on one GPU machine (run from anywhere):
#   1. a SYNTH set large enough for steady state (2000 training frames), made with every core;
#   2. bench/throughput.py, paper preset, bf16, batch 64: the data loader alone, training samples/s
#      and GPU busy of both InteractHand branches and the baseline (eager; the image branch and the
#      baseline also compiled), inference latency at batch 1 and 64, eager and CUDA-graphed;
#   3. bench/mano_speed.py: our MANO layer against smplx's on the CPU and CUDA.
# Tables go to the console, numbers to $OUT/throughput.json and $OUT/mano_speed.json
# (OUT defaults to output/bench/gpu_check). PYTHON overrides the interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-output/bench/gpu_check}
DATA="$OUT/SYNTH_2000"
mkdir -p "$OUT"
if [ ! -f "$DATA/annotations/SYNTH_train_data.json" ]; then
  "$PY" data/SYNTH/generate.py --num-train 2000 --num-eval 64 --seed 0 --out "$DATA" --workers "$(nproc)"
fi
"$PY" bench/throughput.py --synth "$DATA" --gpu 0 --preset paper --amp bf16 --steps 40 --warmup 15 \
  --compile --set train_batch_size=64 --json "$OUT/throughput.json"
"$PY" bench/mano_speed.py --json "$OUT/mano_speed.json"
echo "gpu_check: results in $OUT"
