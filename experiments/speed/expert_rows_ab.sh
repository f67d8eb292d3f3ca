#!/bin/bash
# The expert kernels with tiles of 32 rows (a block step's every expert, the shared one's 32 rows
# included, in one pass over its weights; this tree) against .old (16 rows: the shared expert's
# weights read twice) and .one (32 rows, the gate and up tiles in one pass over K), LLaDA2.0-mini at
# batch 1, in one call with: the router's small kernels' launch settings and the expert tiles alone
# (router_knobs_probe.py, first); this tree's batch-1 step by kernel; the fast path against the
# reference loop at batch 1 (threshold); Fast-dLLM v2 7B's batch-1 threshold decode (its loop
# overhead). ~9 min. Build .old and .one first (models/tiny* left out: the 64 MiB a call carries):
#   rm -rf .old && mkdir .old && git archive HEAD kernels models decoding acceleration bench tasks training \
#     run_bench.py experiments/gpu_checks experiments/speed | tar -x -C .old --exclude='models/tiny' --exclude='models/tiny-cdlm'
#   (.one was a local variant with the gate and up tiles in one pass over K: no faster, not kept; drop its line to rerun)
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 150 python experiments/speed/router_knobs_probe.py 2>&1 | quiet > "$OUT/router_knobs_probe.txt"
cat "$OUT/router_knobs_probe.txt"
tree_run old .old llada2-mini 1
tree_run new . llada2-mini 1
tree_run one .one llada2-mini 1
timeout 90 python experiments/speed/moe_step_probe.py --config llada2-mini --batch 1 --top 30 2>&1 | quiet > "$OUT/moe_step_probe_b1.txt"
head -3 "$OUT/moe_step_probe_b1.txt"
timeout 90 python experiments/gpu_checks/fast_vs_reference.py --config llada2-mini --batch 1 --prompt 256 --gen 64 \
  --only threshold > "$OUT/fast_vs_reference_llada2-mini_b1.txt" 2>&1
grep "rows equal\|ALL EQUAL\|DIFFERENCES\|Error" "$OUT/fast_vs_reference_llada2-mini_b1.txt"
tree_run a . fast-dllm-v2-7b 1
tar -C "$OUT" -czf /tmp/expert_rows_ab.tgz . && rm -f "$OUT"/* && mv /tmp/expert_rows_ab.tgz "$OUT/"   # one file back
