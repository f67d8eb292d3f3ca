"""The functions that run through torch.compile on GPU (`on_gpu_compiled`) must trace as one graph
(they are compiled with fullgraph=True: a graph break would be an error on GPU only) and give what
the eager function gives; one compile must serve every number of rows, as the wrapper promises.
Checked on CPU with dynamo's eager backend (tracing only, no code generation)."""
import torch

from models.layers import (_add_rms_norm_fp32_scale_rows, _add_rms_norm_rows, _qk_norm_rope_rows,
                           _rms_norm_fp32_scale_rows, _rms_norm_rows, _rope_qk_rows, _swiglu_rows, add_rms_norm,
                           fused_qk_norm_rope, fused_qkv_rope, rms_norm, rms_norm_fp32_scale)
from decoding.state import Constants, Counters, advance
from decoding.select import _chosen_prob_rows, _greedy_rows
from kernels.compiled import _tensors
from models.moe import _combine_compiled, _group_by_expert, _route_steps


def _advance_args(n: int, g: torch.Generator):
    G, mask = 12, 99
    gen_a = torch.where(torch.rand(n, G, generator=g) < 0.6, mask, torch.randint(0, 9, (n, G), generator=g))
    x0 = torch.randint(0, 9, (n, G), generator=g)
    commit = torch.rand(n, G, generator=g) < 0.3
    block = torch.randint(0, 3, (n,), generator=g)
    in_block = (torch.arange(G) // 4) == block.unsqueeze(1)
    act = torch.rand(n, generator=g) < 0.8
    rows = Counters(block, torch.randint(0, 4, (n,), generator=g), torch.randint(0, 9, (n,), generator=g),
                    torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool))
    k = Constants(eos=torch.tensor([7]), pos=torch.arange(G), step_cap=torch.tensor(8), mask_id=mask,
                  block_length=4, num_blocks=3, early_stop=True)
    hold = torch.rand(n, generator=g) < 0.3   # Decision.hold
    return [torch.where(commit, x0, gen_a), x0, in_block, act, rows, k, hold]


CASES = {
    "rms_norm": (_rms_norm_rows, lambda n, g: [torch.randn(n, 16, generator=g), torch.randn(16, generator=g), 1e-5]),
    "add_rms_norm": (_add_rms_norm_rows, lambda n, g: [torch.randn(n, 16, generator=g), torch.randn(n, 16, generator=g),
                                                       torch.randn(16, generator=g), 1e-5]),
    "rms_norm_fp32_scale": (_rms_norm_fp32_scale_rows,
                            lambda n, g: [torch.randn(n, 16, generator=g), torch.randn(16, generator=g), 1e-5]),
    "add_rms_norm_fp32_scale": (_add_rms_norm_fp32_scale_rows,
                                lambda n, g: [torch.randn(n, 16, generator=g), torch.randn(n, 16, generator=g),
                                              torch.randn(16, generator=g), 1e-5]),
    "qk_norm_rope": (_qk_norm_rope_rows, lambda n, g: [torch.randn(n, 8, 8, generator=g), torch.randn(8, generator=g),
                                                      torch.randn(8, generator=g), torch.randn(n, 1, 8, generator=g),
                                                      torch.randn(n, 1, 8, generator=g), 4, 2, 1e-6, True]),
    "qk_norm_partial_rope": (_qk_norm_rope_rows, lambda n, g: [torch.randn(n, 8, 8, generator=g),
                                                              torch.randn(8, generator=g), torch.randn(8, generator=g),
                                                              torch.randn(n, 1, 4, generator=g),
                                                              torch.randn(n, 1, 4, generator=g), 4, 2, 1e-6, False]),
    "moe_route": (_route_steps, lambda n, g: [torch.randn(n, 32, generator=g), torch.randn(32, generator=g) * 0.1,
                                              4, 4, 2, 2.5]),
    "moe_combine": (_combine_compiled, lambda n, g: [torch.randn(4 * n, 16, generator=g),
                                                 torch.randperm(4 * n, generator=g).view(n, 4),
                                                 torch.rand(n, 4, generator=g), torch.randn(n, 16, generator=g)]),
    "moe_group": (_group_by_expert, lambda n, g: [torch.randint(0, 32, (4 * n,), generator=g), 32, 4]),
    "swiglu": (_swiglu_rows, lambda n, g: [torch.randn(n, 32, generator=g)]),
    "rope": (_rope_qk_rows, lambda n, g: [torch.randn(n, 6, 8, generator=g), torch.randn(n, 1, 8, generator=g),
                                          torch.randn(n, 1, 8, generator=g), 4]),
    "greedy": (_greedy_rows, lambda n, g: [torch.randn(n, 640, generator=g)]),
    "chosen_prob": (_chosen_prob_rows, lambda n, g: [torch.randn(n, 640, generator=g), torch.randint(0, 640, (n,), generator=g)]),
    "bookkeep": (advance, _advance_args),
}


def _clone(args):
    import dataclasses
    one = lambda a: (a.clone() if isinstance(a, torch.Tensor) else
                     dataclasses.replace(a, **{k: one(v) for k, v in vars(a).items()}) if dataclasses.is_dataclass(a)
                     else a)
    return [one(a) for a in args]


def test_gpu_compiled_functions_trace_whole_and_equal_eager_for_any_row_count():
    for name, (wrapper, make) in CASES.items():
        fn, row_args = wrapper.__wrapped__, wrapper.row_args
        graphs = []

        def count(gm, inputs):
            graphs.append(gm)
            return gm.forward
        torch._dynamo.reset()
        compiled = torch.compile(fn, fullgraph=True, backend=count)
        g = torch.Generator().manual_seed(0)
        for n in (3, 5):   # the second size must not recompile
            args = make(n, g)
            eager_args, compiled_args = _clone(args), _clone(args)
            for i in row_args:
                for t in _tensors(compiled_args[i]):
                    torch._dynamo.mark_dynamic(t, 0)
            with torch._dynamo.config.patch(automatic_dynamic_shapes=False):
                got = compiled(*compiled_args)
            want = fn(*eager_args)
            got, want = (got if isinstance(got, tuple) else (got,)), (want if isinstance(want, tuple) else (want,))
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")
            for a, b in zip(compiled_args, eager_args):   # in-place updates (the bookkeeping's state)
                for ta, tb in zip(_tensors(a), _tensors(b)):
                    assert torch.equal(ta, tb), name
        assert len(graphs) == 1, f"{name}: compiled {len(graphs)} times for 3 and 5 rows"
    torch._dynamo.reset()


def test_fused_norms_equal_the_unfused_ops_bitwise():
    """The one-pass functions the block-causal Qwen layers use compute exactly what the separate
    ops did (same operations, same order), in fp32 and bf16."""
    from models.layers import rope_cos_sin
    g = torch.Generator().manual_seed(0)
    for dt in (torch.float32, torch.bfloat16):
        x, d = torch.randn(2, 5, 16, generator=g).to(dt), torch.randn(2, 5, 16, generator=g).to(dt)
        w = (torch.rand(16, generator=g) + 0.5).to(dt)
        for fp32 in (True, False):
            s, h = add_rms_norm(x, d, w, 1e-6, fp32)
            norm = rms_norm_fp32_scale if fp32 else rms_norm
            assert torch.equal(s, x + d) and torch.equal(h, norm(x + d, w, 1e-6))
            H, Hk, hd = 4, 2, 8
            qkv = torch.randn(2, 5, (H + 2 * Hk) * hd, generator=g).to(dt)
            wq, wk = (torch.rand(hd, generator=g) + 0.5).to(dt), (torch.rand(hd, generator=g) + 0.5).to(dt)
            cos, sin = rope_cos_sin(torch.arange(5).expand(2, 5), hd, 10000.0, dt)
            t = qkv.view(2, 5, H + 2 * Hk, hd)
            normed = torch.cat([norm(t[:, :, :H], wq, 1e-6), norm(t[:, :, H:H + Hk], wk, 1e-6), t[:, :, H + Hk:]], 2)
            want = fused_qkv_rope(normed.reshape(2, 5, -1), H, Hk, cos, sin)
            assert torch.equal(fused_qk_norm_rope(qkv, H, Hk, wq, wk, 1e-6, fp32, cos, sin), want)
