#!/bin/bash
# LLaDA2.0-mini's block forward handing back bf16 logits (no fp32 copy of the head's output) and the
# router kernel loading the expert bias as stored (no fp32 copy a layer): this tree against .old at
# batch 8 and 1, one after the other; this tree's batch-8 step by kernel; the packed attention over
# pipelining stages (block_attention_batch_probe.py --packed --stages); then every method's fast path
# against the reference loop on this tree at batch 8. One call, ~9 min. Build .old first (models/tiny*
# left out: the 64 MiB a call carries):
#   rm -rf .old && mkdir .old && git archive HEAD kernels models decoding acceleration bench tasks training \
#     run_bench.py experiments/gpu_checks experiments/speed | tar -x -C .old --exclude='models/tiny' --exclude='models/tiny-cdlm'
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
tree_run old .old llada2-mini 8
tree_run new . llada2-mini 8
tree_run old .old llada2-mini 1
tree_run new . llada2-mini 1
timeout 120 python experiments/speed/moe_step_probe.py --config llada2-mini --batch 8 --top 20 2>&1 | quiet | head -24 > "$OUT/moe_step_probe_b8.txt"
head -22 "$OUT/moe_step_probe_b8.txt"
timeout 150 python experiments/speed/block_attention_batch_probe.py --packed --stages 1,2,3,4 2>&1 | quiet > "$OUT/attn_stages_probe.txt"
tail -4 "$OUT/attn_stages_probe.txt"
timeout 170 python experiments/gpu_checks/fast_vs_reference.py --config llada2-mini --batch 8 --prompt 256 --gen 64 \
  > "$OUT/fast_vs_reference_llada2-mini_b8.txt" 2>&1
grep "rows equal\|ALL EQUAL\|DIFFERENCES\|Error" "$OUT/fast_vs_reference_llada2-mini_b8.txt"
tar -C "$OUT" -czf /tmp/llada2_logits_route_ab.tgz . && rm -f "$OUT"/* && mv /tmp/llada2_logits_route_ab.tgz "$OUT/"   # one file back
