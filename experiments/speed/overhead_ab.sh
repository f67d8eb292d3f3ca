#!/bin/bash
# One device call: the b1 loop overhead of the methods whose step or forward changed, old tree
# (.old, a `git archive` of the base commit) against new; the dual cache at b8 with mixed steps
# on/off (new only); the captured block-causal path's parity on Fast-dLLM v2. Each part under its
# own timeout (seconds: $1 $2 $3), so what finished comes back. Writes under $OUT.
#   bash experiments/speed/overhead_ab.sh [200 130 80]
set -u
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader
timeout "${1:-200}" bash experiments/speed/methods_ab.sh \
  "threshold;prr:controller=/tmp/random-controller;slowfast;slowfast:preset=paper" 1
A="--config llada-8b --prompt 512 --gen 256 --block 32 --confident-share 0.5"
timeout "${2:-130}" python -m bench.bench_speed $A --batch 8 --ab DLLM_MIXED_STEPS --ab-reps 1 \
  --methods "threshold:cache=dual;klass:cache=dual" --out "$OUT/dual_b8.json" > "$OUT/dual_b8.txt" 2>&1
grep -h "decode\|window step\|full forward\|Error" "$OUT/dual_b8.txt"
timeout "${3:-80}" python experiments/gpu_checks/fast_vs_reference.py --config fast-dllm-v2-7b --batch 4 --prompt 256 --gen 64 \
  > "$OUT/parity_fast-dllm-v2-7b.txt" 2>&1; tail -8 "$OUT/parity_fast-dllm-v2-7b.txt"
