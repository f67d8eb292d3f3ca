#!/bin/bash
# The MoE grouping kernel with a program per 64 pairs (kernels/moe_group.py) against the tree before
# it (.old), one device call (under 5 min): the kernels' probe (the grouping at 256 and 2048 pairs
# under a CUDA graph, equal to the reference), the fast path against the reference loop on
# llada2-mini, and bench_speed's LLaDA2.0-mini block step and decode at batch 1, old then new.
#   rm -rf .old && mkdir .old && git archive 723e1d1 kernels models decoding acceleration bench tasks \
#     training run_bench.py | tar -x -C .old       # then carry .old:
#   bash experiments/speed/pending_gpu_group.sh
# $OUT gets every output; stdout the lines that matter.
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 90 python experiments/speed/moe_kernels_probe.py > "$OUT/probe.txt" 2>&1
grep -o "^[0-9]* tokens: .*group, kernel [0-9.]* us" "$OUT/probe.txt"
timeout 120 python experiments/gpu_checks/fast_vs_reference.py --config llada2-mini --batch 4 --prompt 256 --gen 64 \
  > "$OUT/fast_vs_reference.txt" 2>&1
grep "ALL EQUAL\|DIFF\|Error\|not used" "$OUT/fast_vs_reference.txt"
for tree in old new; do
  dir=.; [ $tree = old ] && dir=.old
  (cd $dir && timeout 150 python -m bench.bench_speed --config llada2-mini --prompt 512 --gen 256 --batch 1 \
     --methods threshold --out "$OUT/${tree}_llada2-mini.json") > "$OUT/${tree}_llada2-mini.txt" 2>&1
  grep -h "decode threshold:\|blocks it fed\|step_own_block (\|Error\|not used" "$OUT/${tree}_llada2-mini.txt" | sed "s/^/$tree /"
done
