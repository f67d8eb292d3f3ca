#!/bin/bash
# One device call: the b1 loop overhead of the methods whose step work changed, old tree (.old, a
# `git archive` of the base commit) against new; the dual cache new only, b1 and b8 with mixed steps
# on/off; the captured block-causal path's parity on Fast-dLLM v2. Each part under its own timeout,
# so what finished comes back. Writes under $OUT.
#   bash experiments/speed/overhead_ab.sh
set -u
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader
timeout 260 bash experiments/speed/methods_ab.sh \
  "threshold;prr:controller=/tmp/random-controller;klass;dico;slowfast;slowfast:preset=paper" 1
A="--config llada-8b --prompt 512 --gen 256 --block 32 --confident-share 0.5"
timeout 170 python -m bench.bench_speed $A --batch 1,8 --ab DLLM_MIXED_STEPS --ab-reps 2 \
  --methods "threshold:cache=dual;klass:cache=dual;prr:controller=/tmp/random-controller,cache=dual" \
  --out "$OUT/dual.json" > "$OUT/dual.txt" 2>&1
grep -h "decode\|window step\|full forward\|Error" "$OUT/dual.txt"
timeout 90 python experiments/gpu_checks/fast_vs_reference.py --config fast-dllm-v2-7b --batch 4 --prompt 256 --gen 64 \
  > "$OUT/parity_fast-dllm-v2-7b.txt" 2>&1; tail -8 "$OUT/parity_fast-dllm-v2-7b.txt"
