#!/bin/bash
# What waits for the GPU on the block-causal models, in one device call (carry .old: a `git
# archive` of e63bf44, the tree before the block cache's capacity was rounded up to a multiple of
# 64 and its key mask made additive once per forward), about 10 min, most important first, each
# part under its own timeout (the last may be cut):
# 1. old and new at batch 1 on Fast-dLLM v2 7B (fixed): its captured steps read 801 cache slots
#    under a bool mask before, 832 under an additive mask now: step time and loop overhead;
# 2. PRR's fast path against the reference loop on SDAR-8B and LLaDA2.0-mini (their mismatches
#    were recorded with the kept decode reading freed controller weights);
# 3. LLaDA2.0-mini's block step with its MoE layer as it is and compiled whole (moe_step_probe.py);
# 4. old and new at batch 1 on LLaDA2.0-mini (threshold; 800 slots before, 832 now);
# 5. the first layer's attention inputs in Fast-dLLM v2's step and in its block forward alone,
#    timed with the additive mask and the bool mask it stands for.
#   rm -rf .old && mkdir .old && git archive e63bf44 kernels models decoding acceleration bench tasks training run_bench.py | tar -x -C .old
#   bash experiments/speed/pending_gpu_block.sh      # $OUT gets the 8 bench_speed files; the rest is on stdout
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
run() {  # tree config methods name
  (cd "$1" && timeout 100 python -m bench.bench_speed --config "$2" --prompt 512 --gen 256 --batch 1 --methods "$3" \
     --out "$OUT/$4_$2.json") > "$OUT/$4_$2.txt" 2>&1
  grep -h "decode\|_step:\|Error" "$OUT/$4_$2.txt" | sed "s/^/$4 $2 /"
}
run .old fast-dllm-v2-7b fixed old
run . fast-dllm-v2-7b fixed new
for cfg in sdar-8b llada2-mini; do
  timeout 75 python experiments/gpu_checks/fast_vs_reference.py --config $cfg --batch 4 --prompt 256 --gen 64 \
    --only prr 2>&1 | grep "rows equal\|EQUAL\|DIFF\|Error"
done
timeout 100 python experiments/speed/moe_step_probe.py 2>&1 | quiet
run .old llada2-mini threshold old
run . llada2-mini threshold new
timeout 60 python experiments/speed/block_sdpa_probe.py --config fast-dllm-v2-7b --block 8 2>&1 | quiet
