"""Time the vocabulary statistics of PRR, DiCo and KLASS old (torch.topk over the row, float64
previous log-probabilities) against new (kernels/topk.py, previous logits kept), compiled and
replayed as CUDA graphs, on a block's rows of LLaDA-8B logits (bf16, V 126464); checks the values.
    python experiments/speed/vocab_stats_probe.py [--rows 32,256]
"""
import argparse
import math

import torch

from kernels.topk import top2_values, topk_values

V = 126464
REF_EPS = 1e-6


def prr_old(l):
    lf = l.float()
    logp = torch.log_softmax(lf, -1)
    top2 = logp.topk(2, -1).values.exp()
    ent = -(logp.exp() * logp).sum(-1) / math.log(V)
    lse = lf.topk(50, -1).values.logsumexp(-1)
    return torch.stack([top2[:, 0], top2[:, 0] - top2[:, 1], ent, lse], -1)


def prr_new(l, chunk=128):
    lf = l.float()
    logp = torch.log_softmax(lf, -1)
    top2 = top2_values(logp).exp()
    ent = -(logp.exp() * logp).sum(-1) / math.log(V)
    lse = topk_values(lf, 50, chunk).logsumexp(-1)
    return torch.stack([top2[:, 0], top2[:, 0] - top2[:, 1], ent, lse], -1)


def dico_old(l):
    t = torch.softmax(l.float(), -1).topk(2, -1).values
    return t[:, 0] - t[:, 1]


def dico_new(l):
    t = top2_values(torch.softmax(l.float(), -1))
    return t[:, 0] - t[:, 1]


def klass_old(l, prev):
    logp = torch.log_softmax(l.double(), -1)
    p, q = logp.exp(), prev.exp()
    kl = (p * ((p + 1e-12).log() - (q + 1e-12).log())).sum(-1)
    prev.copy_(logp)
    return kl


def klass_new(l, prev, prev_lse):
    d = l.double()
    lse = d.logsumexp(-1)
    p, q = (d - lse.unsqueeze(-1)).exp(), (prev.double() - prev_lse.unsqueeze(-1)).exp()
    kl = (p * ((p + 1e-12).log() - (q + 1e-12).log())).sum(-1)
    prev.copy_(l)
    prev_lse.copy_(lse)
    return kl


def graph_ms(fn, *args, reps=200):
    fn(*args)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn(*args)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn(*args)
    times = []
    for _ in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(reps):
            g.replay()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / reps)
    times.sort()
    return times[2], out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="32,256")
    args = ap.parse_args()
    torch.manual_seed(0)
    c = lambda f: torch.compile(f, fullgraph=True, dynamic=False)
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}")
    print("| rows | function | old (ms) | new (ms) | equal |")
    print("|---|---|---|---|---|")
    for n in (int(r) for r in args.rows.split(",")):
        l = (torch.randn(n, V, device="cuda") * 3).bfloat16()
        l[:, 7] = l[:, 11]   # a tied pair somewhere
        to, o = graph_ms(c(prr_old), l)
        tn, nw = graph_ms(c(prr_new), l)
        print(f"| {n} | prr features + top-50 lse | {to:.3f} | {tn:.3f} | {torch.equal(o, nw)} ({(o - nw).abs().max().item():.1e}) |")
        for chunk in (64, 256, 512):
            tt, nt = graph_ms(c(lambda x, t=chunk: prr_new(x, t)), l)
            print(f"| {n} | prr, chunk {chunk} | | {tt:.3f} | {torch.equal(o, nt)} |")
        to, o = graph_ms(c(dico_old), l)
        tn, nw = graph_ms(c(dico_new), l)
        print(f"| {n} | dico margin | {to:.3f} | {tn:.3f} | {torch.equal(o, nw)} |")
        prev0 = torch.log_softmax((torch.randn(n, V, device="cuda") * 3).bfloat16().double(), -1)
        to, o = graph_ms(c(klass_old), l, prev0.clone())
        pl, plse = l.clone(), l.double().logsumexp(-1)
        tn, nw = graph_ms(c(klass_new), l, pl, plse)
        print(f"| {n} | klass KL (same logits twice) | {to:.3f} | {tn:.3f} | max |old-new| {(o - nw).abs().max().item():.1e} |")
    l = (torch.randn(32, V, device="cuda") * 3).bfloat16()
    cur = lambda x: x.float().topk(50, -1).values
    t0, a = graph_ms(c(cur), l)
    t1, b = graph_ms(c(lambda x: topk_values(x.float(), 50)), l)
    print(f"\ntopk(50) over 32 rows: torch.topk {t0:.3f} ms, chunks {t1:.3f} ms, equal {torch.equal(a, b)}")


if __name__ == "__main__":
    main()
