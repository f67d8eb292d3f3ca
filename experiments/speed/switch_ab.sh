#!/bin/bash
# A speed switch on, then off, side by side in one device call on the same tree.
#   bash experiments/speed/switch_ab.sh SWITCH "<method specs separated by ;>" [batches] [extra bench args]
# e.g. SWITCH = DLLM_QUEUE_AHEAD (steps queued ahead) or DLLM_COMPILE_STEP (the compiled step).
# Writes $OUT/{on,off}_<batches>.{txt,json}; a PRR controller of random weights at /tmp/random-controller.
set -u
S="$1"; M="$2"; B="${3:-1}"; EXTRA="${4:-}"
python - <<'PY'
import torch
from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
torch.manual_seed(0)
save_controller(Controller(ControllerConfig(d_model=4096)), "/tmp/random-controller", {"note": "random weights, speed only"})
PY
ARGS="--config llada-8b --prompt 512 --gen 256 --block 32 --batch $B --confident-share 0.5 $EXTRA"
TAG=$(echo "$B" | tr , _)
for setting in on:1 off:0; do
  name=${setting%%:*}
  env "$S=${setting##*:}" python -m bench.bench_speed $ARGS --methods "$M" --out "$OUT/${name}_$TAG.json" > "$OUT/${name}_$TAG.txt" 2>&1
  grep -h "decode" "$OUT/${name}_$TAG.txt" | sed "s/^/$name /"
done
