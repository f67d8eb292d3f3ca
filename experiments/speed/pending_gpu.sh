#!/bin/bash
# Where the step time beyond the forward goes, in one device call, each part under its own
# timeout: PRR's step graph at batch 1 (kernels by GPU time); the block-causal step graph of
# Fast-dLLM v2 7B (graph replay against the decode's wall time per step, steps queued ahead on
# and off); klass's fast-path parity on Fast-dLLM v2; the dual cache at batch 8 against each
# step's own forwards (bench_speed's dual_forwards_s). About 9 min in all.
#   bash experiments/speed/pending_gpu.sh
set -u
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader
python - <<'PY'
import torch
from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
torch.manual_seed(0)
save_controller(Controller(ControllerConfig(d_model=4096)), "/tmp/random-controller", {"note": "random weights, speed only"})
PY
quiet() { grep -v "Warn\|warn\|^$\|Online softmax\|split the\|important use\|^ *$"; }
timeout 110 python experiments/speed/profile_step.py --batch 1 --top 24 \
  --methods "threshold;prr:controller=/tmp/random-controller" 2>&1 | quiet | tee "$OUT/profile_prr_b1.txt"
timeout 100 python experiments/speed/profile_step.py --config fast-dllm-v2-7b --block 8 --batch 1 --top 12 --ab DLLM_QUEUE_AHEAD \
  --methods "fixed" 2>&1 | quiet | tee "$OUT/profile_fdv2_b1.txt"
timeout 70 python experiments/gpu_checks/fast_vs_reference.py --config fast-dllm-v2-7b --batch 4 --prompt 256 --gen 64 \
  --only klass 2>&1 | grep "rows equal\|EQUAL\|DIFF\|Error" | tee "$OUT/parity_klass_fdv2.txt"
A="--config llada-8b --prompt 512 --gen 256 --block 32 --confident-share 0.5"
timeout 220 python -m bench.bench_speed $A --batch 8 \
  --methods "threshold:cache=dual;klass:cache=dual;dico:cache=dual;prr:controller=/tmp/random-controller,cache=dual" \
  --out "$OUT/dual_b8.json" > "$OUT/dual_b8.txt" 2>&1
grep -h "decode\|window step\|full forward\|Error" "$OUT/dual_b8.txt"
# Then, in a call of its own, the mixed dual-cache steps' in-place logits buffer against the tree
# before it (.old rebuilt: rm -rf .old; mkdir .old; git archive 238ca72 kernels models decoding
# acceleration bench tasks training run_bench.py | tar -x -C .old; carry .old):
#   bash experiments/speed/methods_ab.sh "klass:cache=dual;dico:cache=dual;prr:controller=/tmp/random-controller,cache=dual" 8
