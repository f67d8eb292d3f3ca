"""GPU probe: ways to take the 50 largest values of each of a block's rows of logits (PRR's top-50
log-sum-exp confidence), timed as CUDA graphs, each checked equal to torch.topk's values.

    python experiments/speed/top50_probe.py            # [32, 126464] and [256, 126464], fp32

- topk:          torch.topk over the whole row (a multi-block radix select per row);
- tiles T:       kernels.topk.topk_values (a top-50 of each tile of T, then of the winners);
- pruned C:      the row in C chunks; the 50 chunks with the largest maxima hold the row's 50
                 largest values (any value of another chunk is below 50 chunk maxima), so a
                 top-50 of their gathered elements gives them: one max pass, a top-50 of C maxima,
                 a gather of 50 chunks, one top-50 of 50 x V / C elements.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from acceleration.graphs import GraphedCall  # noqa: E402
from bench.bench_speed import cuda_time  # noqa: E402
from kernels.topk import topk_values  # noqa: E402

K = 50


def pruned(x: torch.Tensor, chunks: int) -> torch.Tensor:
    rows, V = x.shape
    c = x.view(rows, chunks, V // chunks)
    best = c.amax(-1).topk(K, dim=-1, sorted=False).indices                     # [rows, K] chunks
    picked = c.gather(1, best.unsqueeze(-1).expand(rows, K, V // chunks))      # [rows, K, V / C]
    return picked.reshape(rows, -1).topk(K, dim=-1).values


def graph_time(fn, x) -> float:
    """Median seconds of a CUDA graph replay of fn(x) (acceleration.graphs.GraphedCall)."""
    g = GraphedCall(fn, x)
    return cuda_time(lambda: g(*g.inputs), warmup=3, reps=30)


@torch.no_grad()
def main():
    dev = torch.device("cuda")
    V = 126464
    for rows in (32, 256):
        g = torch.Generator(device=dev).manual_seed(0)
        x = (torch.randn(rows, V, device=dev, generator=g) * 3).bfloat16().float()
        x[:, 7] = x[:, 9] = x.max() + 1          # ties
        want = x.topk(K, dim=-1).values
        ways = {"topk": lambda t: t.topk(K, dim=-1).values}
        for tile in (1024, 2048, 4096, 8192):
            ways[f"tiles {tile}"] = lambda t, tile=tile: topk_values(t, K, tile=tile)
        for chunks in (128, 256, 494, 988):
            if V % chunks == 0:
                ways[f"pruned {chunks}"] = lambda t, chunks=chunks: pruned(t, chunks)
        for name, fn in ways.items():
            ok = torch.equal(fn(x), want)
            print(f"[{rows}, {V}] {name:12s} {graph_time(fn, x) * 1e6:8.1f} us  equal={ok}", flush=True)


if __name__ == "__main__":
    main()
