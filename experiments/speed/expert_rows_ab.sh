#!/bin/bash
# The expert kernels with tiles of 32 rows (a block step's every expert, the shared one's 32 rows
# included, in one pass over its weights) against .old (16 rows: the shared expert's weights read
# twice), LLaDA2.0-mini at batch 1, in one call with: the router's small kernels' launch settings
# and the expert tiles alone (router_knobs_probe.py); this tree's batch-1 step by kernel; the packed
# attention at 64, 132 and 264 programs; Fast-dLLM v2 7B's batch-1 threshold decode twice (its loop
# overhead, run to run); the fast path against the reference loop at batch 1 (threshold). ~8 min.
# Build .old first (models/tiny* left out: the 64 MiB a call carries):
#   rm -rf .old && mkdir .old && git archive HEAD kernels models decoding acceleration bench tasks training \
#     run_bench.py experiments/gpu_checks experiments/speed | tar -x -C .old --exclude='models/tiny' --exclude='models/tiny-cdlm'
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 120 python experiments/speed/router_knobs_probe.py 2>&1 | quiet > "$OUT/router_knobs_probe.txt"
cat "$OUT/router_knobs_probe.txt"
tree_run old .old llada2-mini 1
tree_run new . llada2-mini 1
timeout 90 python experiments/speed/moe_step_probe.py --config llada2-mini --batch 1 --top 30 2>&1 | quiet > "$OUT/moe_step_probe_b1.txt"
head -3 "$OUT/moe_step_probe_b1.txt"
timeout 100 python experiments/speed/block_attention_batch_probe.py --packed --stages 3 --packed-programs 64,132,264 2>&1 \
  | quiet > "$OUT/attn_programs_probe.txt"
tail -4 "$OUT/attn_programs_probe.txt"
tree_run a . fast-dllm-v2-7b 1
tree_run b . fast-dllm-v2-7b 1
timeout 90 python experiments/gpu_checks/fast_vs_reference.py --config llada2-mini --batch 1 --prompt 256 --gen 64 \
  --only threshold > "$OUT/fast_vs_reference_llada2-mini_b1.txt" 2>&1
grep "rows equal\|ALL EQUAL\|DIFFERENCES\|Error" "$OUT/fast_vs_reference_llada2-mini_b1.txt"
tar -C "$OUT" -czf /tmp/expert_rows_ab.tgz . && rm -f "$OUT"/* && mv /tmp/expert_rows_ab.tgz "$OUT/"   # one file back
