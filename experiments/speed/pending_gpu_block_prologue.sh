#!/bin/bash
# The q/k norm, RoPE and K/V write kernel (kernels/qk_rope_write.py) and the bf16 router product
# against the tree before them (.old), on the block-causal models, in two calls of about 6 min:
#   rm -rf .old && mkdir .old && git archive 7199b93 kernels models decoding acceleration bench tasks \
#     training run_bench.py | tar -x -C .old       # then carry .old:
#   bash experiments/speed/pending_gpu_block_prologue.sh a   # fast path against the reference loop
#                                                            # (fast-dllm-v2-7b, sdar-8b), batch 1 old/new
#   bash experiments/speed/pending_gpu_block_prologue.sh b   # batch 8, new tree, every block-causal config
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
case "$1" in
a)
  for c in fast-dllm-v2-7b sdar-8b; do
    timeout 160 python experiments/gpu_checks/fast_vs_reference.py --config $c --batch 4 --prompt 256 --gen 64 \
      > "$OUT/fast_vs_reference_$c.txt" 2>&1
    grep "rows equal\|ALL EQUAL\|DIFFERENCES\|Error\|not used" "$OUT/fast_vs_reference_$c.txt" | sed "s/^/$c /"
  done
  for c in fast-dllm-v2-7b sdar-8b; do block_ab $c 90; done
  for f in /tmp/{old,new}_*.txt; do echo "== $f"; cat "$f"; done > "$OUT/bench_stdout.txt" ;;
b)
  for c in llada2-mini fast-dllm-v2-7b sdar-8b; do
    timeout 110 python -m bench.bench_speed --config $c --prompt 512 --gen 256 --batch 8 --methods threshold \
      --out "$OUT/b8_$c.json" > "$OUT/b8_$c.txt" 2>&1
    grep -h "decode threshold:\|blocks it fed\|step_own_block (\|Error\|not used" "$OUT/b8_$c.txt" | sed "s/^/$c /"
  done ;;
*) echo "a or b" >&2; exit 2 ;;
esac
