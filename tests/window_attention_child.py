"""Run by test_window_attention.py in a child process with TRITON_INTERPRET=1 (the flag must be set
before Triton compiles anything): prints one JSON object of measured differences."""
import json
import os

import torch

assert os.environ.get("TRITON_INTERPRET") == "1"
from models import load_model                                           # noqa: E402
from kernels import window_attention as wa                               # noqa: E402
from models.layers import CacheCall, KVCache, attend, fused_qkv_rope, rope_cos_sin  # noqa: E402
from decoding.base import GenConfig                                              # noqa: E402
from decoding.loop import decode                                                 # noqa: E402
from decoding.registry import build_method, parse_methods                        # noqa: E402


def kernel_vs_sdpa(B, L, H, HKV, hd, W, masked, rows):
    g = torch.Generator().manual_seed(B * 100 + W)
    cache = torch.randn(B, L, 2 * HKV, hd, generator=g)
    b = len(rows)
    qkv = torch.randn(b, W, H + 2 * HKV, hd, generator=g)
    pos = torch.tensor([[s + w for w in range(W)] for s in range(5, 5 + 11 * b, 11)])
    cos, sin = rope_cos_sin(pos, hd, 10000.0)
    km = torch.ones(b, L, dtype=torch.bool)
    if masked:
        km[0, :3] = False
        km[-1, : pos[-1, 0] - 1] = False
    rows_t = torch.tensor(rows)
    ref_cache, new_cache = cache.clone(), cache.clone()
    call = CacheCall(KVCache([ref_cache]), rows=rows_t, pos=pos, key_mask=km if masked else None)
    ref = attend(fused_qkv_rope(qkv.flatten(2), H, HKV, cos, sin), H, 0, call, None)
    out = wa.window_attention(qkv, cos, sin, H, new_cache, rows_t, pos, km if masked else None)
    return {"out": (out - ref).abs().max().item(), "cache": (new_cache - ref_cache).abs().max().item(),
            "cache_changed": (new_cache - cache).abs().max().item()}


def decode_both_paths(name, spec):
    m = load_model(name, no_weights=True, seed=1)
    with torch.no_grad():   # peaked logits, as in test_models.py
        for p in m.module.parameters():
            if p.dim() == 2:
                p.mul_(25.0)
    gen = GenConfig(gen_length=16, block_length=8, early_stop=False)
    ids = [m.tokenizer.encode(p) for p in ("Question: Tom has 3 apples", "Question: 2")]
    res = {}
    for flag in ("1", "0"):
        os.environ["DLLM_TRITON_ATTN"] = flag
        r = decode(m, build_method(parse_methods(spec)[0], gen), ids, gen)
        res[flag] = (r.tokens.tolist(), r.nfe.tolist())
    os.environ["DLLM_TRITON_ATTN"] = "1"
    return {"equal": res["1"] == res["0"], "nfe": res["1"][1]}


print(json.dumps({
    "mha": kernel_vs_sdpa(B=2, L=70, H=4, HKV=4, hd=32, W=8, masked=False, rows=[0, 1]),
    "gqa_mask_rows": kernel_vs_sdpa(B=3, L=90, H=4, HKV=2, hd=16, W=9, masked=True, rows=[2, 0]),
    "window_of_33": kernel_vs_sdpa(B=1, L=100, H=2, HKV=1, hd=32, W=33, masked=False, rows=[0]),
    "long_sequence": kernel_vs_sdpa(B=1, L=3000, H=2, HKV=1, hd=16, W=8, masked=False, rows=[0]),
    "llada_dual": decode_both_paths("llada-tiny", "threshold:tau=0.5,cache=dual"),
    "dream_prefix": decode_both_paths("dream-tiny", "fixed:steps=8,cache=prefix"),
}))
