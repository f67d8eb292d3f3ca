"""Empirical convergence progress labels (PRR training, [proposed] in METHODS.md section 4).

A trajectory logs, for every step t and every masked position i of the active block, the argmax
a_t(i); position i is committed at step T_i with its final token y_i = a_{T_i}(i). Its convergence
step is

    tau_i = the first logged step t such that a_u(i) == y_i for every logged step u in [t, T_i]

and the binary target of the record (t, i) is 1[t >= tau_i]: "from here on, the prediction at
this position is already its final token". Positions that were never committed in the trajectory
(a row capped, a block never reached) have no label.
"""
from __future__ import annotations

import torch


def convergence_labels(row: torch.Tensor, pos: torch.Tensor, step: torch.Tensor, argmax: torch.Tensor,
                       commit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per record (all [M]): label 1[t >= tau_i] and valid (the position was committed).

    Records are (row, position, step) triples with the argmax seen there and whether the position
    was committed at that step; order does not matter.
    """
    M = row.numel()
    if M == 0:
        return torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.bool)
    key = row.long() * (int(pos.max()) + 1) + pos.long()
    # sort by (key, step)
    order = torch.argsort(key * (int(step.max()) + 1) + step.long(), stable=True)
    k, a, c = key[order], argmax[order], commit[order]
    uniq, inv = torch.unique(k, return_inverse=True)
    final = torch.full((uniq.numel(),), -1, dtype=torch.long)
    has = torch.zeros(uniq.numel(), dtype=torch.bool)
    final[inv[c]] = a[c].long()
    has[inv[c]] = True
    mism = (a.long() != final[inv]).long()
    # mismatches from this record to the end of its group = group total - exclusive prefix
    incl = mism.cumsum(0)
    group_end = torch.zeros(uniq.numel(), dtype=torch.long).scatter_reduce(
        0, inv, torch.arange(M), reduce="amax", include_self=False)
    suffix = incl[group_end[inv]] - incl + mism
    label_sorted, valid_sorted = suffix == 0, has[inv]
    label, valid = torch.empty_like(label_sorted), torch.empty_like(valid_sorted)
    label[order], valid[order] = label_sorted, valid_sorted
    return label, valid


def convergence_steps(row, pos, step, argmax, commit) -> dict[tuple[int, int], int]:
    """tau_i per (row, position), for inspection and tests: the first step labelled converged."""
    label, valid = convergence_labels(row, pos, step, argmax, commit)
    out: dict[tuple[int, int], int] = {}
    for r, p, t, l, v in zip(row.tolist(), pos.tolist(), step.tolist(), label.tolist(), valid.tolist()):
        if v and l:
            out[(r, p)] = min(out.get((r, p), t), t)
    return out
