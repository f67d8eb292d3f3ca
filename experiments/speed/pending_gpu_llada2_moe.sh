#!/bin/bash
# LLaDA2.0-mini's MoE layer with fewer kernels (fused shared-expert gate/up and SwiGLU, the routed
# sum and the shared add in one pass, compiled routing) against the tree before (carry .old: a
# `git archive` of 8e750d2), in one device call (about 6 min): parity first, then old and new.
#   rm -rf .old && mkdir .old && git archive 8e750d2 kernels models decoding acceleration bench tasks training run_bench.py | tar -x -C .old && rm -rf .old/models/tiny .old/models/tiny-cdlm
#   bash experiments/speed/pending_gpu_llada2_moe.sh      # $OUT gets the bench_speed files; the rest is on stdout
set -u
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 100 python experiments/gpu_checks/fast_vs_reference.py --config llada2-mini --batch 4 --prompt 256 --gen 64 \
  2>&1 | grep "rows equal\|EQUAL\|DIFF\|Error"
for tree in .old .; do
  name=$([ "$tree" = . ] && echo new || echo old)
  (cd "$tree" && timeout 200 python -m bench.bench_speed --config llada2-mini --prompt 512 --gen 256 --batch 1,8 \
     --methods threshold --out "$OUT/moe_${name}_llada2-mini.json") > "$OUT/moe_${name}_llada2-mini.txt" 2>&1
  grep -h "decode\|_step\|_block\|Error" "$OUT/moe_${name}_llada2-mini.txt" | grep -v "^|" | sed "s/^/$name /"
done
