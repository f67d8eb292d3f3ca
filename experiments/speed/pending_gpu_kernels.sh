#!/bin/bash
# The block-causal kernels built without a GPU, each against what it replaces, in the same tree
# (the switches turn them off): LLaDA2.x's expert choice and grouping as Triton kernels
# (kernels/moe_route.py, kernels/moe_group.py; DLLM_TRITON_ROUTE) and the block steps' split-key attention (kernels/block_attention.py,
# DLLM_TRITON_ATTN). One device call per part (each under 10 min):
#   bash experiments/speed/pending_gpu_kernels.sh check   # the MoE kernels against their references; fast path
#                                                        # against the reference loop on llada2-mini and sdar-8b
#   bash experiments/speed/pending_gpu_kernels.sh speed   # bench_speed at batch 1 (SDAR also 8: its blocks of 4),
#                                                        # kernels off then on, 3 models
# $OUT gets the bench_speed files; the rest is on stdout.
set -u
nvidia-smi --query-gpu=name --format=csv,noheader
if [ "$1" = check ]; then
  timeout 60 python experiments/speed/moe_kernels_probe.py 2>&1 | grep -v "Warn\|warn"
  for c in llada2-mini sdar-8b; do
    timeout 150 python experiments/gpu_checks/fast_vs_reference.py --config $c --batch 4 --prompt 256 --gen 64 \
      2>&1 | grep "rows equal\|EQUAL\|DIFF\|Error\|not used" | sed "s/^/$c /"
  done
  exit
fi
for cb in llada2-mini:1 fast-dllm-v2-7b:1 sdar-8b:1,8; do
  c=${cb%:*}
  for k in 0 1; do
    DLLM_TRITON_ATTN=$k DLLM_TRITON_ROUTE=$k timeout 130 python -m bench.bench_speed --config $c --prompt 512 --gen 256 \
      --batch ${cb#*:} --methods threshold --out "$OUT/kernels${k}_$c.json" > "$OUT/kernels${k}_$c.txt" 2>&1
    grep -h "decode\|_step\|_block\|Error\|not used" "$OUT/kernels${k}_$c.txt" | grep -v "^|" | sed "s/^/$c kernels=$k /"
  done
done
