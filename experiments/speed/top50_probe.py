"""GPU probe: ways to take the 50 largest values of each of a block's rows of logits (PRR's top-50
log-sum-exp confidence), timed as CUDA graphs, each checked equal to torch.topk's values.

    python experiments/speed/top50_probe.py            # [32, 126464] and [256, 126464], bf16 and fp32

- topk:          torch.topk over the whole row (a multi-block radix select per row);
- tiles T:       a top-50 of each tile of T, then a top-50 of the tiles' winners;
- chunks C:      kernels.topk.topk_values: the 50 chunks of C elements with the largest maxima hold
                 the row's 50 largest values, so one max pass, a top-50 of the chunk maxima, a
                 gather of 50 chunks and one top-50 of 50 x C elements.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from acceleration.graphs import GraphedCall  # noqa: E402
from bench.bench_speed import cuda_time  # noqa: E402
from kernels.topk import topk_values  # noqa: E402

K = 50


def tiles(x: torch.Tensor, tile: int) -> torch.Tensor:
    rows, V = x.shape
    n = -(-V // tile)
    padded = torch.nn.functional.pad(x, (0, n * tile - V), value=-torch.inf)
    winners = padded.view(rows, n, tile).topk(K, dim=-1, sorted=False).values
    return winners.reshape(rows, n * K).topk(K, dim=-1).values


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
        for dtype in (torch.bfloat16, torch.float32):
            x = (torch.randn(rows, V, device=dev, generator=g) * 3).to(dtype)
            x[:, 7] = x[:, 9] = x.max() + 1          # ties
            want = x.topk(K, dim=-1).values
            ways = {"topk": lambda t: t.topk(K, dim=-1).values}
            for tile in (2048, 4096):
                ways[f"tiles {tile}"] = lambda t, tile=tile: tiles(t, tile)
            for chunk in (64, 128, 256, 512):
                ways[f"chunks {chunk}"] = lambda t, chunk=chunk: topk_values(t, K, chunk=chunk)
            for name, fn in ways.items():
                ok = torch.equal(fn(x), want)
                print(f"[{rows}, {V}] {str(dtype)[6:]:8s} {name:10s} {graph_time(fn, x) * 1e6:8.1f} us  equal={ok}",
                      flush=True)


if __name__ == "__main__":
    main()
