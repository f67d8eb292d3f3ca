"""GPU parity: CUDA-graph forwards (full, refresh, window) vs eager, token for token and NFE."""
import os
import torch
from models import load_model
from decoding.base import GenConfig
from decoding.loop import decode
from decoding.registry import build_method, parse_methods
from tasks.arith import test_problems


def compare(model, prompts, gen, specs, tag):
    for spec in specs:
        res = []
        for graphs in (True, False):
            model.cuda_graphs = graphs
            model.__dict__.pop("_full_graphs", None)
            res.append(decode(model, build_method(parse_methods(spec)[0], gen), prompts, gen))
        a, b = res
        diff = (a.tokens != b.tokens).sum().item()
        if os.environ.get("DLLM_COMPILE") == "0":
            tag_ = tag + " DLLM_COMPILE=0"
        else:
            tag_ = tag
        print(f"parity {tag_} {spec}: tokens equal {diff == 0} ({diff} of {a.tokens.numel()} differ), "
              f"nfe equal {torch.equal(a.nfe, b.nfe)}", flush=True)
    model.cuda_graphs = True


g = torch.Generator().manual_seed(1)
for dtype in (torch.float32, torch.bfloat16):
    m = load_model("llada-small", device="cuda", dtype=dtype, no_weights=True)
    gen = GenConfig(gen_length=64, block_length=16, early_stop=False)
    for lens, tag in (((40, 40, 40, 40), "equal"), ((40, 31, 25, 40), "padded")):
        prompts = [torch.randint(300, 30000, (n,), generator=g).tolist() for n in lens]
        compare(m, prompts, gen, ["fixed", "threshold", "threshold:cache=dual", "fixed:cache=prefix", "localleap",
                                  "localleap:cache=dual"],
                f"llada-small {str(dtype)[6:]} {tag}")
tiny = load_model("tiny", device="cuda", dtype=torch.float32)
probs = test_problems(64)
prompts = [tiny.tokenizer.encode(p.prompt) for p in probs]
gen = GenConfig(gen_length=48, block_length=16)
compare(tiny, prompts, gen, ["fixed", "threshold", "prr", "slowfast", "eb", "threshold:cache=dual", "localleap",
                             "localleap:cache=dual"], "tiny fp32 arith")
