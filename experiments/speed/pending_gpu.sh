#!/bin/bash
# The measurements issues 16 and 17 still wait for, in one device call of under 10 min, each part
# under its own timeout so what finished comes back (carry .old: `git archive c6be2fe` of kernels
# models decoding acceleration bench tasks training run_bench.py, for the block A/B):
#   1. klass:cache=dual at batch 8, repeated calls per speed switch (steps and token checksums);
#   2. where PRR's batch-1 step time goes beyond the forward (step graph replays and kernels);
#   3. Fast-dLLM v2 and SDAR append=separate captured against the reference block loop.
#   bash experiments/speed/pending_gpu.sh
set -u
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader
timeout 150 python experiments/gpu_checks/repeat_steps.py --spec "klass:cache=dual" --batch 8 --reps 2 \
  --switches DLLM_QUEUE_AHEAD,DLLM_MIXED_STEPS > "$OUT/repeat_steps.txt" 2>&1; grep "per call\|Error" "$OUT/repeat_steps.txt"
python - <<'PY'
import torch
from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
torch.manual_seed(0)
save_controller(Controller(ControllerConfig(d_model=4096)), "/tmp/random-controller", {"note": "random weights, speed only"})
PY
timeout 120 python experiments/speed/profile_step.py --batch 1 --top 8 \
  --methods "threshold;prr:controller=/tmp/random-controller;klass;dico" > "$OUT/profile_b1.txt" 2>&1
grep "==\|step graph" "$OUT/profile_b1.txt"
timeout 280 bash experiments/speed/block_separate_ab.sh 1
