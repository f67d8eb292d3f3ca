#!/bin/bash
# LLaDA2.0-mini's batch-8 block step in four trees, one call (~7 min): .old (packed attention off:
# PACKED_FROM_BATCH = None), this tree (main), .new (the tree under test) and .new with
# DLLM_TRITON_COMBINE=0; then the fast path against the reference loop on .new. Build the trees
# (models/tiny* left out: the 64 MiB a call carries; linked back here):
#   rm -rf .old .new && mkdir .old .new && T="kernels models decoding acceleration bench tasks training run_bench.py experiments/gpu_checks"
#   git archive HEAD $T | tar -x -C .old --exclude='models/tiny*' && git archive <rev> $T | tar -x -C .new --exclude='models/tiny*'
#   sed -i 's/^PACKED_FROM_BATCH = 8 /PACKED_FROM_BATCH = None /' .old/kernels/block_attention.py
#   bash experiments/speed/moe_combine_ab.sh [BATCH] [short]     # short: main and .new only (~3 min at batch 1)
set -u
source experiments/speed/common.sh
b=${1:-8}
nvidia-smi --query-gpu=name --format=csv,noheader
for t in .old .new; do for m in tiny tiny-cdlm; do ln -sfn "../../models/$m" "$t/models/$m"; done; done
run_tree() {   # NAME DIR [ENV=VALUE]
  (cd "$2" && env ${3:-X=1} timeout 130 python -m bench.bench_speed --config llada2-mini --prompt 512 --gen 256 \
     --batch "$b" --methods threshold --out "$OUT/$1_llada2-mini_b$b.json") > "$OUT/$1_llada2-mini_b$b.txt" 2>&1
  grep -h "decode threshold:\|blocks it fed\|step_own_block (\|Error\|not used" "$OUT/$1_llada2-mini_b$b.txt" | sed "s/^/$1 /"
}
[ "${2:-}" = short ] || run_tree unpacked .old
run_tree main .
run_tree new .new
[ "${2:-}" = short ] || run_tree new_nocombine .new DLLM_TRITON_COMBINE=0
(cd .new && timeout 80 python experiments/gpu_checks/fast_vs_reference.py --config llada2-mini --batch "$b" --prompt 256 \
  --gen 64 --only threshold) > "$OUT/fast_vs_reference_llada2-mini_b$b.txt" 2>&1
grep "rows equal\|ALL EQUAL\|DIFFERENCES\|Error" "$OUT/fast_vs_reference_llada2-mini_b$b.txt"
