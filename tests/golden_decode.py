"""Golden decodes: every method (with each cache mode it allows) on the built-in model and on tiny
random LLaDA and Dream, left-padded batches, early stop and a step cap. The fixture
tests/data/golden_decode.json holds the tokens, NFE and steps these decodes produced; a change of
the decode loop must reproduce them exactly (tests/test_golden.py).

    python tests/golden_decode.py          # rewrite the fixture (only when results are meant to change)
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIXTURE = Path(__file__).parent / "data" / "golden_decode.json"

# method spec -> cache modes it is run with ("slowfast" feeds truncated forwards: no cache; CFG: no cache)
SPECS = {
    "fixed": ("none", "prefix", "dual"),
    "fixed:steps=12": ("none", "prefix", "dual"),
    "fixed:remasking=random": ("none", "dual"),
    "fixed:temperature=1.0": ("none", "dual"),
    "fixed:steps=12,cfg_scale=1.0": ("none",),
    "threshold": ("none", "prefix", "dual"),
    "threshold:tau=0.5": ("none", "dual"),
    "threshold:factor=1.0": ("none", "dual"),
    "prr:controller=off": ("none", "dual"),
    "prr:controller=zero,tau=0.7": ("none", "prefix", "dual"),
    "slowfast": ("none",),
    "slowfast:tau_min=0.0,tau_high=0.5": ("none",),
    "slowfast:preset=paper": ("none",),
    "slowfast:reuse=false": ("none",),
    "localleap": ("none", "prefix", "dual"),
    "localleap:tau_anchor=0.5,tau_relaxed=0.2": ("none", "dual"),
    "eb": ("none", "prefix", "dual"),
    "eb:gamma=1.0": ("none", "dual"),
    "klass": ("none", "prefix", "dual"),
    "klass:tau=0.3,kl_tol=0.1": ("none", "prefix", "dual"),
    "klass:tau=0.3,kl_tol=0.1,kl=topk,topk=4": ("none", "dual"),
}
# the committed PRR controller was trained for the built-in model's hidden size
TINY_ONLY = {"prr": ("none", "prefix", "dual"), "prr:tau=0.7,profile=true": ("none", "dual"),
             "prr:shaping=temperature,alpha=0.5": ("none",)}
FIELDS = ("tokens", "nfe", "steps", "capped", "gen_tokens", "nfe_truncated")


def models():
    from models import load_model
    from tasks.arith import test_problems
    out = {}
    tiny = load_model("tiny")
    out["tiny"] = (tiny, [tiny.tokenizer.encode(p.prompt) for p in test_problems(5)])
    for name in ("llada-tiny", "dream-tiny"):
        m = load_model(name, no_weights=True, seed=1)
        with torch.no_grad():   # peaked logits (as tests/test_models.py): adaptive methods commit several tokens
            for p in m.module.parameters():
                if p.dim() == 2:
                    p.mul_(25.0)
        g = torch.Generator().manual_seed(0)
        out[name] = (m, [torch.randint(10, 400, (n,), generator=g).tolist() for n in (9, 5, 7, 3)])
    return out


def gens():
    from decoding.base import GenConfig
    return {"g24b8": GenConfig(gen_length=24, block_length=8),
            "g24b8-cap": GenConfig(gen_length=24, block_length=8, max_steps=7, early_stop=False)}


def cases():
    """(key, model name, spec with cache, gen name, trace?) for every golden decode."""
    for model in ("tiny", "llada-tiny", "dream-tiny"):
        specs = dict(SPECS, **(TINY_ONLY if model == "tiny" else {}))
        for spec, caches in specs.items():
            for cache in caches:
                full = spec if cache == "none" else f"{spec}{',' if ':' in spec else ':'}cache={cache}"
                for gname in gens():
                    if gname.endswith("cap") and cache == "prefix":
                        continue
                    yield f"{model}|{full}|{gname}", model, full, gname


def trace_digest(trace) -> str:
    return hashlib.sha256(json.dumps(trace, sort_keys=True).encode()).hexdigest()[:16]


def run_case(decode, model, ids, spec, gen, trace=False):
    """-> dict of the golden fields for one decode (the runner's seeded generator)."""
    from decoding.registry import build_method, parse_methods
    m = build_method(parse_methods(spec)[0], gen)
    res = decode(model, m, ids, gen, generator=torch.Generator().manual_seed(1234), trace=trace)
    out = {f: getattr(res, f).tolist() for f in FIELDS}
    if trace:   # the integers exactly (a digest); the probabilities to P1_DECIMALS, compared within P1_TOLERANCE
        out["trace"] = trace_digest([[{k: v for k, v in e.items() if k != "p1"} for e in row] for row in res.trace])
        out["p1"] = [round(v, P1_DECIMALS) for row in res.trace for e in row for v in e["p1"]]
    return out


# A trace's top-1 probabilities differ in their last float32 bits between CPUs (their vector units
# sum in other orders), so they are kept apart from the digest and compared within a tolerance.
P1_DECIMALS, P1_TOLERANCE = 5, 1e-4


TRACED = ("tiny|threshold|g24b8", "tiny|prr|g24b8", "llada-tiny|fixed:cache=dual|g24b8",
          "dream-tiny|slowfast|g24b8")


def generate(decode) -> dict:
    ms, gs = models(), gens()
    out = {}
    for key, model, spec, gname in cases():
        m, ids = ms[model]
        out[key] = run_case(decode, m, ids, spec, gs[gname], trace=key in TRACED)
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    from decoding.loop import decode
    data = generate(decode)
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
    print(f"wrote {len(data)} decodes to {FIXTURE}")
