#!/bin/bash
# Old and new decode code side by side in one device call: the methods whose step work changed
# (vocabulary statistics over a window's logits rows, fused kernels; SlowFast's step captured, its
# truncated forwards replayed as graphs). The old tree is a `git archive` of the base commit in .old.
#   bash experiments/speed/methods_ab.sh "<method specs separated by ;>" [batches]
# Writes $OUT/{old,new}.{txt,json}.
set -u
M="$1"; B="${2:-1,8}"
python - <<'PY'
import torch
from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
torch.manual_seed(0)
save_controller(Controller(ControllerConfig(d_model=4096)), "/tmp/random-controller", {"note": "random weights, speed only"})
PY
ARGS="--config llada-8b --prompt 512 --gen 256 --block 32 --batch $B --confident-share 0.5"
(cd .old && python -m bench.bench_speed $ARGS --methods "$M" --out "$OUT/old.json") > "$OUT/old.txt" 2>&1
python -m bench.bench_speed $ARGS --methods "$M" --out "$OUT/new.json" > "$OUT/new.txt" 2>&1
grep -h "decode\|window step\|full forward" "$OUT/old.txt" | sed 's/^/old /'
grep -h "decode\|window step\|full forward" "$OUT/new.txt" | sed 's/^/new /'
