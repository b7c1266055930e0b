#!/usr/bin/env bash
# The CUDA measurements of the README's speed section, in one go on a GPU machine:
#   bash scripts/cuda_benchmarks.sh BASELINE_CHECKOUT OUT_DIR
# CUDA tests; the released-size model (random weights, config/bench_dinov3_s_plus.yaml) at the reference
# benchmark's setting (M_i 24, no support grid, 256x256 clips, TF32 matmuls) in float32 and bf16 autocast for 256
# and 1024 points (and B = 1, 4, 8 for 256); then this checkout against BASELINE_CHECKOUT side by side, and a
# profile of each.
set -euo pipefail
baseline=$1
out=$2
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py
bench=(python3 -m evaluation.benchmark --config_path config/bench_dinov3_s_plus.yaml --memory_size 24
       --height 256 --width 256 --num_frames 48 --num_clips 3 --warmup 1 --device cuda)
"${bench[@]}" --N_sqrt 16 --batch 1 4 8 --output_json "$out/bench_n256.json"
"${bench[@]}" --N_sqrt 16 --batch 1 4 8 --amp --output_json "$out/bench_n256_amp.json"
"${bench[@]}" --N_sqrt 32 --output_json "$out/bench_n1024.json"
"${bench[@]}" --N_sqrt 32 --amp --output_json "$out/bench_n1024_amp.json"
compare=(python3 scripts/compare_speed.py --baseline "$baseline" --device cuda --config config/bench_dinov3_s_plus.yaml
         --queries 256 --support_grid 0 --memory_size 24 --warmup 4)
"${compare[@]}" --frames 24 --rounds 2 --output_json "$out/compare.json"
"${compare[@]}" --frames 24 --rounds 2 --amp --output_json "$out/compare_amp.json"
"${compare[@]}" --frames 8 --rounds 1 --profile --work_dir /tmp/profile >/dev/null
cp /tmp/profile/baseline_0.json.profile.txt "$out/profile_baseline.txt"
cp /tmp/profile/candidate_0.json.profile.txt "$out/profile_candidate.txt"
