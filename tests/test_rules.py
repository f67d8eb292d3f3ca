"""The per-step rules of KLASS, WINO, LLaDA2.1 editing and DiCo (decoding/rules) on hand-made tensors."""
import math

import pytest
import torch

from decoding.rules.dico import dico_clusters, dico_conquer, dico_decide, dico_finalize, dico_seeds
from decoding.rules.edit import edit_block_next, edit_decide
from decoding.rules.klass import kl_full, kl_topk, klass_select, stable_run, topk_summary
from decoding.rules.wino import LAST_ACCEPT_AT_BLOCK_START, shadow_layout, wino_decide, wino_max_accept

T, F = True, False
t = torch.tensor


def rowwise_equal(fn, *batched):
    """fn on the whole batch equals fn on each row alone, for every output."""
    whole = fn(*batched)
    whole = whole if isinstance(whole, tuple) else (whole,)
    for i in range(batched[0].shape[0]):
        alone = fn(*(a[i:i + 1] for a in batched))
        alone = alone if isinstance(alone, tuple) else (alone,)
        for w, a in zip(whole, alone):
            assert torch.equal(w[i:i + 1], a), (i, w[i:i + 1], a)


# --- KLASS ---------------------------------------------------------------------------------------
def test_kl_full_is_the_authors_smoothed_kl():
    logp = t([[[0.5, 0.5]]], dtype=torch.float64).log()
    prev = t([[[0.25, 0.75]]], dtype=torch.float64).log()
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)           # 0.143841
    assert abs(kl_full(logp, prev).item() - expected) < 1e-9
    # no previous distribution (p = 0): log(p + 1e-12) makes it large, so never stable at the first step
    assert abs(kl_full(logp, None).item() - (math.log(0.5) - math.log(1e-12))) < 1e-6


@pytest.mark.parametrize("V,dtype", [(126464, torch.bfloat16), (1000, torch.float32), (7, torch.float32)])
def test_kl_ring_is_kl_full_of_the_float64_log_softmax_and_keeps_log_p_at_the_rows_taken(V, dtype):
    """klass's kl=full operator (eager twin on the CPU) equals the plain definition on
    logits.double().log_softmax(-1) to float64 rounding against the kept log(p_prev + eps), and
    writes log(p + eps) into the ring rows, at the rows taken only (0 elsewhere)."""
    from kernels.klass_kl import kl_ring
    g = torch.Generator().manual_seed(0)
    logits = (4 * torch.randn(5, V, generator=g)).to(dtype)
    prev = (4 * torch.randn(5, V, generator=g)).double().log_softmax(-1)
    ring = torch.zeros(2, 4, V, dtype=torch.float64)            # two rows of 3 slots and a spare
    slot = t([0, 2, 5, 6, 7])
    ring.view(-1, V)[slot] = (prev.exp() + 1e-12).log()
    before = ring.clone()
    fresh = t([T, F, T, T, F])
    kl = kl_ring(logits, ring, slot, fresh, 1e-12)
    logp = logits.double().log_softmax(-1)
    assert kl.dtype == torch.float64
    assert torch.allclose(kl[fresh], kl_full(logp, prev)[fresh], rtol=1e-12, atol=1e-12)
    assert torch.equal(kl[~fresh], torch.zeros(2, dtype=torch.float64))      # rows not taken
    flat, old = ring.view(-1, V), before.view(-1, V)
    assert torch.allclose(flat[slot[fresh]], (logp.exp() + 1e-12).log()[fresh], rtol=1e-14, atol=1e-14)
    untouched = torch.ones(8, dtype=torch.bool)
    untouched[slot[fresh]] = False
    assert torch.equal(flat[untouched], old[untouched])


def test_kl_topk_equals_full_kl_when_one_token_is_outside_the_summary_and_never_exceeds_it():
    torch.manual_seed(0)
    logp, prev = torch.randn(2, 3, 3).log_softmax(-1), torch.randn(2, 3, 3).log_softmax(-1)
    ids, lp = topk_summary(prev, 2)                  # V = 3: the rest bin is exactly one token
    assert torch.allclose(kl_topk(ids, lp, logp), kl_full(logp, prev), atol=1e-6)
    logp, prev = (3 * torch.randn(4, 8, 50)).log_softmax(-1), (3 * torch.randn(4, 8, 50)).log_softmax(-1)
    ids, lp = topk_summary(prev, 5)
    coarse, full = kl_topk(ids, lp, logp), kl_full(logp, prev)
    assert (coarse <= full + 1e-6).all() and (coarse < full - 1e-3).any()


def test_stable_run_counts_consecutive_low_kl_steps():
    assert stable_run(t([[0, 1, 2]]), t([[0.001, 0.02, 0.005]]), 0.01).tolist() == [[1, 0, 3]]


def test_klass_commits_stable_confident_tokens_else_the_quota():
    run = t([[2, 2, 1, 2], [0, 0, 0, 0]])
    conf = t([[0.95, 0.5, 0.99, 0.7], [0.3, 0.9, 0.8, 0.1]])
    cand = t([[T, T, T, T], [T, T, T, T]])
    out = klass_select(run, conf, cand, t([1, 2]), h=2, conf_tau=0.6)
    # row 0: positions 0 and 3 are stable (run >= 2) and above 0.6 (position 2 has run 1);
    # row 1: nothing is stable, so the quota (2) by confidence
    assert out.tolist() == [[T, F, F, T], [F, T, T, F]]
    rowwise_equal(lambda r, c, k, q: klass_select(r, c, k, q, h=2, conf_tau=0.6), run, conf, cand, t([1, 2]))


def test_klass_gate_threshold_strictness_and_candidates():
    run, cand = t([[3, 3]]), t([[T, F]])
    conf = t([[0.6, 0.99]])
    # step 0 of the block with h = 2: the LLaDA sampler's gate leaves only the quota
    assert klass_select(run, t([[0.9, 0.99]]), cand, t([1]), 2, 0.6, step_in_block=t([0])).tolist() == [[T, F]]
    # conf == tau: not ready under the LLaDA rule (>), ready under the Dream rule (>=); the quota
    # fallback commits position 0 anyway, so compare with a second candidate that the quota would pick
    conf2, cand2 = t([[0.6, 0.65]]), t([[T, T]])
    run2 = t([[3, 0]])
    assert klass_select(run2, conf2, cand2, t([1]), 2, 0.6, strict=True).tolist() == [[F, T]]
    assert klass_select(run2, conf2, cand2, t([1]), 2, 0.6, strict=False).tolist() == [[T, F]]
    # a committed position (not a candidate) is never chosen, even when stable and confident
    assert klass_select(run, conf, cand, t([1]), 2, 0.5).tolist() == [[T, F]]


# --- WINO ----------------------------------------------------------------------------------------
def test_wino_commit_cap_is_the_authors():
    n = t([0, 7, 8, 10, 28, 29, 40])
    assert wino_max_accept(n).tolist() == [5, 5, 5, 7, 19, 20, 20]
    assert wino_max_accept(n).tolist() == [min(max(int(v * 0.7), 5), 20) for v in n.tolist()]


def test_wino_wide_in_commits_above_low_threshold_and_narrow_out_remasks_unverified():
    masked = t([[T, T, T, F, F, T]])
    written = t([[F, F, F, T, T, F]])
    conf = t([[0.7, 0.65, 0.2, 0.0, 0.0, 0.1]])
    verified = t([[0.0, 0.0, 0.0, 0.5, 0.95, 0.0]])
    commit, remask, acc = wino_decide(conf, verified, masked, written, t([LAST_ACCEPT_AT_BLOCK_START]))
    assert commit.tolist() == [[T, T, F, F, F, F]]
    assert remask.tolist() == [[F, F, F, T, F, F]]          # 0.5 < 0.9; 0.95 stays
    assert acc.tolist() == [2]


def test_wino_single_commit_never_remasks_and_nothing_above_takes_the_best():
    masked, written = t([[T, T, F]]), t([[F, F, T]])
    commit, remask, acc = wino_decide(t([[0.3, 0.5, 0.0]]), t([[0.0, 0.0, 0.1]]), masked, written, t([30]))
    assert commit.tolist() == [[F, T, F]] and remask.tolist() == [[F, F, F]] and acc.tolist() == [1]


def test_wino_caps_commits_and_remasks_below_last_accept():
    conf = t([[0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98]])
    commit, _, acc = wino_decide(conf, torch.zeros(1, 8), torch.ones(1, 8, dtype=torch.bool),
                                 torch.zeros(1, 8, dtype=torch.bool), t([30]))
    assert commit.tolist() == [[F, F, F, T, T, T, T, T]] and acc.tolist() == [5]    # cap 5: the top 5
    # 3 written tokens below 0.9 with last_accept 3: only the 2 least verified are re-masked
    masked = t([[T, T, F, F, F, F]])
    written = t([[F, F, T, T, T, T]])
    verified = t([[0.0, 0.0, 0.1, 0.5, 0.3, 0.95]])
    _, remask, _ = wino_decide(t([[0.8, 0.7, 0, 0, 0, 0]]), verified, masked, written, t([3]))
    assert remask.tolist() == [[F, F, T, F, T, F]]


def test_wino_rows_are_independent():
    torch.manual_seed(1)
    conf, verified = torch.rand(4, 12), torch.rand(4, 12)
    masked = torch.rand(4, 12) < 0.6
    written = ~masked & (torch.rand(4, 12) < 0.8)
    rowwise_equal(lambda c, v, m, w, la: wino_decide(c, v, m, w, la, 0.5, 0.8),
                  conf, verified, masked, written, t([30, 2, 1, 5]))


def test_wino_shadow_block_sees_all_but_its_twin():
    pos, allowed = shadow_layout(4, block_start=2, block_length=2)
    assert pos.tolist() == [0, 1, 2, 3, 2, 3]
    assert allowed.tolist() == [[T, T, T, T, F, F]] * 4 + [[T, T, F, T, T, T], [T, T, T, F, T, T]]


# --- LLaDA2.1 editing ----------------------------------------------------------------------------
def test_edit_commits_masks_above_tau_mask_and_edits_changed_tokens_above_tau_edit():
    M = 99
    tokens = t([[M, M, 5, 6, 7]])
    x0 = t([[1, 2, 5, 9, 8]])
    conf = t([[0.8, 0.3, 0.99, 0.6, 0.99]])
    masked = tokens == M
    editable = t([[F, F, T, T, F]])                     # position 4 is a prompt token inside the block
    commit, edit = edit_decide(x0, conf, tokens, masked, editable, tau_mask=0.7, tau_edit=0.5)
    assert commit.tolist() == [[T, F, F, F, F]]
    assert edit.tolist() == [[F, F, F, T, F]]           # 5 -> 5 is no change; the prompt is never edited


def test_edit_falls_back_to_the_best_mask_and_commits_nothing_without_masks():
    M = 99
    tokens, x0, conf = t([[M, M, 4], [3, 4, 5]]), t([[1, 2, 6], [3, 8, 5]]), t([[0.3, 0.6, 0.4], [0.2, 0.9, 0.9]])
    masked = tokens == M
    commit, edit = edit_decide(x0, conf, tokens, masked, ~masked, tau_mask=0.7, tau_edit=0.5)
    assert commit.tolist() == [[F, T, F], [F, F, F]]
    assert edit.tolist() == [[F, F, F], [F, T, F]]      # row 0: 0.4 is below tau_edit
    rowwise_equal(lambda *a: edit_decide(*a, tau_mask=0.7, tau_edit=0.5), x0, conf, tokens, masked, ~masked)


def test_edit_block_ends_when_settled_or_after_max_post_steps():
    cases = [  # had_mask, has_mask, edited, post_steps, max_post -> done, post_steps
        (T, T, F, 0, 16, F, 0),    # still filling masks
        (T, F, T, 0, 16, F, 1),    # block just filled: the next forward is a post-fill forward
        (F, F, T, 1, 16, F, 2),    # an edit on a full block: keep refining
        (F, F, F, 3, 16, T, 4),    # nothing masked before and nothing edited: settled
        (F, F, T, 16, 16, T, 17),  # budget of 16 post-fill forwards used
        (T, F, T, 0, 0, T, 1),     # max_post_steps 0: no forward after the block is full
    ]
    for had, has, ed, post, mx, done, nxt in cases:
        d, p = edit_block_next(t([had]), t([has]), t([ed]), t([post]), mx)
        assert (d.item(), p.item()) == (done, nxt), (had, has, ed, post, mx)


# --- DiCo (rules are ours; see the module docstring) ---------------------------------------------
def test_dico_clusters_grow_seeds_over_masked_neighbours():
    seeds = t([[F, F, T, F, F, F, F, T, F, F]])
    cand = t([[T, T, T, T, F, T, T, T, T, T]])
    assert dico_clusters(seeds, cand, 1).tolist() == [[-1, 0, 0, 0, -1, -1, 1, 1, 1, -1]]
    assert dico_clusters(seeds, cand, 2).tolist() == [[0, 0, 0, 0, -1, 1, 1, 1, 1, 1]]
    assert dico_seeds(t([[0.9, 0.95]]), t([[5, 1]]), t([[T, T]]), 0.8, 2).tolist() == [[T, F]]


def test_dico_conquer_commits_confident_members_and_each_clusters_best():
    cluster = t([[0, 0, 0, -1, 1, 1, 2, 2]])
    conf = t([[0.5, 0.95, 0.97, 0.99, 0.4, 0.6, 0.3, 0.3]])
    assert dico_conquer(conf, cluster, 0.9).tolist() == [[F, T, T, F, F, T, T, F]]   # tie: leftmost
    rowwise_equal(lambda c, k: dico_conquer(c, k, 0.9), torch.cat([conf, conf.flip(1)]),
                  torch.cat([cluster, t([[0, 0, 1, 1, 1, -1, 2, 2]])]))


def test_dico_finalize_and_phase_switch():
    conf, margin, cand = t([[0.9, 0.8, 0.2]]), t([[0.1, 0.7, 0.0]]), t([[T, T, F]])
    assert dico_finalize(conf, margin, cand, 0.5, t([1])).tolist() == [[F, T, F]]     # 0.5 vs 0.75
    kw = dict(tau_seed=0.85, min_stable=1, radius=1, tau_cluster=0.99, n_final=2, lam=0.5)
    run = t([[2, 2, 2]])
    assert dico_decide(conf, margin, run, cand, **kw).tolist() == [[F, T, F]]         # 2 left: finalize
    conf4, margin4 = t([[0.9, 0.8, 0.2, 0.1]]), t([[0.1, 0.7, 0.0, 0.0]])
    cand4, run4 = t([[T, T, T, T]]), t([[2, 2, 2, 2]])
    # 4 left: seed 0 (0.9 >= 0.85) grows to {0, 1}; the cluster commits its best member only
    assert dico_decide(conf4, margin4, run4, cand4, **kw).tolist() == [[T, F, F, F]]
    # no seed (nothing stable long enough): finalize
    assert dico_decide(conf4, margin4, t([[0, 0, 0, 0]]), cand4, **kw).tolist() == [[F, T, F, F]]


# --- SlowFast, the authors' sampler (preset=code) ------------------------------------------------
def test_slowfast_code_span_estimate():
    from decoding.rules.slowfast_code import span_estimate
    masked = t([[F, F, T, T, T, T, F, T]])
    conf = t([[0.9, 0.9, 0.5, 0.1, 0.35, 0.2, 0.99, 0.1]])
    z = t([0])
    # scope [2, 8): masked with conf >= 0.3 at 2 and 4 (6 is written) -> exclusive end 5
    assert span_estimate(conf, masked, z, t([2]), 8, 0.3).tolist() == [5]
    assert span_estimate(torch.full((1, 8), 0.1), masked, z, t([2]), 8, 0.3).tolist() == [3]   # none: start + 1
    assert span_estimate(conf, masked, z, t([8]), 8, 0.3).tolist() == [8]                     # empty scope
    # a second block: positions are relative to its start
    assert span_estimate(torch.cat([conf, conf], 1), torch.cat([masked, masked], 1), t([8]), t([0]), 8, 0.3).tolist() == [5]


def test_slowfast_code_end_is_last_estimate_when_stable_else_floor_of_mean():
    from decoding.rules.slowfast_code import decide_end, fallback_end, push_estimate
    hist, count, end, det = torch.zeros(1, 2), t([0]), t([8]), t([F])
    take = t([T])
    hist, count = push_estimate(hist, count, t([5]), take)
    e, d = decide_end(hist, count, 1.0, False, end, det, take, 8)
    assert (e.tolist(), d.tolist()) == ([8], [F])                 # one estimate: nothing decided yet
    hist, count = push_estimate(hist, count, t([6]), take)
    e, d = decide_end(hist, count, 1.0, False, end, det, take, 8)
    assert (e.tolist(), d.tolist()) == ([6], [T])                 # std 0.5 < 1: the last estimate
    e, d = decide_end(hist, count, 0.4, False, end, det, take, 8)
    assert (e.tolist(), d.tolist()) == ([5], [F])                 # unstable: floor(5.5), keep exploring
    e, d = decide_end(hist, count, 0.4, True, end, det, take, 8)
    assert (e.tolist(), d.tolist()) == ([5], [T])                 # ... determined at the K-th step
    e, d = decide_end(hist, count, 1.0, False, t([3]), t([T]), t([F]), 8)
    assert (e.tolist(), d.tolist()) == ([3], [T])                 # a determined row is not re-estimated
    assert fallback_end(t([[0.0, 4.0, 7.0]]), t([2]), t([8]), t([F]), 8).tolist() == [5]
    assert fallback_end(torch.zeros(1, 3), t([0]), t([8]), t([F]), 8).tolist() == [4]


def test_slowfast_code_commit_needs_more_than_one_above_tau_high():
    from decoding.rules.slowfast_code import cycle_commit
    masked = t([[T, T, T, T, F, T]])
    z = t([0])
    conf = t([[0.95, 0.2, 0.92, 0.3, 0.99, 0.97]])
    assert cycle_commit(conf, masked, z, t([0]), t([6]), 0.9).tolist() == [[T, F, T, F, F, T]]
    assert cycle_commit(conf, masked, z, t([1]), t([4]), 0.9).tolist() == [[F, F, T, F, F, F]]   # one: top-1
    assert cycle_commit(conf, masked, z, t([1]), t([4]), 0.95).tolist() == [[F, F, T, F, F, F]]  # none: top-1
    assert cycle_commit(conf, masked, z, t([0]), t([6]), 0.92).tolist() == [[T, F, T, F, F, T]]  # >= tau_high
