"""bench/bench_speed.py's A/B of a speed switch (`--ab`), on CPU with a stand-in decode: the
settings alternate, each decode sees its setting, the environment is restored, and a switch that
changes the steps is an error. No timing is asserted."""
import os
from types import SimpleNamespace

import pytest
import torch

from bench.bench_speed import switch_ab


def test_switch_ab_alternates_the_setting_restores_it_and_checks_the_steps(monkeypatch):
    seen = []

    def decode():
        seen.append(os.environ["DLLM_X"])
        return SimpleNamespace(steps=torch.tensor([3, 5]))
    monkeypatch.setenv("DLLM_X", "keep")
    out = switch_ab("DLLM_X", 2, decode, steps=5, fwd=0.0, sync=lambda: None)
    assert seen == ["1", "0", "1", "0"]
    assert os.environ["DLLM_X"] == "keep"
    assert set(out) == {"on", "off"} and all(len(v["decode_s"]) == 2 for v in out.values())
    for v in out.values():   # the median decode (of two: their mean) per step, against fwd = 0
        assert v["step_s"] == pytest.approx(sum(v["decode_s"]) / 2 / 5) and v["overhead_pct"] == pytest.approx(100)
    monkeypatch.delenv("DLLM_X")
    with pytest.raises(RuntimeError, match="DLLM_X=1: 5 steps, not 4"):
        switch_ab("DLLM_X", 1, decode, steps=4, fwd=0.0, sync=lambda: None)
    assert "DLLM_X" not in os.environ


def test_cut_lengths_count_this_calls_steps_per_length_of_a_truncated_decode():
    from acceleration.captured import CapturedDecode
    from acceleration.captured_truncated import CapturedTruncatedDecode
    from bench.bench_speed import cut_lengths
    d = CapturedTruncatedDecode.__new__(CapturedTruncatedDecode)
    d.replays = {544: 7, 768: 12, "eager": 1}
    assert cut_lengths(d, {768: 10}) == {544: 7, 768: 2}
    other = CapturedDecode.__new__(CapturedDecode)
    other.replays = {"full": 3}
    assert cut_lengths(other, {}) == {}
