#!/bin/bash
# The grouping kernel in chunks of 16 pairs at batch 8 and the packed block attention writing its own
# output when one chunk holds every key (.new) against the tree before them (.old), batch 8: LLaDA2.0-mini
# then Fast-dLLM v2 7B, old and new one after the other; then the fast path against the reference loop
# on .new. One call, ~5 min. Build the trees (models/tiny* left out: the 64 MiB a call carries):
#   T="kernels models decoding acceleration bench tasks training run_bench.py experiments/gpu_checks"
#   rm -rf .old .new && mkdir .old .new && git archive <old rev> $T | tar -x -C .old --exclude='models/tiny' \
#     --exclude='models/tiny-cdlm' && git archive <new rev> $T | tar -x -C .new --exclude=... (the same)
#   bash experiments/speed/group_attention_ab.sh
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
tree_run old .old llada2-mini 8
tree_run new .new llada2-mini 8
tree_run old .old fast-dllm-v2-7b 8
tree_run new .new fast-dllm-v2-7b 8
(cd .new && timeout 60 python experiments/gpu_checks/fast_vs_reference.py --config llada2-mini --batch 8 --prompt 256 \
  --gen 64 --only threshold) > "$OUT/fast_vs_reference_llada2-mini_b8.txt" 2>&1
grep "rows equal\|ALL EQUAL\|DIFFERENCES\|Error" "$OUT/fast_vs_reference_llada2-mini_b8.txt"
