#!/usr/bin/env bash
# The CUDA measurements of the README's speed section, in one go on a GPU machine:
#   bash scripts/cuda_benchmarks.sh BASELINE_CHECKOUT OUT_DIR
# CUDA tests, then the released-size model (random weights) at the reference benchmark's setting (M_i 24, no
# support grid, 256x256 clips) in float32 (TF32 matmuls, as the reference) and bf16 autocast for 256 and 1024
# points and B = 1, 4, 8, then this checkout against BASELINE_CHECKOUT side by side.
set -euo pipefail
baseline=$1
out=$2
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_step_runtime.py
bench=(python3 -m evaluation.benchmark --config_path config/bench_dinov3_s_plus.yaml --memory_size 24
       --height 256 --width 256 --num_frames 48 --num_clips 5 --warmup 1 --device cuda)
for amp in "" "--amp"; do
  for grid in 16 32; do
    "${bench[@]}" --N_sqrt $grid --batch 1 4 8 $amp --output_json "$out/bench_n$((grid * grid))${amp:+_amp}.json"
  done
done
for amp in "" "--amp"; do
  python3 scripts/compare_speed.py --baseline "$baseline" --device cuda $amp --config config/bench_dinov3_s_plus.yaml \
    --queries 256 --support_grid 0 --memory_size 24 --frames 48 --warmup 4 --rounds 3 \
    --output_json "$out/compare${amp:+_amp}.json"
done
