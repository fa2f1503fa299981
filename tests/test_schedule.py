"""Tests of hnvl.schedule against loop versions: the paper's adaptive-threshold rule, clamp, reset, EMA, max rule,
state round trip. The error messages are checked in nbs/03_schedule.ipynb."""
import pytest
import torch

from hnvl.schedule import AdaptiveThreshold, FixedThreshold


def stream(n, k, seed, p_valid=0.7):
    g = torch.Generator().manual_seed(seed)
    pos = 25 + 3 * torch.randn(n, generator=g)
    neg = pos[:, None] - 4 * torch.rand(k, generator=g) * 3 + 2 * torch.randn(n, k, generator=g)
    return pos, neg, torch.rand(n, k, generator=g) < p_valid


def bf_mean_rule(pos, neg, mask, prev, ub):
    "Loop version of the adaptive threshold: clamp(mean_i pos_i - mean_{i: m_ik} neg_ik, 0, ub); no valid entry: prev."
    n, k = neg.shape
    pm = sum(pos.tolist()) / n
    out = []
    for kk in range(k):
        vals = [neg[i, kk].item() for i in range(n) if mask[i, kk]]
        if not vals: out.append(prev[kk]); continue
        v = pm - sum(vals) / len(vals)
        out.append(min(max(v, 0.0), ub) if ub is not None else max(v, 0.0))
    return out


def bf_max_rule(pos, neg, mask, prev, ub):
    n, k = neg.shape
    out = []
    for kk in range(k):
        if not mask[:, kk].any(): out.append(prev[kk]); continue
        v = max((pos[i].item() - neg[i, kk].item()) if mask[i, kk] else 0.0 for i in range(n)) / 5
        out.append(min(max(v, 0.0), ub))
    return out


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('ub', [10.0, 2.0, None])
def test_mean_rule_matches_loop(seed, ub):
    th = AdaptiveThreshold(4, upper_bound=ub)
    for step in range(3):
        pos, neg, mask = stream(9, 4, seed * 10 + step, p_valid=0.5)
        if step == 1: mask[:, 2] = False        # a type with no valid negative keeps its θ
        want = bf_mean_rule(pos, neg, mask, th.value.tolist(), ub)
        th.update(pos, neg, mask)
        torch.testing.assert_close(th.value, torch.tensor(want), rtol=1e-5, atol=1e-5)
        assert th.history[-1] == th.value.tolist()
    assert len(th.history) == 3 and th.steps == 3


def test_clamp_both_ends():
    pos = torch.full((4,), 30.)
    neg = torch.tensor([[10., 31., 29.]] * 4)       # gaps 20, -1, 1
    th = AdaptiveThreshold(3, upper_bound=10.)
    th.update(pos, neg, torch.ones(4, 3, dtype=torch.bool))
    assert th.value.tolist() == [10., 0., 1.]


def test_invalid_entries_ignored_and_positive_mean_over_all_rows():
    pos = torch.tensor([10., 20., 30., 40.])        # mean 25 over all rows, even those with invalid negatives
    neg = torch.tensor([[15.], [1e9], [-1e9], [21.]])
    mask = torch.tensor([[True], [False], [False], [True]])
    th = AdaptiveThreshold(1, upper_bound=None)
    th.update(pos, neg, mask)
    assert th.value.tolist() == [25 - 18.]


@pytest.mark.parametrize('seed', range(3))
def test_max_rule_matches_loop(seed):
    th = AdaptiveThreshold(3, rule='max', upper_bound=4.)
    for step in range(2):
        pos, neg, mask = stream(7, 3, seed + 100 * step, p_valid=0.6)
        if step: mask[:, 0] = False
        want = bf_max_rule(pos, neg, mask, th.value.tolist(), 4.)
        th.update(pos, neg, mask)
        torch.testing.assert_close(th.value, torch.tensor(want), rtol=1e-5, atol=1e-5)


def test_max_rule_invalid_counts_as_zero():
    pos = torch.tensor([10., 10.])
    neg = torch.tensor([[12.], [0.]])               # valid gap -2, invalid row would give 10 if it were counted
    th = AdaptiveThreshold(1, rule='max')
    th.update(pos, neg, torch.tensor([[True], [False]]))
    assert th.value.tolist() == [0.0]               # max(-2, 0 for the invalid entry) / 5 = 0


def test_reset_every_epoch():
    pos, neg, mask = stream(8, 2, 0, p_valid=1.0)
    th = AdaptiveThreshold(2)
    th.update(pos, neg, mask)
    assert (th.value > 0).all()
    th.new_epoch()
    assert th.value.tolist() == [0., 0.] and th.epochs == 1
    keep = AdaptiveThreshold(2, reset_every_epoch=False)
    keep.update(pos, neg, mask); v = keep.value.clone(); keep.new_epoch()
    assert torch.equal(keep.value, v)


def test_ema():
    th = AdaptiveThreshold(2, ema=0.8, upper_bound=None)
    manual = [0.0, 0.0]
    for step in range(4):
        pos, neg, mask = stream(6, 2, step, p_valid=1.0)
        new = bf_mean_rule(pos, neg, mask, manual, None)
        manual = [0.8 * o + 0.2 * n for o, n in zip(manual, new)]
        th.update(pos, neg, mask)
        torch.testing.assert_close(th.value, torch.tensor(manual), rtol=1e-5, atol=1e-5)


def test_update_is_detached_and_does_not_touch_graph():
    pos, neg, mask = stream(5, 2, 1)
    p, n = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    th = AdaptiveThreshold(2)
    v = th.update(p, n, mask)
    assert not v.requires_grad and p.grad is None


def test_state_round_trip(tmp_path):
    th = AdaptiveThreshold(3, rule='max', upper_bound=7., reset_every_epoch=False, ema=0.3)
    for s in range(3): th.update(*stream(5, 3, s))
    th.new_epoch()
    torch.save(th.state_dict(), tmp_path / 'th.pt')
    back = AdaptiveThreshold(3).load_state_dict(torch.load(tmp_path / 'th.pt'))
    assert torch.equal(back.value, th.value) and back.history == th.history
    assert (back.rule, back.upper_bound, back.reset_every_epoch, back.ema) == ('max', 7., False, 0.3)
    assert (back.steps, back.epochs) == (3, 1)
    nxt = stream(5, 3, 99)
    assert torch.equal(back.update(*nxt), th.update(*nxt))


def test_fixed_threshold():
    f = FixedThreshold([1., 2., 3.])
    pos, neg, mask = stream(4, 3, 0)
    assert torch.equal(f.update(pos, neg, mask), torch.tensor([1., 2., 3.]))
    f.new_epoch()
    assert f.value.tolist() == [1., 2., 3.] and f.history == [[1., 2., 3.]]
    g = FixedThreshold(0.).load_state_dict(f.state_dict())
    assert torch.equal(g.value, f.value) and g.history == f.history
    assert FixedThreshold(4., k=2).value.tolist() == [4., 4.]
    with pytest.raises(ValueError, match='neg_sim must have shape'): f.update(pos, neg[:, :2], mask)
