"""CPU probe: the top-level ops a captured block step runs outside its block forward, by CPU time
and input shapes (the step function of a captured block decode built with the tests' eager
stand-ins for the graphs). A count of what the step does beside the forward, not a GPU timing.

    python experiments/speed/block_step_ops_cpu.py fast-dllm-v2-small fixed
    python experiments/speed/block_step_ops_cpu.py sdar-small threshold:append=separate
"""
import sys
from pathlib import Path
root = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(root), str(root / "tests")]
import pytest, torch
from torch.profiler import profile, ProfilerActivity, record_function
from models import load_model
from decoding.base import GenConfig
from decoding.registry import build_method, parse_methods
from decoding.block_causal import default_block
from acceleration import Decoder
from acceleration.captured import copy_tree
import test_block_loop as T

name, spec = sys.argv[1], sys.argv[2]
m = load_model(name, no_weights=True)
gen = GenConfig(gen_length=64, block_length=default_block(m), early_stop=False)
prompts = [torch.randint(3, 1000, (64,), generator=torch.Generator().manual_seed(0)).tolist()]
mp = pytest.MonkeyPatch()
T._stand_in_block_graphs(mp)
dec = Decoder(m)
meth = build_method(parse_methods(spec)[0], gen)
dec(meth, prompts, gen)
(d,) = dec.pool.decodes.values()
net = m.module
orig = net.block_forward
def wrapped(*a, **k):
    with record_function("BLOCK_FORWARD"):
        return orig(*a, **k)
net.block_forward = wrapped
for kind, fn in d.step_fns.items():
    st = copy_tree(d.state)
    fn(st, d.launched.get(kind))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        st = copy_tree(d.state)
        fn(st, d.launched.get(kind))
    evs = prof.events()
    fwd = [e for e in evs if e.name == "BLOCK_FORWARD"]
    def inside(e):
        return any(f.time_range.start <= e.time_range.start and e.time_range.end <= f.time_range.end for f in fwd)
    top = [e for e in evs if e.name.startswith("aten::") and not inside(e)
           and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]   # top-level aten ops
    out = sorted(top, key=lambda e: -e.cpu_time_total)
    print(f"== {name} {spec} kind {kind}: {len(out)} top-level aten ops outside the forward, "
          f"{sum(e.cpu_time_total for e in out)/1e3:.1f} ms CPU; forward {sum(f.cpu_time_total for f in fwd)/1e3:.1f} ms")
    for e in out[:25]:
        print(f"  {e.cpu_time_total/1e3:7.2f} ms {e.name} {[list(s) for s in e.input_shapes if s][:3]}")
mp.undo()
