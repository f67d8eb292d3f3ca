"""GPU probe: each of the expert kernels (kernels/moe_experts.py) alone, under a CUDA graph, for
several tiles, at LLaDA2.0-mini's shapes (256 experts, d 2048, F 512), 32 tokens whose 8 experts are
drawn among A (27 as a decode's blocks route, 8, and 64), beside a copy of the bytes each kernel
reads: which tile each kernel wants, and how far from the copy rate it stays.

    python experiments/speed/moe_tiles_probe.py
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.bench_speed import graphed_us  # noqa: E402
from kernels.moe_experts import _down_kernel, _swiglu_kernel, triton  # noqa: E402
from kernels.moe_group import group_pairs_reference  # noqa: E402


g = torch.Generator(device="cuda").manual_seed(0)
E, d, f = 256, 2048, 512
gate_up = (torch.randn(E, 2 * f, d, device="cuda", generator=g) / d ** 0.5).bfloat16()
down = (torch.randn(E, d, f, device="cuda", generator=g) / f ** 0.5).bfloat16()
print(f"python experiments/speed/moe_tiles_probe.py   ({torch.cuda.get_device_name()})", flush=True)
for A in (27, 8, 64):
    x = torch.randn(32, d, device="cuda", generator=g).bfloat16()
    pool = torch.randperm(E, device="cuda", generator=g)[:A]
    pick = torch.rand(32, A, device="cuda", generator=g).argsort(-1)[:, :8]
    token, offs, _ = group_pairs_reference(pool[pick].reshape(-1), E, 8)
    P = token.numel()
    h = torch.empty(P, f, dtype=x.dtype, device="cuda")
    out = torch.empty(P, d, dtype=x.dtype, device="cuda")
    active = torch.unique(pool)
    gu_bytes, dn_bytes = gate_up[active].contiguous(), down[active].contiguous()
    copy_gu = graphed_us(lambda: gu_bytes.clone())
    copy_dn = graphed_us(lambda: dn_bytes.clone())
    line = [f"copy gate_up {gu_bytes.numel() * 2 / 1e6:.0f} MB {copy_gu:.1f} us "
            f"({4 * gu_bytes.numel() / copy_gu / 1e6:.2f} TB/s r+w), down {dn_bytes.numel() * 2 / 1e6:.0f} MB "
            f"{copy_dn:.1f} us"]
    ref_h = None
    for bn, bk, st, w in ((64, 128, 3, 4), (32, 128, 3, 4), (16, 128, 3, 4), (32, 128, 4, 4), (16, 256, 3, 4),
                          (32, 256, 2, 4), (16, 128, 4, 2), (32, 64, 6, 4), (64, 64, 4, 4)):
        kw = dict(BLOCK_M=16, BLOCK_N=bn, BLOCK_K=bk, IEEE=False, num_warps=w, num_stages=st)
        try:
            sw = graphed_us(lambda: _swiglu_kernel[(E, triton.cdiv(f, bn))](x, token, offs, gate_up, h, d, f, **kw))
            ref_h = h.clone() if ref_h is None else ref_h
            same_h = (h.float() - ref_h.float()).abs().max().item()
            dn = graphed_us(lambda: _down_kernel[(E, triton.cdiv(d, bn))](h, offs, down, out, f, d, **kw))
            line.append(f"{bn}x{bk}/{st} w{w}: swiglu {sw:.1f} us (h diff {same_h:.3g}), down {dn:.1f} us")
        except Exception as e:   # a tile that does not fit the shared memory
            line.append(f"{bn}x{bk}/{st} w{w}: {type(e).__name__}")
    print(f"32 tokens over {A} experts ({P} pairs): " + "; ".join(line), flush=True)
