#!/bin/bash
# The step graphs by kernel, for the methods and models still over their overhead targets (about
# 7 min): threshold, prr and klass at batch 1 without a cache, klass with the dual cache at batch 8
# (LLaDA-8B); LLaDA2.0-mini's block step at batch 1 (its decode timed whole against its step graphs
# replayed apart: the host's share of its 5.5%).
#   bash experiments/speed/pending_gpu_profile.sh      # everything on stdout
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
random_controller
timeout 150 python experiments/speed/profile_step.py --batch 1 --top 20 \
  --methods "threshold;prr:controller=/tmp/random-controller;klass" 2>&1 | quiet
timeout 120 python experiments/speed/profile_step.py --batch 8 --top 20 --methods "klass:cache=dual" 2>&1 | quiet
timeout 120 python experiments/speed/profile_step.py --config llada2-mini --block 32 --batch 1 --top 20 \
  --methods threshold 2>&1 | quiet
