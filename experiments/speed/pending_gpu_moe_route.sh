#!/bin/bash
# LLaDA2.0-mini's expert choice as one Triton kernel (kernels/moe_route.py) against the reference's
# steps (DLLM_TRITON_ROUTE=0), same tree, one device call (about 5 min): the kernel against the
# reference at the model's shapes, the fast path against the reference loop, then bench_speed with
# the kernel off and on.
#   bash experiments/speed/pending_gpu_moe_route.sh      # $OUT gets the bench_speed files; the rest is on stdout
set -u
nvidia-smi --query-gpu=name --format=csv,noheader
python - <<'PY'
import torch
from kernels.moe_route import _route_select_triton, route_select_reference
g = torch.Generator(device="cuda").manual_seed(0)
bias = 0.05 * torch.randn(256, device="cuda", generator=g)
for T in (32, 256, 4096):
    logits = 3 * torch.randn(T, 256, device="cuda", generator=g)
    a, b = route_select_reference(logits, bias, 8, 8, 4, 2.5), _route_select_triton(logits, bias, 8, 8, 4, 2.5)
    same = (a[0] == b[0]).all(-1).float().mean().item()
    print(f"route {T} tokens: rows with the same experts in the same order {same:.4f}, max |w - ref| {(a[1] - b[1]).abs().max().item():.2e}")
PY
timeout 100 python experiments/gpu_checks/fast_vs_reference.py --config llada2-mini --batch 4 --prompt 256 --gen 64 \
  2>&1 | grep "rows equal\|EQUAL\|DIFF\|Error"
for k in 0 1; do
  DLLM_TRITON_ROUTE=$k timeout 200 python -m bench.bench_speed --config llada2-mini --prompt 512 --gen 256 --batch 1,8 \
     --methods threshold --out "$OUT/route${k}_llada2-mini.json" > "$OUT/route${k}_llada2-mini.txt" 2>&1
  grep -h "decode\|_step\|_block\|Error" "$OUT/route${k}_llada2-mini.txt" | grep -v "^|" | sed "s/^/route=$k /"
done
