#!/bin/bash
# LLaDA2.0-mini's block step with its layers' one-pass q/k norm + partial RoPE and fused residual
# norms, and MoE routing without the 64-bit radix sort, against the tree before (carry .old: a
# `git archive` of 79b7b6b), in one device call (about 8 min), most important first:
# 1. expert_order on the GPU equals the stable argsort (uint8 keys);
# 2. old and new bench_speed at batch 1 (threshold): step points, decode, and (new tree) the decode's
#    width-32 steps timed on its own blocks;
# 3. the fast path against the reference loop on llada2-mini (every method that applies);
# 4. new at batch 8; sdar-8b at batch 1 (a dense model: its own blocks time as blocks of masks);
# 5. old at batch 8.
#   rm -rf .old && mkdir .old && git archive 79b7b6b kernels models decoding acceleration bench tasks training run_bench.py | tar -x -C .old && rm -rf .old/models/tiny*
#   bash experiments/speed/pending_gpu_llada2.sh      # $OUT gets the bench_speed files; the rest is on stdout
set -u
nvidia-smi --query-gpu=name --format=csv,noheader
python - <<'PY'
import torch
from models.moe import expert_order
for n in (256, 2048):
    flat = torch.randint(0, 256, (n,), device="cuda")
    print(f"expert_order, {n} ids on the GPU equal to argsort(stable=True):",
          torch.equal(expert_order(flat, 256), flat.argsort(stable=True)))
PY
run() {  # tree config batch name
  (cd "$1" && timeout 150 python -m bench.bench_speed --config "$2" --prompt 512 --gen 256 --batch "$3" --methods threshold \
     --out "$OUT/$4_$2_b$3.json") > "$OUT/$4_$2_b$3.txt" 2>&1
  grep -h "decode\|_step\|_block\|Error" "$OUT/$4_$2_b$3.txt" | sed "s/^/$4 $2 /"
}
run .old llada2-mini 1 old
run . llada2-mini 1 new
timeout 100 python experiments/gpu_checks/fast_vs_reference.py --config llada2-mini --batch 4 --prompt 256 --gen 64 \
  2>&1 | grep "rows equal\|EQUAL\|DIFF\|Error"
run . llada2-mini 8 new
run . sdar-8b 1 new
run .old llada2-mini 8 old
