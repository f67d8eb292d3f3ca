#!/bin/bash
# klass with the KL operator on masked fresh rows only, against a9488f4 (carry .old as in pending_gpu_klass.sh): parity, old/new, profile (about 6 min).
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 150 python experiments/gpu_checks/fast_vs_reference.py --config llada-8b --batch 4 --gen 64 --only klass \
  2>&1 | grep "rows equal\|EQUAL\|DIFF\|Error"
ab klass_dual_b8 8 "klass:cache=dual" 110
ab klass_b1 1 "threshold;klass" 110
timeout 120 python experiments/speed/profile_step.py --batch 8 --top 8 --methods "klass:cache=dual" 2>&1 | quiet
