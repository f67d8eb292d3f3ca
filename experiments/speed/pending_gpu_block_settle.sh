#!/bin/bash
# A block decode's bookkeeping after the decide (finished blocks, Fast-dLLM v2's stop rule, the next
# launch's width) compiled with the decide into one fused part of the step graph
# (CapturedBlockDecode.settle_in_compiled_step), against the tree before it (.old), in one device call
# (about 8 min); then where Fast-dLLM v2's remaining time outside its forward goes: its step graph by
# kernel and its decode with steps queued ahead on and off (DLLM_QUEUE_AHEAD).
#   rm -rf .old && mkdir .old && git archive REV kernels models decoding acceleration bench tasks training \
#     run_bench.py | tar -x -C .old       # REV: the commit before the change; then carry .old:
#   bash experiments/speed/pending_gpu_block_settle.sh
# $OUT gets {old,new}_<config>.{txt,json}, parity_fast-dllm-v2-7b.txt, profile_fast-dllm-v2-7b.txt.
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
run() {  # tree config tag
  (cd "$1" && timeout 150 python -m bench.bench_speed --config "$2" --prompt 512 --gen 256 --batch 1 \
     --methods threshold --out "$OUT/$3_$2.json") > "$OUT/$3_$2.txt" 2>&1
  grep -h "decode\|step_own_block\|Error" "$OUT/$3_$2.txt" | sed "s/^/$3 $2 /"
}
for c in fast-dllm-v2-7b sdar-8b; do
  run .old $c old
  run . $c new
done
timeout 120 python experiments/gpu_checks/fast_vs_reference.py --config fast-dllm-v2-7b --batch 4 --prompt 256 --gen 64 \
  > "$OUT/parity_fast-dllm-v2-7b.txt" 2>&1; grep "rows equal\|EQUAL\|DIFF\|Error" "$OUT/parity_fast-dllm-v2-7b.txt"
timeout 150 python experiments/speed/profile_step.py --config fast-dllm-v2-7b --block 8 --batch 1 --top 25 --methods threshold \
  --ab DLLM_QUEUE_AHEAD 2>&1 | quiet > "$OUT/profile_fast-dllm-v2-7b.txt"; grep -v "^  *[0-9]" "$OUT/profile_fast-dllm-v2-7b.txt"
