#!/bin/bash
# PRR with the dual cache at batch 8 (9.9% loop overhead on an H100, results/speed/step-graphs/REPORT.md):
# its step graphs by kernel, and each step kind's share of the decode (about 4 min).
#   bash experiments/speed/pending_gpu_prr.sh      # everything on stdout
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
random_controller
timeout 200 python experiments/speed/profile_step.py --batch 8 --top 20 \
  --methods "prr:controller=/tmp/random-controller,cache=dual" 2>&1 | quiet
