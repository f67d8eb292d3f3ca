import sys, torch
sys.path.insert(0, ".")
from models import load_model
from models.calibrate import calibrate_confidence_
from decoding.base import GenConfig
from decoding.loop import decode
from decoding.registry import build_method, parse_methods
model = load_model("llada-8b", device="cuda", dtype=torch.bfloat16, no_weights=True)
g = torch.Generator(device="cuda").manual_seed(0)
lens = [256 - 32 * i for i in range(4)]
prompts = [torch.randint(3, 100000, (n,), device="cuda", generator=g).tolist() for n in lens]
sample = torch.tensor([prompts[0] + [model.mask_id] * 64], device="cuda")
print(calibrate_confidence_(model, sample, 0.5))
gen = GenConfig(gen_length=64, block_length=32)
for spec in ["threshold:cache=dual", "fixed:cache=dual", "threshold"]:
    model.cuda_graphs = True
    fast = decode(model, build_method(parse_methods(spec)[0], gen), prompts, gen)
    model.cuda_graphs = False
    ref = decode(model, build_method(parse_methods(spec)[0], gen), prompts, gen)
    same = (fast.tokens == ref.tokens).all(1) & (fast.nfe == ref.nfe)
    print(f"OLD {spec}: {int(same.sum())}/4 rows equal, NFE fast {fast.nfe.tolist()} ref {ref.nfe.tolist()}", flush=True)
