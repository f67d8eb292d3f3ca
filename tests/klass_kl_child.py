"""Run by tests/test_klass_kl.py under TRITON_INTERPRET=1: klass's Triton KL kernels against their
eager twin on the CPU. Prints one JSON line."""
import json
import os

import torch

from kernels.klass_kl import _kl_ring_triton, kl_ring_reference, triton_ready


def kernel_case(V, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    R = 6
    logits = (3 * torch.randn(R, V, generator=g)).to(dtype)
    ring = torch.randn(3, 4, V, generator=g).double() - 20         # 3 rows of 3 slots and a spare
    slot = torch.tensor([0, 2, 5, 7, 7, 9])                        # 7: a spare slot shared by rows not taken
    take = torch.tensor([True, True, False, False, False, True])
    a_ring, b_ring = ring.clone(), ring.clone()
    a = kl_ring_reference(logits, a_ring, slot, take, 1e-12)
    b = _kl_ring_triton(logits, b_ring, slot, take, 1e-12)
    return {"kl": (a - b).abs().max().item(), "ring": (a_ring - b_ring).abs().max().item(),
            "ring_changed": (b_ring - ring).abs().max().item(), "kl_not_taken": b[~take].abs().max().item()}


def decode_case():
    from decoding.base import GenConfig
    from decoding.loop import decode
    from decoding.registry import build_method, parse_methods
    from models import load_model
    m = load_model("llada-tiny", no_weights=True)
    gen = GenConfig(gen_length=16, block_length=4)
    prompts = [[5, 6, 7, 8, 9], [10, 11, 12]]
    out = {}
    for spec in ("klass", "klass:cache=dual"):
        runs = []
        for kernels in ("1", "0"):
            os.environ["DLLM_TRITON_KL"] = kernels
            assert triton_ready(torch.zeros(1)) == (kernels == "1")
            torch.manual_seed(0)
            r = decode(m, build_method(parse_methods(spec)[0], gen), prompts, gen)
            runs.append((r.tokens.tolist(), r.nfe.tolist()))
        out[spec] = {"equal": runs[0] == runs[1], "nfe": runs[0][1]}
    return out


if __name__ == "__main__":
    res = {f"{V}_{str(dt).split('.')[-1]}": kernel_case(V, dt, V) for V, dt in
           ((8192, torch.bfloat16), (9001, torch.float32), (7, torch.float32))}
    res["decode"] = decode_case()
    print(json.dumps(res))
