#!/bin/bash
# klass's kl=full through its ring operator (kernels/klass_kl.py: Triton kernels on the GPU) against
# the tree before it (carry .old: a `git archive` of a9488f4), in one device call (about 9 min), most
# important first, each part under its own timeout:
# 1. the captured decode against the reference loop, klass at cache none and dual (same tokens, NFE);
# 2. old and new bench_speed: batch 1 without a cache, batch 8 with the dual cache;
# 3. the new step graphs by kernel (profile_step).
#   rm -rf .old && mkdir .old && git archive a9488f4 kernels models decoding acceleration bench tasks training run_bench.py | tar -x -C .old && rm -rf .old/models/tiny .old/models/tiny-cdlm
#   bash experiments/speed/pending_gpu_klass.sh      # $OUT gets the bench_speed files; the rest is on stdout
set -u
source experiments/speed/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader
python - <<'PY'   # the Triton kernels against their eager twin at LLaDA's vocabulary (float64 exp/log precision)
import torch
from kernels.klass_kl import _kl_ring_triton, kl_ring_reference
g = torch.Generator(device="cuda").manual_seed(0)
for R in (64, 256):
    logits = (4 * torch.randn(R, 126464, device="cuda", generator=g)).bfloat16()
    ring = torch.randn(R + 1, 126464, device="cuda", generator=g, dtype=torch.float64) - 20
    slot, fresh = torch.arange(R, device="cuda"), torch.rand(R, device="cuda", generator=g) < 0.7
    a_ring, b_ring = ring.clone(), ring.clone()
    a, b = kl_ring_reference(logits, a_ring, slot, fresh, 1e-12), _kl_ring_triton(logits, b_ring, slot, fresh, 1e-12)
    torch.cuda.synchronize()
    print(f"kl_ring {R} rows: max |kl - twin| {(a - b).abs().max().item():.2e} (relative "
          f"{((a - b).abs() / a.abs()).max().item():.2e}), max |ring - twin| {(a_ring - b_ring).abs().max().item():.2e}")
PY
timeout 120 python experiments/gpu_checks/fast_vs_reference.py --config llada-8b --batch 4 --gen 64 --only klass \
  2>&1 | grep "rows equal\|EQUAL\|DIFF\|Error"
ab klass_b1 1 "threshold;klass" 110
ab klass_dual_b8 8 "klass:cache=dual" 110
timeout 150 python experiments/speed/profile_step.py --batch 8 --top 12 --methods "klass:cache=dual" 2>&1 | quiet
timeout 100 python experiments/speed/profile_step.py --batch 1 --top 12 --methods "klass" 2>&1 | quiet
