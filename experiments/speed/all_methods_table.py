"""The decoder-core issue's speed table from bench_speed JSON files (LLaDA-8B, every method, batch 1
and 8, with and without the dual cache): per method and column, ms per step, the loop overhead on
the basis bench_speed gives first, and in parentheses against the decode's own forwards back to
back (`forward_s_sustained`, where it is those: sustained_applies), and in brackets, where steps ran
queued ahead, against its forwards timed inside a second decode with none queued ahead
(`overhead_vs_unqueued_pct`); a cell over its target (3% at batch 1, 5% at batch 8) on every basis
it has is marked "over".

    python experiments/speed/all_methods_table.py results/speed/all-methods/all_b*_h200_3a1dd5b.json

Bases, as bench_speed computes them: batch 1 without a cache and every dual-cache decode, against
the forwards timed apart (`overhead_pct`); batch 8 without a cache, against the forwards timed inside
the loop (`overhead_in_loop_pct`: finished rows leave the batch). A later file's row replaces an
earlier one's for the same method and column.
"""
from __future__ import annotations

import json
import sys

TARGET = {1: 3.0, 8: 5.0}


def sustained_applies(row: dict, batch: int, dual: bool) -> bool:
    """Whether forward_s_sustained is this decode's own forwards: a dual-cache decode's (its
    windows, refreshes and mixed steps replayed), or without a cache at batch 1 the full forward
    as often as the decode stepped (in older files, which have no `sustained_forwards`, unless its
    forwards were verification graphs or truncated: wino, slowfast); not at batch 8, where finished
    rows leave the batch and the forwards shrink."""
    if not row.get("forward_s_sustained"):
        return False
    if dual:
        return True
    if batch != 1:
        return False
    if "sustained_forwards" in row:   # files that record them: the decode's own forwards (no_cache_forwards)
        return True
    return not row.get("forward_is_verification") and not row.get("steps_by_cut_length")


def cell(row: dict, batch: int, dual: bool) -> tuple[str, bool]:
    """(the cell's text, whether it is over its target on every basis it has)."""
    first = row.get("overhead_in_loop_pct") if row.get("overhead_in_loop_pct") is not None else row["overhead_pct"]
    bases = [first]
    text = f"{row['step_s'] * 1e3:.2f} ms, {first:.2f}%"
    if sustained_applies(row, batch, dual):
        sustained = 100 * (row["step_s"] - row["forward_s_sustained"]) / row["step_s"]
        bases.append(sustained)
        text += f" ({sustained:.2f}%)"
    if row.get("overhead_vs_unqueued_pct") is not None:   # against its forwards inside a decode with none queued ahead
        bases.append(row["overhead_vs_unqueued_pct"])
        text += f" [{row['overhead_vs_unqueued_pct']:.2f}%]"
    over = all(b >= TARGET[batch] for b in bases)
    return text + (" over" if over else ""), over


def main(paths: list[str]) -> None:
    table: dict[str, dict[str, str]] = {}
    over: list[str] = []
    for path in paths:
        data = json.load(open(path))
        for b, res in data["batches"].items():
            for spec, row in res.get("decode", {}).items():
                if not row.get("captured"):
                    continue
                method = spec.split(":")[0]
                col = f"batch {b}" + (", dual cache" if "cache=dual" in spec else "")
                table.setdefault(method, {})[col] = cell(row, int(b), "cache=dual" in spec)
    cols = ["batch 1", "batch 1, dual cache", "batch 8", "batch 8, dual cache"]
    print("| method | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for method, cells in table.items():
        print(f"| `{method}` | " + " | ".join(cells[c][0] if c in cells else "-" for c in cols) + " |")
        over += [f"{method}, {c}" for c in cols if c in cells and cells[c][1]]
    print("\nover target on every basis: " + ("; ".join(over) if over else "none"))


if __name__ == "__main__":
    main(sys.argv[1:])
