#!/bin/bash
# Fast-dLLM v2's greedy block statistics shifted by one position instead of a shifted copy of the
# block's logits (decoding/block_causal.py, FedBlock.stats_shifted) against the tree before it (.old),
# in one call of about 8 min (with the attention probe last):
#   rm -rf .old && mkdir .old && git archive a3a779b kernels models decoding acceleration bench tasks \
#     training run_bench.py | tar -x -C .old       # then carry .old:
#   bash experiments/speed/pending_gpu_fdv2_stats.sh
# The fast path against the reference loop (batch 4, left padding), then bench_speed's threshold
# decode at batch 1 and 8, old then new (the step's loop overhead; the block step is the same forward).
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 160 python experiments/gpu_checks/fast_vs_reference.py --config fast-dllm-v2-7b --batch 4 --prompt 256 --gen 64 \
  > "$OUT/fast_vs_reference_fast-dllm-v2-7b.txt" 2>&1
grep "rows equal\|ALL EQUAL\|DIFFERENCES\|Error\|not used" "$OUT/fast_vs_reference_fast-dllm-v2-7b.txt"
block_ab fast-dllm-v2-7b 90
block_ab fast-dllm-v2-7b 110 8
for f in /tmp/{old,new}_fast-dllm-v2-7b*.txt; do echo "== $f"; cat "$f"; done > "$OUT/bench_stdout.txt"
# SDPA against the Triton block attention across batch sizes (the batch-8 step's attention: 1.3 ms)
timeout 100 python experiments/speed/block_attention_batch_probe.py 2>&1 | grep -v Warn | tee "$OUT/block_attention_batch_probe.txt"
