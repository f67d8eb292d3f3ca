"""`run_bench.py verify-model <checkpoint>`: our native model against the authors' remote code.

Both load the same checkpoint; a few prompts (plain and, when the tokenizer has one, through the
chat template, with masked positions appended as in decoding) go through both forwards; we report
per prompt the max absolute error, the max error relative to the reference's largest |logit|, and
the argmax agreement over all positions, then a verdict. Tolerances depend on the dtype: in fp32
the two must agree to rounding; in bf16 the order of operations differs (fused norms, products),
so logits differ by a few bf16 ulps and argmax may flip only where the top two nearly tie.
Block-causal families (SDAR/TraDo, ...) are compared on whole-sequence forwards under the
block-causal mask, which the hf backend hands to the authors' forward (models/block_causal_real.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

PROMPTS = ["The capital of France is",
           "Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
           "in May. How many clips did Natalia sell altogether in April and May?\nAnswer:",
           "def fibonacci(n):"]
TOLERANCE = {torch.float32: (1e-3, 0.999), torch.bfloat16: (3e-2, 0.97), torch.float16: (1e-2, 0.98)}


@dataclass
class Comparison:
    prompt: str
    max_abs: float
    max_rel: float
    argmax_agree: float


def compare_logits(ours: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, float]:
    """max |a - b|, max |a - b| / max |b|, fraction of positions with the same argmax."""
    a, b = ours.float(), ref.float()
    diff = (a - b).abs().max().item()
    return diff, diff / max(b.abs().max().item(), 1e-12), (a.argmax(-1) == b.argmax(-1)).float().mean().item()


def verdict(rows: list[Comparison], dtype: torch.dtype) -> tuple[bool, str]:
    rel_tol, agree_tol = TOLERANCE.get(dtype, TOLERANCE[torch.bfloat16])
    worst_rel = max(r.max_rel for r in rows)
    worst_agree = min(r.argmax_agree for r in rows)
    ok = worst_rel <= rel_tol and worst_agree >= agree_tol
    word = "MATCH" if ok else "MISMATCH"
    return ok, (f"{word}: worst relative error {worst_rel:.2e} (tolerance {rel_tol:.0e}), worst argmax agreement "
                f"{worst_agree:.4f} (needs >= {agree_tol}) in {str(dtype).replace('torch.', '')}")


def prompt_ids(model, gen_masks: int = 16) -> list[tuple[str, list[int]]]:
    out = []
    for p in PROMPTS:
        out.append((p, model.tokenizer.encode(p) + [model.mask_id] * gen_masks))
    tok = model.tokenizer
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template([{"role": "user", "content": PROMPTS[1]}])
        out.append(("[chat] " + PROMPTS[1][:40], tok.encode(text) + [model.mask_id] * gen_masks))
    return out


@torch.no_grad()
def verify(ours, ref, dtype: torch.dtype) -> tuple[bool, list[Comparison], str]:
    rows = []
    for label, ids in prompt_ids(ours):
        x = torch.tensor([ids], device=ours.device)
        a = ours.forward(x).logits
        b = ref.forward(x.to(ref.device)).logits.to(a.device)
        rows.append(Comparison(label, *compare_logits(a, b)))
    ok, text = verdict(rows, dtype)
    return ok, rows, text
