#!/bin/bash
# Two block-step changes built without a GPU, against the tree before them (.old), in two device
# calls (each under 10 min):
#   - a block decode's bookkeeping after the decide (finished blocks, Fast-dLLM v2's stop rule, the
#     next launch's width) compiled with the decide (CapturedBlockDecode.settle_in_compiled_step);
#   - LLaDA2.x's expert products in two Triton kernels (kernels/moe_experts.py; DLLM_TRITON_EXPERTS=0
#     gives the new tree without them, to tell the two apart on llada2-mini).
# Then the kernels' probe, the fast path against the reference loop, and where Fast-dLLM v2's
# remaining time outside its forward goes (its step graph by kernel; its decode with steps queued
# ahead on and off, DLLM_QUEUE_AHEAD).
#   rm -rf .old && mkdir .old && git archive 0a7ff38 kernels models decoding acceleration bench tasks \
#     training run_bench.py | tar -x -C .old       # then carry .old:
#   bash experiments/speed/pending_gpu_block_settle.sh speed   # the probe, bench_speed old and new
#   bash experiments/speed/pending_gpu_block_settle.sh check   # fast path against the reference, profile
# $OUT gets {old,new,new_experts0}_<config>.json (8 files at most come back); the rest is on stdout.
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
run() {  # tree config tag [env]
  (cd "$1" && env ${4:-} timeout 150 python -m bench.bench_speed --config "$2" --prompt 512 --gen 256 --batch 1 \
     --methods threshold --out "$OUT/$3_$2.json") > "/tmp/$3_$2.txt" 2>&1
  grep -h "decode\|step_own_block\|Error\|not used" "/tmp/$3_$2.txt" | sed "s/^/$3 $2 /"
}
if [ "$1" = check ]; then
  for c in llada2-mini fast-dllm-v2-7b; do
    timeout 150 python experiments/gpu_checks/fast_vs_reference.py --config $c --batch 4 --prompt 256 --gen 64 2>&1 \
      | grep "rows equal\|EQUAL\|DIFF\|Error\|not used" | sed "s/^/$c /"
  done
  timeout 200 python experiments/speed/profile_step.py --config fast-dllm-v2-7b --block 8 --batch 1 --top 25 \
    --methods threshold --ab DLLM_QUEUE_AHEAD 2>&1 | quiet
  exit
fi
timeout 90 python experiments/speed/moe_kernels_probe.py 2>&1 | quiet
for c in llada2-mini fast-dllm-v2-7b sdar-8b; do
  run .old $c old
  run . $c new
done
run . llada2-mini new_experts0 DLLM_TRITON_EXPERTS=0
