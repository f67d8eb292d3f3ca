"""EOS-aware accounting: answer tokens and committed tokens, side by side; the prompt never counts."""
import json

import pytest

import run_bench
from bench.accounting import committed_tokens
from decoding.base import GenConfig
from decoding.loop import decode
from decoding.registry import build_method, parse_methods


@pytest.mark.parametrize("gen_tokens, early_stop, capped, expected", [
    (5, True, False, 16),     # EOS in block 0: only block 0 committed
    (16, True, False, 32),    # EOS is the first position of block 1
    (47, True, False, 48),
    (48, True, False, 48),    # no EOS
    (5, False, False, 48),    # early stop off: every block decoded
    (5, True, True, 48),      # the step cap fills every remaining mask
])
def test_committed_tokens_follow_the_blocks(gen_tokens, early_stop, capped, expected):
    assert committed_tokens(gen_tokens, 48, 16, early_stop, capped) == expected


@pytest.mark.parametrize("early_stop", [True, False])
@pytest.mark.parametrize("spec", ["fixed:steps=12", "threshold:tau=0.5"])
def test_committed_tokens_equal_the_positions_the_loop_committed(builtin_model, prompts, spec, early_stop):
    gen = GenConfig(gen_length=48, block_length=16, early_stop=early_stop)
    method = build_method(parse_methods(spec)[0], gen)
    ids = [builtin_model.tokenizer.encode(p) for p in prompts]
    res = decode(builtin_model, method, ids, gen, trace=True)
    stopped_early = 0
    for i, steps in enumerate(res.trace):
        if res.capped[i]:
            continue
        loop_committed = sum(len(s["commit"]) for s in steps)
        n = committed_tokens(int(res.gen_tokens[i]), 48, 16, early_stop, False)
        assert n == loop_committed
        stopped_early += n < 48
    if early_stop:
        assert stopped_early > 0, "the built-in model answers in the first block: some row must stop early"


def test_run_records_both_counts_and_never_the_prompt(tmp_path):
    assert run_bench.main(["--out-dir", str(tmp_path), "--no-progress", "--run-id", "r", "--limit", "6",
                           "--batch-size", "3", "--methods", "fixed:steps=6,threshold", "--gen-length", "96",
                           "--block-length", "16", "--warmup-batches", "0"]) == 0
    reqs = [json.loads(l) for l in (tmp_path / "r" / "requests.jsonl").read_text().splitlines()]
    rows = {r["method"]: r for r in json.loads((tmp_path / "r" / "summary.json").read_text())["rows"]}
    for r in reqs:
        assert r["prompt_tokens"] > 0
        assert r["gen_tokens"] <= r["committed_tokens"] <= 96      # prompt tokens are in neither count
        assert r["committed_tokens"] == committed_tokens(r["gen_tokens"], 96, 16, True, r["capped"])
    for label, row in rows.items():
        mine = [r for r in reqs if r["method"] == label]
        nfe, ans, com = (sum(r[k] for r in mine) for k in ("nfe", "gen_tokens", "committed_tokens"))
        assert row["tpf"] == pytest.approx(ans / nfe) and row["tpf_all"] == pytest.approx(com / nfe)
        assert row["tokens_per_s"] == pytest.approx(ans / row["decode_time_s"])
        assert row["tokens_per_s_all"] == pytest.approx(com / row["decode_time_s"])
        assert row["committed_tokens_mean"] == pytest.approx(com / 6)
        assert com < 6 * 96, "short answers at gen length 96 stop early: fewer committed than the canvas"
