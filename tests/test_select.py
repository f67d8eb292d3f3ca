"""Selection rules on hand-made tensors."""
import torch

from decoding.select import (factor_commit, quota_schedule, threshold_commit, token_stats, top1_commit,
                            topk_commit)

T, F = True, False


def test_quota_schedule_matches_llada():
    assert quota_schedule(16, 16).tolist() == [1] * 16
    assert quota_schedule(10, 4).tolist() == [3, 3, 2, 2]     # base 2, remainder 2 -> first two get 3
    assert quota_schedule(16, 4).tolist() == [4, 4, 4, 4]
    assert int(quota_schedule(37, 5).sum()) == 37


def test_topk_commits_highest_candidates_only():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6], [0.1, 0.5, 0.4, 0.3]])
    cand = torch.tensor([[F, T, T, T], [T, T, F, T]])
    out = topk_commit(scores, cand, torch.tensor([2, 1]))
    assert out.tolist() == [[F, T, T, F], [F, T, F, F]]


def test_topk_with_fewer_candidates_than_k_and_ties():
    scores = torch.tensor([[0.5, 0.5, 0.5]])
    assert topk_commit(scores, torch.tensor([[T, F, T]]), torch.tensor([5])).tolist() == [[T, F, T]]
    # ties break towards the lower position
    assert topk_commit(scores, torch.tensor([[T, T, T]]), torch.tensor([1])).tolist() == [[T, F, F]]


def test_threshold_commits_all_above_tau_and_always_one():
    conf = torch.tensor([[0.95, 0.2, 0.91, 0.99], [0.3, 0.6, 0.5, 0.1]])
    cand = torch.tensor([[T, T, T, F], [T, T, T, T]])
    out = threshold_commit(conf, cand, 0.9)
    assert out.tolist() == [[T, F, T, F], [F, T, F, F]]   # 0.99 is not a candidate; row 2: top-1 only


def test_threshold_row_without_candidates_commits_nothing():
    out = threshold_commit(torch.tensor([[0.99, 0.98]]), torch.tensor([[F, F]]), 0.5)
    assert out.tolist() == [[F, F]]


def test_factor_rule_prefix():
    # sorted: 0.95 (m=1: 2*0.05=0.1), 0.8 (m=2: 3*0.2=0.6), 0.7 (m=3: 4*0.3=1.2 > 1) -> commit 2
    conf = torch.tensor([[0.7, 0.95, 0.8, 0.1]])
    out = factor_commit(conf, torch.ones_like(conf, dtype=torch.bool), 1.0)
    assert out.tolist() == [[F, T, T, F]]
    # nothing satisfies the rule: still the single most confident one
    low = torch.tensor([[0.3, 0.2, 0.25]])
    assert factor_commit(low, torch.ones_like(low, dtype=torch.bool), 1.0).tolist() == [[T, F, F]]


def test_factor_rule_stops_at_first_violation():
    # m=1: 2*0.4=0.8 ok, m=2: 3*0.5=1.5 fails; later entries are not considered
    conf = torch.tensor([[0.6, 0.5, 0.49]])
    assert factor_commit(conf, torch.ones_like(conf, dtype=torch.bool), 1.0).tolist() == [[T, F, F]]


def test_token_stats_greedy_and_sampled():
    logits = torch.tensor([[[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]]])
    x0, conf = token_stats(logits)
    assert x0.tolist() == [[1, 0]]
    assert torch.allclose(conf, torch.softmax(logits, -1).max(-1).values)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(400):
        x, c = token_stats(logits[:, :1], temperature=1.0, generator=g)
        counts[x.item()] += 1
        assert torch.isclose(c, torch.softmax(logits[:, :1], -1)[0, 0, x.item()])
    # Gumbel-max at T=1 samples softmax(logits): p = [0.09, 0.67, 0.24]
    assert counts[1] > counts[2] > counts[0] > 0


def test_token_stats_on_bf16_logits_matches_fp32_softmax():
    # The loop hands the model's bf16 logits straight to token_stats (no fp32 copy, no full softmax)
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 7, 5000, generator=g) * 4).to(torch.bfloat16)
    x0, conf = token_stats(logits)
    ref = torch.softmax(logits.float(), -1)
    assert torch.equal(x0, logits.float().argmax(-1))
    assert conf.dtype == torch.float32
    assert torch.allclose(conf, ref.gather(-1, x0.unsqueeze(-1)).squeeze(-1), rtol=1e-5, atol=0)


def test_top1_commit_is_topk_with_k_1_ties_to_the_lower_position():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        scores = torch.randint(0, 4, (6, 40), generator=g).float() / 4   # many ties
        cand = torch.rand((6, 40), generator=g) < 0.5
        cand[0] = False                                                   # a row without candidates
        one = torch.ones(6, dtype=torch.long)
        assert torch.equal(top1_commit(scores, cand), topk_commit(scores, cand, one))
    assert top1_commit(torch.tensor([[0.5, 0.9, 0.9]]), torch.tensor([[T, T, T]])).tolist() == [[F, T, F]]


def test_greedy_stats_take_the_first_maximal_token_across_vocabulary_chunks():
    # the argmax runs per chunk of the vocabulary, then over chunks (64 chunks of 40 here)
    logits = torch.randn(5, 2560)
    logits[0, 100] = logits[0, 2000] = 50.0     # tie in different chunks: the first wins
    logits[1, 45] = logits[1, 47] = 50.0        # tie inside a chunk
    logits[2, 2559] = 50.0                      # the very last token
    x0, conf = token_stats(logits)
    assert x0.tolist()[:3] == [100, 45, 2559]
    assert torch.equal(x0, logits.argmax(-1))
    assert torch.allclose(conf, torch.softmax(logits, -1).max(-1).values)
    odd = torch.randn(3, 2563)                  # a vocabulary with no power-of-two factor: one chunk
    assert torch.equal(token_stats(odd)[0], odd.argmax(-1))
