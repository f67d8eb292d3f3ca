#!/bin/bash
# What waits for the GPU, in one device call, most important first, each part under its own
# timeout (about 10 min in all; the last parts may be cut):
# 1. PRR on a kept captured decode: three calls of one Decoder give the same tokens (the
#    controller's module rebound), and the fast path equals the reference loop on SDAR-8B and
#    LLaDA2.0-mini (their mismatches were recorded with the kept decode reading freed weights);
# 2. the step graphs of threshold, prr and klass at batch 1 (replay times: the chunked
#    vocabulary reductions' effect), kernels by GPU time; ways to take PRR's top-50 (top50_probe.py);
# 3. Fast-dLLM v2 7B at batch 1: the step graphs beside the block forward's graphed function;
# 4. klass's dual-cache step graphs at batch 8 by kernel (where its 7% beyond the forwards goes);
# 5. prr and klass at batch 8 with the dual cache (bench_speed).
#   bash experiments/speed/pending_gpu.sh
set -u
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader
python - <<'PY'
import torch
from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
torch.manual_seed(0)
save_controller(Controller(ControllerConfig(d_model=4096)), "/tmp/random-controller", {"note": "random weights, speed only"})
PY
C=/tmp/random-controller
quiet() { grep -v "Warn\|warn\|^ *$\|Online softmax\|split the\|important use\|^softmax"; }
timeout 80 python experiments/gpu_checks/repeat_steps.py --spec "prr:controller=$C,cache=dual" --batch 8 --reps 3 \
  2>&1 | grep "per call\|Error" | tee "$OUT/repeat_prr_b8.txt"
for cfg in sdar-8b llada2-mini; do
  timeout 80 python experiments/gpu_checks/fast_vs_reference.py --config $cfg --batch 4 --prompt 256 --gen 64 \
    --only prr 2>&1 | grep "rows equal\|EQUAL\|DIFF\|Error" | tee -a "$OUT/parity_prr_block.txt"
done
timeout 40 python experiments/speed/top50_probe.py 2>&1 | tee "$OUT/top50_probe.txt"
timeout 110 python experiments/speed/profile_step.py --batch 1 --top 16 \
  --methods "threshold;prr:controller=$C;klass" 2>&1 | quiet | tee "$OUT/profile_b1.txt"
timeout 90 python experiments/speed/profile_step.py --config fast-dllm-v2-7b --block 8 --batch 1 --top 16 \
  --methods fixed 2>&1 | quiet | tee "$OUT/profile_fdv2_b1.txt"
timeout 90 python experiments/speed/profile_step.py --batch 8 --top 16 --methods "klass:cache=dual" 2>&1 | quiet \
  | tee "$OUT/profile_klass_dual_b8.txt"
timeout 110 python -m bench.bench_speed --config llada-8b --prompt 512 --gen 256 --block 32 --batch 8 \
  --confident-share 0.5 --methods "prr:controller=$C,cache=dual;klass:cache=dual" --out "$OUT/dual_b8.json" \
  > "$OUT/dual_b8.txt" 2>&1
grep -h "decode\|window step\|Error" "$OUT/dual_b8.txt"
