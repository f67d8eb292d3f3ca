#!/bin/bash
# Every method's loop overhead on LLaDA-8B (random weights, bf16, prompt 512 + gen 256, block 32, half
# the masked positions confident), the table: one device call per (batch, group), each
# under 10 min (LIMIT=seconds to cut it sooner), files in $OUT (bench_speed JSON and text per call).
#   bash experiments/speed/pending_gpu_all_methods.sh 1 a     # batch 1, fixed .. eb, no cache and dual
#   bash experiments/speed/pending_gpu_all_methods.sh 1 b     # batch 1, prr .. dico
#   bash experiments/speed/pending_gpu_all_methods.sh 8 a|b   # batch 8
#   bash experiments/speed/pending_gpu_all_methods.sh 1 ab    # batch 1, every method in one call (about 7 min)
#   bash experiments/speed/pending_gpu_all_methods.sh 8 dual  # batch 8, every method with the dual cache
set -u
b=$1 group=$2
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
random_controller
specs_a="fixed;fixed:cache=dual;threshold;threshold:cache=dual;slowfast;localleap;localleap:cache=dual;eb;eb:cache=dual"
p=prr:controller=/tmp/random-controller
specs_b="$p;$p,cache=dual;wino;edit;edit:cache=dual;klass;klass:cache=dual;dico;dico:cache=dual"
dual="$p,cache=dual;klass:cache=dual;dico:cache=dual;eb:cache=dual;threshold:cache=dual;edit:cache=dual"
dual="$dual;localleap:cache=dual;fixed:cache=dual"   # the methods reading logits first
case "$group" in a) specs=$specs_a ;; b) specs=$specs_b ;; ab) specs="$specs_a;$specs_b" ;; dual) specs=$dual ;;
  *) echo "group: a, b, ab or dual" >&2; exit 2 ;; esac
timeout "${LIMIT:-560}" python -m bench.bench_speed --config llada-8b --prompt 512 --gen 256 --block 32 --batch "$b" \
  --confident-share 0.5 --methods "$specs" --out "$OUT/all_b${b}_${group}.json" > "$OUT/all_b${b}_${group}.txt" 2>&1
grep -h "decode\|window step\|full forward\|Error" "$OUT/all_b${b}_${group}.txt" | grep -v "^|"
