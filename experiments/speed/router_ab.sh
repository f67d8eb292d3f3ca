#!/bin/bash
# The MoE router at a block step (the product as partial sums over slices of d, kernels/moe_router.py;
# the router kernel one warp a token; the grouping kernel a program per 8 pairs): this tree against
# .old, LLaDA2.0-mini at batch 1 and 8, one after the other; the fast path against the reference loop
# at batch 1 and 8 (threshold); this tree's batch-1 step by kernel, last. One call, ~8 min. Build .old first
# (models/tiny* left out: the 64 MiB a call carries):
#   rm -rf .old && mkdir .old && git archive 17e9769 kernels models decoding acceleration bench tasks training \
#     run_bench.py experiments/gpu_checks experiments/speed | tar -x -C .old --exclude='models/tiny' --exclude='models/tiny-cdlm'
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
tree_run old .old llada2-mini 1
tree_run new . llada2-mini 1
tree_run old .old llada2-mini 8
tree_run new . llada2-mini 8
timeout 80 python experiments/gpu_checks/fast_vs_reference.py --config llada2-mini --batch 1 --prompt 256 --gen 64 \
  --only threshold > "$OUT/fast_vs_reference_llada2-mini_b1.txt" 2>&1
grep "rows equal\|ALL EQUAL\|DIFFERENCES\|Error\|not used" "$OUT/fast_vs_reference_llada2-mini_b1.txt"
timeout 90 python experiments/gpu_checks/fast_vs_reference.py --config llada2-mini --batch 8 --prompt 256 --gen 64 \
  --only threshold > "$OUT/fast_vs_reference_llada2-mini_b8.txt" 2>&1
grep "rows equal\|ALL EQUAL\|DIFFERENCES\|Error\|not used" "$OUT/fast_vs_reference_llada2-mini_b8.txt"
timeout 60 python experiments/speed/moe_step_probe.py --config llada2-mini --batch 1 --top 30 2>&1 | quiet > "$OUT/moe_step_probe_b1.txt"
head -12 "$OUT/moe_step_probe_b1.txt"
tar -C "$OUT" -czf /tmp/router_ab.tgz . && rm -f "$OUT"/* && mv /tmp/router_ab.tgz "$OUT/"   # one file back
