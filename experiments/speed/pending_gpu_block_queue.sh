#!/bin/bash
# The block-causal changes against the tree before them (.old), the short call (about 8 min): the
# fast path against the reference loop, then bench_speed's block step and decode at batch 1, old then
# new, on llada2-mini and fast-dllm-v2-7b. What changed: the steps around a block's end queued ahead
# (CapturedBlockDecode.next_kinds), the block's statistics placed inside the compiled decide
# (BlockForward.place), the parallel MoE grouping kernel and the shared expert run by the expert
# kernels (llada2-mini). pending_gpu_group.sh adds the kernel probes.
#   rm -rf .old && mkdir .old && git archive 723e1d1 kernels models decoding acceleration bench tasks \
#     training run_bench.py | tar -x -C .old       # then carry .old:
#   bash experiments/speed/pending_gpu_block_queue.sh
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
for c in fast-dllm-v2-7b llada2-mini; do
  timeout 160 python experiments/gpu_checks/fast_vs_reference.py --config $c --batch 4 --prompt 256 --gen 64 \
    > "$OUT/fast_vs_reference_$c.txt" 2>&1
  grep "ALL EQUAL\|DIFF\|Error\|not used" "$OUT/fast_vs_reference_$c.txt" | sed "s/^/$c /"
done
for c in fast-dllm-v2-7b llada2-mini; do block_ab $c 100; done
for f in /tmp/{old,new}_*.txt; do echo "== $f"; cat "$f"; done > "$OUT/bench_stdout.txt"   # 7 files in $OUT
