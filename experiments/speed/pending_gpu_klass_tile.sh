#!/bin/bash
# klass's float64 KL kernels by tile (experiments/speed/klass_kl_probe.py), then klass with the dual
# cache on LLaDA-8B (bench_speed, random weights, prompt 512 + gen 256, block 32, half the masked
# positions confident) at batch 8 with a given tile (default 1024x4) and with the kernels' default
# tile, and at batch 1 with the default; one device call. Files in $OUT.
#   bash experiments/speed/pending_gpu_klass_tile.sh [1024 4]
set -u
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 120 python experiments/speed/klass_kl_probe.py 2>&1 | tee "$OUT/klass_kl_probe.txt" | grep -v "^ *$"
bench() {  # tag batch [block warps]: 0 0 = the kernels' default tile
  timeout 170 python - "$1" "$2" "${3:-0}" "${4:-0}" > "$OUT/$1.txt" 2>&1 <<'PY'
import os, runpy, sys
import kernels.klass_kl as k
tag, batch, block, warps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
k.BLOCK, k.WARPS = block or k.BLOCK, warps or k.WARPS
print(f"klass KL tile {k.BLOCK}x{k.WARPS}")
sys.argv = ["bench_speed", "--config", "llada-8b", "--prompt", "512", "--gen", "256", "--block", "32", "--batch", batch,
            "--confident-share", "0.5", "--methods", "klass:cache=dual", "--out", f"{os.environ['OUT']}/{tag}.json"]
runpy.run_module("bench.bench_speed", run_name="__main__")
PY
  grep -h "KL tile\|decode\|window step\|Error" "$OUT/$1.txt" | sed "s/^/$1 /"
}
bench klass_dual_b8_tile_given 8 "${1:-1024}" "${2:-4}"
bench klass_dual_b8_tile_default 8
bench klass_dual_b1_tile_default 1
