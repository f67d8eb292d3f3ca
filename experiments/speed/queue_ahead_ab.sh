#!/bin/bash
# Steps queued ahead on and off, in turn, in one process per batch size (bench_speed --ab).
#   bash experiments/speed/queue_ahead_ab.sh "<method specs separated by ;>" [batch] [extra bench args]
# Writes $OUT/queue_ahead_b<batch>.{txt,json}; a PRR controller of random weights at /tmp/random-controller.
set -u
M="$1"; B="${2:-1}"; EXTRA="${3:-}"
python - <<'PY'
import torch
from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
torch.manual_seed(0)
save_controller(Controller(ControllerConfig(d_model=4096)), "/tmp/random-controller", {"note": "random weights, speed only"})
PY
python -m bench.bench_speed --config llada-8b --prompt 512 --gen 256 --block 32 --batch "$B" --confident-share 0.5 \
  --ab DLLM_QUEUE_AHEAD --methods "$M" --out "$OUT/queue_ahead_b$B.json" $EXTRA > "$OUT/queue_ahead_b$B.txt" 2>&1
grep -h "decode\|Error\|error" "$OUT/queue_ahead_b$B.txt"
