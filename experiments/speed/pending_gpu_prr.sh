#!/bin/bash
# PRR with the dual cache at batch 8 (8.15% loop overhead on an H200, of which its step graphs are
# 1.3%: results/speed/step-graphs/REPORT.md): where the GPU waits in its decode, beside threshold's
# (decode_timeline.py: the GPU's idle gaps by the host call at each; about 2 min).
#   bash experiments/speed/pending_gpu_prr.sh      # everything on stdout
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
random_controller
timeout 400 python experiments/speed/decode_timeline.py --batch 8 --top 15 \
  --methods "threshold:cache=dual;prr:controller=/tmp/random-controller,cache=dual" 2>&1 | quiet
