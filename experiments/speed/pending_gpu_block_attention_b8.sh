#!/bin/bash
# The Triton block attention at batch up to 8 for steps of one block (kernels/block_attention.py:
# available's ONE_BLOCK rule, 528 programs) against the tree before it (.old), in one call of ~9 min:
#   rm -rf .old && mkdir .old && git archive <rev before> kernels models decoding acceleration bench \
#     tasks training run_bench.py | tar -x -C .old      # then carry .old:
#   bash experiments/speed/pending_gpu_block_attention_b8.sh
# bench_speed's threshold decode (prompt 512, gen 256), old then new: batch 8 on
# Fast-dLLM v2 first, then the fast path against the reference loop at batch 8 (threshold), then
# SDAR-8B and LLaDA2.0-mini at batch 8, then Fast-dLLM v2 at batch 1; last moe_kernels_probe.py.
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
keep() { cp /tmp/old_$1.txt /tmp/new_$1.txt "$OUT/" 2>/dev/null; }
block_ab fast-dllm-v2-7b 110 8; keep fast-dllm-v2-7b_b8
timeout 120 python experiments/gpu_checks/fast_vs_reference.py --config fast-dllm-v2-7b --batch 8 --prompt 256 --gen 64 \
  --only threshold > "$OUT/fast_vs_reference_fast-dllm-v2-7b_b8.txt" 2>&1
grep "rows equal\|ALL EQUAL\|DIFFERENCES\|Error\|not used" "$OUT/fast_vs_reference_fast-dllm-v2-7b_b8.txt"
block_ab sdar-8b 120 8; keep sdar-8b_b8
block_ab llada2-mini 110 8; keep llada2-mini_b8
block_ab fast-dllm-v2-7b 90; keep fast-dllm-v2-7b
# The expert products on a grid of the active experts only, beside a copy of their bytes
timeout 60 python experiments/speed/moe_kernels_probe.py 2>&1 | quiet | tee "$OUT/moe_kernels_probe.txt" | tail -2
