#!/bin/bash
# The packed block attention (kernels/block_attention.py: a kv head's q heads in one program, for a
# step of one block at batch PACKED_FROM_BATCH or more) against the tree without it (.old: the same
# tree with PACKED_FROM_BATCH = None), batch 8, then the fast path against the reference loop:
#   rm -rf .old && mkdir .old && git archive <rev before> kernels models decoding acceleration bench \
#     tasks training run_bench.py | tar -x -C .old      # then carry .old:
#   bash experiments/speed/packed_attention_ab.sh        # ~4 min
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
block_ab fast-dllm-v2-7b 110 8; cp /tmp/old_fast-dllm-v2-7b_b8.txt /tmp/new_fast-dllm-v2-7b_b8.txt "$OUT/"
timeout 70 python experiments/gpu_checks/fast_vs_reference.py --config fast-dllm-v2-7b --batch 8 --prompt 256 --gen 64 \
  --only threshold > "$OUT/fast_vs_reference_fast-dllm-v2-7b_b8.txt" 2>&1
grep "rows equal\|ALL EQUAL\|DIFFERENCES\|Error" "$OUT/fast_vs_reference_fast-dllm-v2-7b_b8.txt"
block_ab sdar-8b 75 8; cp /tmp/old_sdar-8b_b8.txt /tmp/new_sdar-8b_b8.txt "$OUT/"
