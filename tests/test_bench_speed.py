"""bench/bench_speed.py's A/B of a speed switch (`--ab`), on CPU with a stand-in decode: the
settings alternate, each decode sees its setting, the environment is restored, and a switch that
changes the steps is recorded. No timing is asserted."""
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
    assert all(v["steps"] == [5, 5] and "steps_differ" not in v for v in out.values())
    monkeypatch.delenv("DLLM_X")
    # a setting whose decodes take other steps than the timed decode: recorded, the run goes on
    decode_on = lambda: SimpleNamespace(steps=torch.tensor([5 if os.environ["DLLM_X"] == "1" else 4]))
    out = switch_ab("DLLM_X", 1, decode_on, steps=4, fwd=0.0, sync=lambda: None)
    assert out["on"]["steps"] == [5] and out["on"]["steps_differ"] == "DLLM_X=1: [5] steps, the timed decode 4"
    assert "steps_differ" not in out["off"]
    assert out["on"]["step_s"] == pytest.approx(out["on"]["decode_s"][0] / 5)   # per step of its own steps
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


def test_dual_forwards_are_each_steps_own_refresh_and_window():
    """bench_speed's forwards of a dual-cache decode: per recorded step kind and rows at a block
    start, a refresh of every row, a window of every row, or the window plus the refresh forward
    of those rows (timed once per row count, on the rows 0..n-1)."""
    from bench.bench_speed import dual_forwards_s
    calls = []
    stepper = SimpleNamespace(refresh_forward=lambda ri, x, a, hidden: calls.append(ri.tolist()))
    state = SimpleNamespace(tokens=torch.zeros(8, 10, dtype=torch.long), attn=torch.ones(8, 10, dtype=torch.long))
    decode = SimpleNamespace(forward=SimpleNamespace(stepper=stepper), state=state,
                             method=SimpleNamespace(reads=lambda: SimpleNamespace(hidden=False)),
                             starts={("refresh", 8): 2, ("window", 0): 10, ("mixed", 1): 3, ("eager", 2): 1,
                                     ("mixed", 2): 2})

    def timer(fn):   # "seconds": 0.5 per refreshed row
        before = len(calls)
        fn()
        return 0.5 * len(calls[before])
    total, mix = dual_forwards_s(decode, t_refresh=4.0, t_win=0.25, timer=timer)
    assert total == pytest.approx(2 * 4.0 + 10 * 0.25 + 3 * (0.25 + 0.5) + 3 * (0.25 + 1.0))
    assert sorted(calls) == [[0], [0, 1]]            # each row count timed once
    assert mix == {"eager 2": 1, "mixed 1": 3, "mixed 2": 2, "refresh 8": 2, "window 0": 10}


def test_a_no_cache_decodes_forwards_back_to_back_are_its_own():
    """bench_speed's sustained basis without a cache: the truncated forwards by the lengths a
    SlowFast decode cut at, WINO's verification graph each step, else the full forward each step;
    each run back to back after one untimed call, one wait before and one after the timed run."""
    from bench.bench_speed import back_to_back_s, no_cache_forwards
    calls = []
    full, verify = (lambda: calls.append("full")), (lambda: calls.append("verify"))
    truncated = lambda L: (lambda: calls.append(L))   # noqa: E731
    assert no_cache_forwards(full, 5, {}) == [(full, 5)]
    assert no_cache_forwards(full, 5, {}, truncated, verify) == [(verify, 5)]
    plan = no_cache_forwards(full, 5, {768: 3, 544: 2}, truncated, verify)
    assert [n for _, n in plan] == [3, 2]
    assert back_to_back_s(plan, sync=lambda: calls.append("sync")) >= 0
    assert calls == [768, 544, "sync"] + [768] * 3 + [544] * 2 + ["sync"]


def test_dual_forwards_back_to_back_run_every_steps_forwards():
    """bench_speed's sustained basis with the dual cache: every recorded step's forwards (a refresh,
    a window, or a window plus the refresh of the n rows starting a block) run back to back, each
    kind once untimed first, with one wait for the device before and one after the timed run."""
    from bench.bench_speed import dual_forwards_back_to_back_s
    calls = []
    stepper = SimpleNamespace(refresh_forward=lambda ri, x, a, hidden: calls.append(("rows", ri.tolist())))
    state = SimpleNamespace(tokens=torch.zeros(8, 10, dtype=torch.long), attn=torch.ones(8, 10, dtype=torch.long))
    decode = SimpleNamespace(forward=SimpleNamespace(stepper=stepper), state=state,
                             method=SimpleNamespace(reads=lambda: SimpleNamespace(hidden=False)),
                             starts={("refresh", 8): 2, ("window", 0): 3, ("mixed", 2): 2})
    seconds = dual_forwards_back_to_back_s(decode, refresh=lambda: calls.append("refresh"),
                                           window=lambda: calls.append("window"),
                                           sync=lambda: calls.append("sync"))
    assert seconds >= 0
    mixed = ["window", ("rows", [0, 1])]
    warm = ["refresh", "window", *mixed, "sync"]
    assert calls == warm + ["refresh"] * 2 + ["window"] * 3 + mixed * 2 + ["sync"]


def test_unqueued_forwards_time_a_second_decode_and_give_the_overhead_against_them():
    """A decode that queued steps ahead is set against the forwards of a second decode with none
    queued ahead; a second decode of other steps is recorded and gives no overhead."""
    from bench.bench_speed import unqueued_forwards

    class Timer:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def take(self):
            return 0.8, 12
    decode = lambda n: (lambda: SimpleNamespace(steps=torch.tensor([n, n - 2])))
    row = unqueued_forwards(decode(10), Timer(), steps=10, step_s=0.1)
    assert row["forward_s_per_step_unqueued"] == pytest.approx(0.08) and row["forward_calls_unqueued"] == 12
    assert row["overhead_vs_unqueued_pct"] == pytest.approx(20.0)
    row = unqueued_forwards(decode(11), Timer(), steps=10, step_s=0.1)
    assert row["overhead_vs_unqueued_pct"] is None
    assert row["unqueued_steps_differ"] == "11 steps with none queued ahead, the timed decode 10"


def test_the_unqueued_event_timer_queues_no_step_ahead_inside_its_context():
    from acceleration.captured import CapturedDecode
    from bench.measure import EventForwardTimer, UnqueuedEventForwardTimer
    from models import load_model
    model = load_model("tiny", no_weights=True)
    queue = CapturedDecode.queue_ahead
    with EventForwardTimer(model, []):
        assert CapturedDecode.queue_ahead is queue                 # the plain event timer leaves it on
    with UnqueuedEventForwardTimer(model, []):
        assert CapturedDecode.queue_ahead(None, "window") is None   # no GuardedStep replayed
    assert CapturedDecode.queue_ahead is queue
