#!/bin/bash
# What waits for the GPU on the block-causal models, in one device call (about 6 min):
# 1. where Fast-dLLM v2's step graph spends its extra attention time (block_sdpa_probe.py: the
#    first layer's SDPA inputs in the decode's step and in the block forward alone, each timed),
#    and whether LLaDA2.0-mini's step (0.42 ms over its forward) has the same difference;
# 2. PRR's fast path against the reference loop on SDAR-8B and LLaDA2.0-mini (their mismatches
#    were recorded with the kept decode reading freed controller weights);
# 3. Fast-dLLM v2's step graphs by kernel beside the block forward alone.
#   bash experiments/speed/pending_gpu_block.sh      # everything on stdout
set -u
nvidia-smi --query-gpu=name --format=csv,noheader
quiet() { grep -v "Warn\|warn\|^ *$\|Online softmax\|split the\|important use\|^softmax"; }
timeout 120 python experiments/speed/block_sdpa_probe.py --config fast-dllm-v2-7b --block 8 2>&1 | quiet
timeout 100 python experiments/speed/block_sdpa_probe.py --config llada2-mini --block 32 2>&1 | quiet
for cfg in sdar-8b llada2-mini; do
  timeout 80 python experiments/gpu_checks/fast_vs_reference.py --config $cfg --batch 4 --prompt 256 --gen 64 \
    --only prr 2>&1 | grep "rows equal\|EQUAL\|DIFF\|Error"
done
timeout 110 python experiments/speed/profile_step.py --config fast-dllm-v2-7b --block 8 --batch 1 --top 16 \
  --methods fixed 2>&1 | quiet
