#!/bin/bash
# The captured step's decide compiled (acceleration/compiled_step.py) or plain, side by side in one
# device call on the same tree: DLLM_COMPILE_STEP=1, then 0.
#   bash experiments/speed/compiled_step_ab.sh "<method specs separated by ;>" [batches] [extra bench args]
# Writes $OUT/{compiled,plain}_<batches>.{txt,json}.
set -u
M="$1"; B="${2:-1}"; EXTRA="${3:-}"
python - <<'PY'
import torch
from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
torch.manual_seed(0)
save_controller(Controller(ControllerConfig(d_model=4096)), "/tmp/random-controller", {"note": "random weights, speed only"})
PY
ARGS="--config llada-8b --prompt 512 --gen 256 --block 32 --batch $B --confident-share 0.5 $EXTRA"
TAG=$(echo "$B" | tr , _)
for setting in compiled:1 plain:0; do
  name=${setting%%:*}
  DLLM_COMPILE_STEP=${setting##*:} python -m bench.bench_speed $ARGS --methods "$M" --out "$OUT/${name}_$TAG.json" > "$OUT/${name}_$TAG.txt" 2>&1
  grep -h "decode" "$OUT/${name}_$TAG.txt" | sed "s/^/$name /"
done
