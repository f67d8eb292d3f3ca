#!/bin/bash
# Where the step time beyond the forward goes, in one device call: PRR's step graph at batch 1
# (kernels by GPU time), and the block-causal step graphs of Fast-dLLM v2 7B and LLaDA2.0-mini
# (graph replay against the decode's wall time per step); then klass's fast-path parity on
# Fast-dLLM v2 (the captured decode zeroes the buffers its first decide makes).
#   bash experiments/speed/pending_gpu.sh
set -u
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader
python - <<'PY'
import torch
from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
torch.manual_seed(0)
save_controller(Controller(ControllerConfig(d_model=4096)), "/tmp/random-controller", {"note": "random weights, speed only"})
PY
prof() {  # name, args...
  local name=$1; shift
  timeout 170 python experiments/speed/profile_step.py "$@" 2>&1 | grep -v "Warn\|warn\|^$\|Online softmax\|split the\|important use" > "$OUT/profile_$name.txt"
  cat "$OUT/profile_$name.txt"
}
prof prr_b1 --batch 1 --top 24 --methods "threshold;prr:controller=/tmp/random-controller"
prof fdv2_b1 --config fast-dllm-v2-7b --block 8 --batch 1 --top 14 --methods "fixed"
timeout 100 python experiments/gpu_checks/fast_vs_reference.py --config fast-dllm-v2-7b --batch 4 --prompt 256 --gen 64 \
  --only klass 2>&1 | grep "rows equal\|EQUAL\|DIFF\|Error" | tee "$OUT/parity_klass_fdv2.txt"
prof llada2_b1 --config llada2-mini --block 32 --batch 1 --top 14 --methods "fixed"
