#!/bin/bash
# Whether a decode's tokens repeat across processes (GPU): each spec decoded twice (one kept decoder) in each of two
# processes, with Inductor's default kernel autotuning and with TORCHINDUCTOR_DETERMINISTIC=1
# (no on-device benchmarking that picks among kernels of different numerics).
#   bash experiments/gpu_checks/determinism.sh "<spec>[;<spec>...]" [batch]
set -u
B="${2:-8}"
python - <<'PY'
import torch
from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
torch.manual_seed(0)
save_controller(Controller(ControllerConfig(d_model=4096)), "/tmp/random-controller", {"note": "random weights, speed only"})
PY
IFS=';' read -ra SPECS <<< "$1"
for spec in "${SPECS[@]}"; do
  for det in 0 1; do
    for proc in 1 2; do
      echo -n "TORCHINDUCTOR_DETERMINISTIC=$det process $proc: "
      TORCHINDUCTOR_DETERMINISTIC=$det timeout 60 python experiments/gpu_checks/repeat_steps.py \
        --spec "$spec" --batch "$B" --reps 1 2>&1 | grep "per call\|Error"
    done
  done
done
