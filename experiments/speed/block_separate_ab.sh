#!/bin/bash
# Block-causal decodes that append finished blocks by forwards of their own (Fast-dLLM v2 always,
# append=separate on SDAR): old tree (reference block loop, .old) against new (captured: step
# graphs plus an append graph), in one device call, then the fast path's parity with the reference.
#   bash experiments/speed/block_separate_ab.sh [batches]
# Writes $OUT/{old,new}_<config>.{txt,json} and $OUT/parity_<config>.txt.
set -u
B="${1:-1,8}"
run() {  # tree config methods
  (cd "$1" && python -m bench.bench_speed --config "$2" --prompt 512 --gen 256 --batch "$B" --methods "$3" \
     --out "$OUT/$4_$2.json") > "$OUT/$4_$2.txt" 2>&1
  grep -h "decode\|append_step\|Error" "$OUT/$4_$2.txt" | sed "s/^/$4 $2 /"
}
run .old fast-dllm-v2-7b "fixed;threshold" old
run . fast-dllm-v2-7b "fixed;threshold" new
run .old sdar-8b "threshold:append=separate" old
run . sdar-8b "threshold:append=separate" new
python experiments/gpu_checks/fast_vs_reference.py --config fast-dllm-v2-7b --batch 4 --prompt 256 --gen 64 \
  > "$OUT/parity_fast-dllm-v2-7b.txt" 2>&1; tail -12 "$OUT/parity_fast-dllm-v2-7b.txt"
python experiments/gpu_checks/fast_vs_reference.py --config sdar-8b --batch 4 --prompt 256 --gen 64 --suffix ,append=separate \
  > "$OUT/parity_sdar-8b_separate.txt" 2>&1; tail -12 "$OUT/parity_sdar-8b_separate.txt"
