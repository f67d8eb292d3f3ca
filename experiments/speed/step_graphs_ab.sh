#!/bin/bash
# The step-graph changes against the tree before them (.old: `git archive c6be2fe` of kernels models
# decoding acceleration bench tasks training run_bench.py), in three device calls of under 10 min:
#   bash experiments/speed/step_graphs_ab.sh vocab   # vocabulary statistics alone; old/new b1, no cache
#   bash experiments/speed/step_graphs_ab.sh dual    # old/new b1 dual cache; mixed steps on/off at b8
#   bash experiments/speed/step_graphs_ab.sh block   # Fast-dLLM v2 and append=separate captured; parity
# Writes under $OUT.
set -u
PRR="prr:controller=/tmp/random-controller"
case "$1" in
  vocab)
    PYTHONPATH=. python experiments/speed/vocab_stats_probe.py > "$OUT/vocab_stats_probe.txt" 2>&1; tail -16 "$OUT/vocab_stats_probe.txt"
    bash experiments/speed/methods_ab.sh "$PRR;klass;dico;slowfast;slowfast:preset=paper" 1 ;;
  dual)
    bash experiments/speed/methods_ab.sh "$PRR,cache=dual;klass:cache=dual;dico:cache=dual" 1
    python -m bench.bench_speed --config llada-8b --prompt 512 --gen 256 --block 32 --batch 8 --confident-share 0.5 \
      --ab DLLM_MIXED_STEPS --ab-reps 2 --methods "threshold:cache=dual;klass:cache=dual" \
      --out "$OUT/mixed_b8.json" > "$OUT/mixed_b8.txt" 2>&1
    grep -h "decode\|Error" "$OUT/mixed_b8.txt" ;;
  block)
    bash experiments/speed/block_separate_ab.sh 1,8 ;;
esac
