#!/bin/bash
# Five checks in one call (~8 min), in this order: the router's small kernels' launch settings
# (router_knobs_probe.py); LLaDA2.0-mini's batch-1 block step by kernel; the packed attention at 64
# programs (LLaDA2.0-mini's batch 8: one chunk of keys a program, no combine pass) against 132 and 264;
# Fast-dLLM v2 7B's batch-1 threshold decode twice (its loop overhead, run to run); dico's fast path
# against the reference loop on LLaDA2.0-mini at batch 8 (bf16 logits from its block forward).
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 100 python experiments/speed/router_knobs_probe.py 2>&1 | quiet > "$OUT/router_knobs_probe.txt"
cat "$OUT/router_knobs_probe.txt"
timeout 90 python experiments/speed/moe_step_probe.py --config llada2-mini --batch 1 --top 30 > "$OUT/moe_step_probe_b1.txt" 2>&1
head -3 "$OUT/moe_step_probe_b1.txt"
timeout 120 python experiments/speed/block_attention_batch_probe.py --packed --stages 3 --packed-programs 64,132,264 2>&1 \
  | quiet > "$OUT/attn_programs_probe.txt"
tail -4 "$OUT/attn_programs_probe.txt"
tree_run a . fast-dllm-v2-7b 1
tree_run b . fast-dllm-v2-7b 1
timeout 150 python experiments/gpu_checks/fast_vs_reference.py --config llada2-mini --batch 8 --prompt 256 --gen 64 \
  --only dico > "$OUT/fast_vs_reference_dico_llada2-mini_b8.txt" 2>&1
grep "rows equal\|ALL EQUAL\|DIFFERENCES\|Error" "$OUT/fast_vs_reference_dico_llada2-mini_b8.txt"
