"""The method contract with a toy method that remasks and edits: applied, counted per row, in the
trace and in the result files; the history the loop keeps; `fresh` under a cache; the captured
step equals the eager one; layering; bad decisions and settings give one-line errors."""
import ast
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import decoding.loop as loop
from decoding.base import GenConfig, Method
from decoding.contract import Decision, Reads, StepOutput, StepView
from decoding.select import threshold_commit

from decode_helpers import encode

EDIT_TOKEN = 5
GEN = GenConfig(gen_length=24, block_length=8, early_stop=False, max_steps=48)


@dataclass
class ToyConfig:
    tau: float = 0.5


class Revise(Method):
    """Threshold commits; at a row's 3rd step in a block it remasks the block's first written
    position and replaces its last written one by EDIT_TOKEN (tensor code, each row on its own)."""
    name = "toy-revise"
    Config = ToyConfig
    READS = Reads(history=True, topk=2, logits=True)
    seen: list = []          # (view, out) of every call, for the tests

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        Revise.seen.append((view, out))
        G = view.tokens.shape[1]
        pos = torch.arange(G, device=view.tokens.device)
        in_block = (pos // self.gen.block_length) == view.block.unsqueeze(1)
        written = (view.tokens != view.mask_id) & in_block
        now = (view.step_in_block == 2).unsqueeze(1)
        first = torch.where(written, pos, G).min(1, keepdim=True).values
        last = torch.where(written, pos, -1).max(1, keepdim=True).values
        remask = now & written & (pos == first)
        edit = now & written & (pos == last) & ~remask
        return Decision(threshold_commit(out.conf, view.candidates, self.cfg.tau), remask=remask, edit=edit,
                        edit_tokens=torch.full_like(view.tokens, EDIT_TOKEN))


def toy(model, gen=GEN):
    return Revise(ToyConfig(), gen)


def test_remasks_and_edits_are_applied_counted_and_traced(random_model, prompts):
    ids = encode(random_model, prompts[:3])
    Revise.seen = []
    res = loop.decode(random_model, toy(random_model), ids, GEN, trace=True)
    assert not (res.tokens == random_model.mask_id).any()
    for row, steps in enumerate(res.trace):
        remasked = [p for s in steps for p in s.get("remask", [])]
        edited = [p for s in steps for p in s.get("edit", [])]
        assert len(remasked) == int(res.remasks[row]) > 0
        assert len(edited) == int(res.edits[row]) > 0
        for s in steps:
            for p in s.get("remask", []):   # a remasked position is masked again and committed later
                later = [t for t in steps if t["step"] > s["step"]]
                assert p in later[0]["masked"] and any(p in t["commit"] for t in later)
        n = int(res.gen_tokens[row])
        final_edits = [p for s in steps for p in s.get("edit", [])
                       if p < n and not any(p in t.get("remask", []) for t in steps if t["step"] > s["step"])]
        assert all(int(res.tokens[row, p]) == EDIT_TOKEN for p in final_edits)
    # each row's remasks cost steps: more steps than the plain threshold rule
    plain = loop.decode(random_model, method_threshold(), ids, GEN)
    assert (res.steps > plain.steps).all() and not res.capped.any()


def method_threshold():
    from decode_helpers import method
    return method("threshold:tau=0.5", GEN)


def test_history_is_kept_by_the_loop_for_methods_that_read_it(random_model, prompts):
    ids = encode(random_model, prompts[:3])
    Revise.seen = []
    loop.decode(random_model, toy(random_model), ids, GEN)
    last = {}   # row -> (x0, conf, logits) of the row's previous step
    for view, out in Revise.seen:
        h = view.history
        for i, row in enumerate(view.rows.tolist()):
            if row not in last:
                assert (h.argmax[i] == -1).all() and (h.commit_step[i] == -1).all()
            else:
                x0, conf, logits = last[row]
                assert torch.equal(h.argmax[i], x0) and torch.equal(h.conf[i], conf)
                logp, top = torch.log_softmax(logits, -1).topk(2, -1)
                assert torch.equal(h.topk_ids[i], top) and torch.allclose(h.topk_logp[i], logp)
            written = view.tokens[i] != random_model.mask_id
            assert ((h.commit_step[i] >= 0) == written).all()          # written <=> has a commit step
            assert (h.commit_step[i][written] < view.step[i]).all()
            last[row] = (out.x0[i], out.conf[i], out.logits[i])
    # methods that do not read it get none
    assert loop.new_state(random_model, method_threshold(), ids, GEN).history is None


@pytest.mark.parametrize("n_prompts", [1, 3])   # one row: every window alone; three: mixed steps merged
def test_a_method_reading_logits_under_the_dual_cache_gets_fresh_right(builtin_model, prompts, n_prompts):
    gen = GenConfig(gen_length=24, block_length=8)
    m = toy(builtin_model, gen)
    m.cache = "dual"
    Revise.seen = []
    loop.decode(builtin_model, m, encode(builtin_model, prompts[:n_prompts]), gen)
    windows = compact = 0
    for view, out in Revise.seen:
        dense = out.dense_logits()
        compact += out.logits_at is not None
        for i in range(len(view.rows)):
            if int(view.step_in_block[i]) == 0:          # a refresh: every position computed
                assert out.fresh[i].all()
            else:                                        # a window: only the row's block
                blk = (torch.arange(24) // 8) == view.block[i]
                assert torch.equal(out.fresh[i], blk)
                assert (dense[i][~blk] == 0).all() and (dense[i][blk] != 0).any()
                windows += 1
    assert windows > 0
    assert compact > 0 or n_prompts > 1                  # a window alone gives its rows only


def test_per_position_places_window_rows_as_dense_zeros_would():
    """A vocabulary statistic over a window's logits rows equals the statistic over dense logits
    with zeros outside the window; G marks a row outside the generated region."""
    from decoding.select import entropy
    torch.manual_seed(0)
    b, G, V = 2, 6, 11
    rows = torch.randn(b, 3, V)
    at = torch.tensor([[1, 2, 3], [4, 5, 6]])            # row 1's last logits row lies outside (G = 6)
    x0 = torch.randint(0, V, (b, G))
    out = StepOutput(x0, torch.rand(b, G), torch.ones((b, G), dtype=torch.bool), rows, logits_at=at)
    dense = torch.zeros(b, G, V)
    dense[0, 1:4], dense[1, 4:6] = rows[0], rows[1, :2]
    assert torch.equal(out.dense_logits(), dense)
    assert torch.equal(out.per_position(entropy), entropy(dense))
    pick = lambda lg, t: lg.gather(-1, t.unsqueeze(-1)).squeeze(-1)
    assert torch.equal(out.per_position(pick, x0), pick(dense, x0))


def test_captured_step_equals_eager_for_a_revising_method(random_model, prompts, monkeypatch):
    # The toy method reads logits and the history and remasks/edits, all as tensor code: it is
    # captured (acceleration/policy.py), and the captured decode (graphs stood in on CPU) equals
    # the reference loop, counts included.
    import acceleration.graphs as graphs
    from acceleration import Decoder
    from acceleration.policy import capture_blocker
    from acceleration.pool import GraphPool
    from test_graphs import _EagerGraphedCall, _EagerGuardedStep, _EagerStep
    ids = encode(random_model, prompts[:4])
    for cache in ("none", "dual"):
        m = toy(random_model)
        m.cache = cache
        assert capture_blocker(m) is None
        eager = loop.decode(random_model, m, ids, GEN)
        monkeypatch.setattr(GraphPool, "graphs_apply", lambda self: True)
        monkeypatch.setattr(GraphPool, "launch_bound", lambda self, n: True)
        monkeypatch.setattr(graphs, "GraphedCall", _EagerGraphedCall)
        monkeypatch.setattr(graphs, "CapturedStep", _EagerStep)
        monkeypatch.setattr(graphs, "GuardedStep", _EagerGuardedStep)
        built = _EagerStep.built
        m = toy(random_model)
        m.cache = cache
        got = Decoder(random_model)(m, ids, GEN)
        monkeypatch.undo()
        assert _EagerStep.built > built
        for f in ("tokens", "nfe", "steps", "remasks", "edits", "capped"):
            assert torch.equal(getattr(eager, f), getattr(got, f)), (cache, f)
        assert eager.remasks.sum() > 0 and eager.edits.sum() > 0


def test_remasks_and_edits_reach_requests_and_summary(tmp_path, monkeypatch):
    import run_bench
    from decoding import registry

    monkeypatch.setitem(registry.METHODS, "toy-revise", Revise)
    assert run_bench.main(["--out-dir", str(tmp_path), "--run-id", "r", "--limit", "3", "--batch-size", "3",
                           "--methods", "toy-revise:tau=1.0,threshold", "--warmup-batches", "0", "--no-progress"]) == 0
    lines = [json.loads(l) for l in (tmp_path / "r" / "requests.jsonl").read_text().splitlines()]
    toy_lines = [l for l in lines if l["method"] == "toy-revise:tau=1.0"]
    assert toy_lines and any(l["remasks"] > 0 for l in toy_lines) and any(l["edits"] > 0 for l in toy_lines)
    assert all(l["remasks"] == 0 and l["edits"] == 0 for l in lines if l["method"] == "threshold")
    rows = {r["method"]: r for r in json.loads((tmp_path / "r" / "summary.json").read_text())["rows"]}
    assert rows["toy-revise:tau=1.0"]["remasks_mean"] == sum(l["remasks"] for l in toy_lines) / len(toy_lines) > 0
    assert rows["threshold"]["remasks_mean"] == 0 and rows["threshold"]["edits_mean"] == 0


def test_an_edit_without_replacement_tokens_is_a_one_line_error(random_model, prompts):
    class Broken(Revise):
        def decide(self, view, out):
            return Decision(view.candidates, edit=view.candidates)
    m = Broken(ToyConfig(), GEN)
    with pytest.raises(ValueError, match="edit_tokens") as e:
        loop.decode(random_model, m, encode(random_model, prompts[:1]), GEN)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="topk"):
        Reads(topk=-1)


def test_nothing_imports_upward():
    floors = {"kernels": 0, "models": 1, "decoding": 2, "acceleration": 3, "training": 3, "bench": 4}
    root = Path(__file__).resolve().parents[1]
    bad = []
    for pkg, level in floors.items():
        for path in (root / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
                for n in names:
                    top = n.split(".")[0]
                    if top in floors and floors[top] > level:
                        bad.append(f"{path.relative_to(root)} imports {n}")
    assert not bad, bad


def test_rows_at_the_block_keep_every_candidate_statistic():
    """Methods read vocabulary statistics at the current block's rows only (rows_at with
    block_positions): at every candidate they equal the statistic over all rows, for rows in
    different blocks, a row past the last block, and a logit-shifted block (block_end - 1)."""
    from decoding.contract import block_positions, step_inputs
    from decoding.select import entropy
    torch.manual_seed(0)
    b, G, V, BL = 3, 12, 9, 4
    logits = torch.randn(b, G, V)
    blocks = torch.tensor([0, 2, 3])                     # row 2: past the last block (a finished row)
    for shift in (0, 1):
        pos = torch.arange(G)
        cand = ((pos + shift) // BL).unsqueeze(0) == blocks.unsqueeze(1)
        view, out = step_inputs(conf=torch.rand(b, G), logits=logits, candidates=cand, block=blocks)
        view.block_end = (blocks + 1) * BL - shift
        at = block_positions(view, BL)
        assert at.shape == (b, BL) and (at[2] == G).sum() == BL - shift
        got = out.rows_at(at).per_position(entropy)
        assert torch.equal(got[cand], entropy(logits)[cand])
