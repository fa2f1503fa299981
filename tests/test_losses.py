"Tests of hnvl.losses against independent float64 brute-force implementations written with explicit loops."
import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from hnvl.losses import itc_loss, imc_loss, cmr_loss, gather_features, HardNegativeLoss, IMC_VARIANTS
from hnvl.schedule import AdaptiveThreshold, FixedThreshold


def batch(n, k, d, seed, p_valid=0.6, dtype=torch.float64, normalise=True):
    g = torch.Generator().manual_seed(seed)
    f = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    img, txt, neg = f(n, d), f(n, d), f(n, k, d)
    if normalise: img, txt, neg = (F.normalize(x, dim=-1) for x in (img, txt, neg))
    return img, txt, neg, torch.rand(n, k, generator=g) < p_valid


# ---------- brute force: python floats, explicit loops ----------
def dot(a, b): return sum(x * y for x, y in zip(a, b))

def lse(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))

def bf_itc(img, txt, neg, mask, s):
    I, T, Ng, M = img.tolist(), txt.tolist(), neg.tolist(), mask.tolist()
    n, k = len(I), len(M[0]) if M else 0
    i2t = t2i = 0.0
    for i in range(n):
        cands = [s * dot(I[i], T[j]) for j in range(n)]
        for j in range(n):
            for kk in range(k):
                if M[j][kk]: cands.append(s * dot(I[i], Ng[j][kk]))
        i2t += lse(cands) - s * dot(I[i], T[i])
        t2i += lse([s * dot(T[i], I[j]) for j in range(n)]) - s * dot(T[i], I[i])
    return (i2t / n + t2i / n) / 2

def bf_imc(img, txt, neg, mask, s, variant='ceclip'):
    I, T, Ng, M = img.tolist(), txt.tolist(), neg.tolist(), mask.tolist()
    n, k = len(I), len(M[0])
    valid = [(j, kk) for j in range(n) for kk in range(k) if M[j][kk]]
    total = 0.0
    for i in range(n):
        negs = [s * dot(T[i], Ng[j][kk]) for j, kk in valid]
        pos = s * dot(I[i], T[i])
        if variant == 'ceclip': total += lse([pos] + negs) - pos
        elif variant == 'target_col1': total += lse([s * dot(T[i], T[i]), pos] + negs) - pos
        elif variant == 'no_positive':
            if not valid: return 0.0
            total += lse(negs) - negs[0]           # target: the first valid negative of the batch
    return total / n

def bf_cmr(img, txt, neg, mask, s, theta, reduction='all'):
    I, T, Ng, M, th = img.tolist(), txt.tolist(), neg.tolist(), mask.tolist(), theta.tolist()
    n, k = len(I), len(M[0])
    total, count = 0.0, 0
    for i in range(n):
        pos = s * dot(I[i], T[i])
        for kk in range(k):
            if M[i][kk]:
                total += max(0.0, th[kk] + s * dot(I[i], Ng[i][kk]) - pos); count += 1
    return total / (n * k) if reduction == 'all' else (total / count if count else 0.0)


SHAPES = [(1, 1, 3), (2, 3, 4), (5, 2, 7), (7, 4, 5), (4, 1, 2)]
SEEDS = [0, 1, 2]


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('seed', SEEDS)
def test_itc_matches_brute_force(shape, seed):
    img, txt, neg, mask = batch(*shape, seed)
    s = 3.0 + seed
    got = itc_loss(img, txt, neg, mask, torch.tensor(s, dtype=torch.float64))
    assert got.dtype == torch.float64
    assert math.isclose(got.item(), bf_itc(img, txt, neg, mask, s), rel_tol=1e-10, abs_tol=1e-12)


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('seed', SEEDS)
@pytest.mark.parametrize('variant', IMC_VARIANTS)
def test_imc_matches_brute_force(shape, seed, variant):
    img, txt, neg, mask = batch(*shape, seed)
    s = 2.5 + seed
    got = imc_loss(img, txt, neg, mask, torch.tensor(s, dtype=torch.float64), variant=variant)
    assert math.isclose(got.item(), bf_imc(img, txt, neg, mask, s, variant), rel_tol=1e-10, abs_tol=1e-12)


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('seed', SEEDS)
@pytest.mark.parametrize('reduction', ['all', 'valid'])
def test_cmr_matches_brute_force(shape, seed, reduction):
    img, txt, neg, mask = batch(*shape, seed)
    s = 10.0
    theta = torch.rand(shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 10
    got = cmr_loss(img, txt, neg, mask, torch.tensor(s, dtype=torch.float64), theta, reduction=reduction)
    want = bf_cmr(img, txt, neg, mask, s, theta, reduction)
    assert math.isclose(got.item(), want, rel_tol=1e-10, abs_tol=1e-12)


def test_float32_close_to_float64():
    img, txt, neg, mask = batch(16, 4, 32, 5)
    s = torch.tensor(100.)
    a = itc_loss(img.float(), txt.float(), neg.float(), mask, s)
    b = bf_itc(img, txt, neg, mask, 100.)
    assert math.isclose(a.item(), b, rel_tol=1e-5)


# ---------- gradients ----------
@pytest.mark.parametrize('seed', [0, 1])
def test_gradcheck_all_losses(seed):
    img, txt, neg, mask = batch(3, 2, 4, seed, p_valid=0.6, normalise=False)
    mask[0, 0], mask[1, 1] = True, False          # at least one valid and one invalid
    theta = torch.tensor([0.3, 1.1], dtype=torch.float64)
    s = torch.tensor(2.0, dtype=torch.float64)
    ins = [x.clone().requires_grad_() for x in (img, txt, neg, s)]
    fns = [lambda i, t, n, s: itc_loss(i, t, n, mask, s),
           lambda i, t, n, s: cmr_loss(i, t, n, mask, s, theta),
           lambda i, t, n, s: HardNegativeLoss(threshold=FixedThreshold(theta))(i, t, n, mask, s)['loss']]
    fns += [lambda i, t, n, s, v=v: imc_loss(i, t, n, mask, s, variant=v) for v in IMC_VARIANTS]
    for fn in fns: assert torch.autograd.gradcheck(fn, ins, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize('scale', [1e3, 1e18])
@pytest.mark.parametrize('seed', [0, 3])
def test_invalid_negatives_have_no_effect(scale, seed):
    img, txt, neg, mask = batch(6, 4, 8, seed, p_valid=0.5, dtype=torch.float32)
    mask[0, 0], mask[0, 1] = True, False
    junk = neg.clone()
    junk[~mask] = scale * torch.randn(int((~mask).sum()), 8, generator=torch.Generator().manual_seed(9))
    s = torch.tensor(50.)
    theta = torch.tensor([1., 2., 3., 4.])
    def run(n_feats, fn):
        ins = [x.clone().requires_grad_() for x in (img, txt, n_feats)]
        loss = fn(*ins); loss.backward()
        return loss, [x.grad for x in ins]
    fns = {'itc': lambda i, t, n: itc_loss(i, t, n, mask, s),
           'cmr': lambda i, t, n: cmr_loss(i, t, n, mask, s, theta),
           'cmr_valid': lambda i, t, n: cmr_loss(i, t, n, mask, s, theta, reduction='valid'),
           'total': lambda i, t, n: HardNegativeLoss()(i, t, n, mask, s)['loss']}
    fns.update({f'imc_{v}': (lambda i, t, n, v=v: imc_loss(i, t, n, mask, s, variant=v)) for v in IMC_VARIANTS})
    for name, fn in fns.items():
        l0, g0 = run(neg, fn)
        l1, g1 = run(junk, fn)
        assert torch.equal(l0, l1), name
        for a, b in zip(g0, g1): assert (a is None and b is None) or torch.equal(a, b), name
        assert torch.all(g1[2][~mask] == 0), name      # invalid negatives get exactly zero gradient


def test_threshold_update_ignores_invalid_negatives():
    img, txt, neg, mask = batch(6, 4, 8, 1, p_valid=0.5, dtype=torch.float32)
    mask[:, 0] = True
    junk = neg.clone(); junk[~mask] = 1e6
    c0, c1 = HardNegativeLoss(), HardNegativeLoss()
    c0(img, txt, neg, mask, 20.); c1(img, txt, junk, mask, 20.)
    assert torch.equal(c0.threshold.value, c1.threshold.value)


def test_cmr_zero_when_margins_met():
    img, txt, neg, mask = batch(5, 3, 6, 0, p_valid=0.8)
    txt = img.clone()                               # s(I_i, T_i) = s, the maximum
    s = 10.0
    own = s * torch.einsum('nd,nkd->nk', img, neg)
    gap = (s - own)[mask].min()
    assert gap > 0
    theta = torch.full((3,), 0.9 * gap.item(), dtype=torch.float64)
    ins = [x.clone().requires_grad_() for x in (img, txt, neg)]
    loss = cmr_loss(*ins, mask, s, theta)
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.count_nonzero(x.grad) == 0 for x in ins)
    assert cmr_loss(img, txt, neg, mask, s, theta * 1.2 / 0.9) > 0     # just past the smallest gap: active


# ---------- CLIP equivalence ----------
@pytest.mark.parametrize('seed', SEEDS)
@pytest.mark.parametrize('k', [0, 1, 4])
def test_itc_without_valid_negatives_is_open_clip(seed, k):
    img, txt, neg, mask = batch(9, k, 16, seed, dtype=torch.float32)
    s = torch.tensor(100.)
    ref = ClipLoss()(img, txt, s)
    none = torch.zeros_like(mask)
    assert torch.equal(itc_loss(img, txt, neg, none, s), ref)
    assert torch.equal(HardNegativeLoss(imc=False, cmr=False, hard_negatives=False)(img, txt, neg, mask, s)['loss'], ref)
    assert torch.equal(HardNegativeLoss(hard_negatives=False)(img, txt, neg, mask, s)['loss'], ref)
    if k:
        out = HardNegativeLoss(imc=False, cmr=False)(img, txt, neg, none, s)
        assert torch.equal(out['loss'], ref) and torch.equal(out['itc'], ref)
        assert itc_loss(img, txt, neg, mask | ~mask, s) > ref


@pytest.mark.parametrize('k', [0, 2])
def test_itc_grad_matches_open_clip(k):
    img, txt, neg, mask = batch(6, k, 8, 4, dtype=torch.float32)
    a = [x.clone().requires_grad_() for x in (img, txt)]
    b = [x.clone().requires_grad_() for x in (img, txt)]
    itc_loss(a[0], a[1], neg, torch.zeros_like(mask), torch.tensor(30.)).backward()
    ClipLoss()(b[0], b[1], torch.tensor(30.)).backward()
    for x, y in zip(a, b):
        # K=0: the very same graph, bit for bit; all-invalid negatives: the softmax backward runs over a longer
        # row of exact zeros, which can change the last bit of a sum
        if k == 0: assert torch.equal(x.grad, y.grad)
        else: torch.testing.assert_close(x.grad, y.grad, rtol=1e-6, atol=1e-6)


# ---------- HardNegativeLoss ----------
def test_hard_negative_loss_terms_and_switches():
    img, txt, neg, mask = batch(7, 4, 6, 2)
    s = 20.0
    st = torch.tensor(s, dtype=torch.float64)
    crit = HardNegativeLoss()
    out = crit(img, txt, neg, mask, st)
    assert set(out) == {'loss', 'itc', 'imc', 'cmr'}
    itc, imc, cmr = bf_itc(img, txt, neg, mask, s), bf_imc(img, txt, neg, mask, s), bf_cmr(img, txt, neg, mask, s, torch.zeros(4))
    for key, want in (('itc', itc), ('imc', imc), ('cmr', cmr), ('loss', itc + 0.3 * imc + 0.2 * cmr)):
        assert math.isclose(out[key].item(), want, rel_tol=1e-10), key
    # the threshold moved after the loss: brute-force the paper's adaptive-threshold rule (nbs/03_schedule.ipynb)
    pos = [s * dot(a, b) for a, b in zip(img.tolist(), txt.tolist())]
    for kk in range(4):
        vals = [s * dot(img[i].tolist(), neg[i, kk].tolist()) for i in range(7) if mask[i, kk]]
        want = min(max(sum(pos) / 7 - sum(vals) / len(vals), 0.0), 10.0) if vals else 0.0
        assert math.isclose(crit.threshold.value[kk].item(), want, rel_tol=1e-5, abs_tol=1e-5)
    # second step uses the updated θ
    theta = crit.threshold.value.double().clone()
    out2 = crit(img, txt, neg, mask, st)
    assert math.isclose(out2['cmr'].item(), bf_cmr(img, txt, neg, mask, s, theta), rel_tol=1e-6)
    # switches and weights
    o = HardNegativeLoss(imc=False, lambda_cmr=0.5, threshold=2.0)(img, txt, neg, mask, st)
    c2 = bf_cmr(img, txt, neg, mask, s, torch.full((4,), 2.0))
    assert o['imc'].item() == 0 and math.isclose(o['loss'].item(), itc + 0.5 * c2, rel_tol=1e-10)
    o = HardNegativeLoss(itc=False, cmr=False, imc_variant='target_col1')(img, txt, neg, mask, st)
    assert o['itc'].item() == 0 and math.isclose(o['loss'].item(), 0.3 * bf_imc(img, txt, neg, mask, s, 'target_col1'), rel_tol=1e-10)


def test_hard_negatives_false_ignores_negatives_and_threshold():
    img, txt, neg, mask = batch(5, 3, 6, 0, dtype=torch.float32)
    crit = HardNegativeLoss(hard_negatives=False)
    out = crit(img, txt, neg, mask, 10.)
    assert out['imc'].item() == 0 and out['cmr'].item() == 0
    assert crit.threshold is None and crit.state_dict() == {}
    assert torch.equal(crit(img, txt, neg[:, :0], mask[:, :0], 10.)['loss'], out['loss'])


def test_state_dict_round_trip(tmp_path):
    img, txt, neg, mask = batch(5, 4, 6, 0, dtype=torch.float32)
    crit = HardNegativeLoss(threshold=AdaptiveThreshold(4, ema=0.5))
    for _ in range(3): crit(img, txt, neg, mask, 30.)
    torch.save(crit.state_dict(), tmp_path / 'th.pt')
    c2 = HardNegativeLoss().load_state_dict(torch.load(tmp_path / 'th.pt'))
    assert torch.equal(c2.threshold.value, crit.threshold.value)
    assert c2.threshold.history == crit.threshold.history and c2.threshold.ema == 0.5
    o1, o2 = crit(img, txt, neg, mask, 30.), c2(img, txt, neg, mask, 30.)
    assert torch.equal(o1['loss'], o2['loss']) and torch.equal(c2.threshold.value, crit.threshold.value)


# ---------- bad input ----------
def _bad_cases():
    img, txt, neg, mask = batch(4, 3, 5, 0, dtype=torch.float32)
    nan = img.clone(); nan[1, 2] = float('nan')
    inf_neg = neg.clone(); inf_neg[0, 0, 0] = float('inf')
    return [
        ((img, txt[:3], neg, mask), 'txt must have shape (4, 5), got (3, 5)'),
        ((img, txt[:, :4], neg, mask), 'txt must have shape (4, 5), got (4, 4)'),
        ((img, txt, neg[:2], mask), 'neg must have shape (4, *, 5), got (2, 3, 5)'),
        ((img, txt, neg[..., :4], mask), 'neg must have shape (4, *, 5), got (4, 3, 4)'),
        ((img, txt, neg[:, 0], mask), 'neg must have shape (4, *, 5), got (4, 5)'),
        ((img, txt, neg, mask[:, :2]), 'neg_mask must have shape (4, 3), got (4, 2)'),
        ((img, txt, neg, mask.T), 'neg_mask must have shape (4, 3), got (3, 4)'),
        ((img, txt, neg, mask.float()), 'neg_mask must be a bool tensor'),
        ((img, txt, neg, mask.tolist()), 'neg_mask must be a torch.Tensor'),
        ((nan, txt, neg, mask), 'img contains non-finite'),
        ((img, txt, inf_neg, mask), 'neg contains non-finite'),
        ((img[0], txt, neg, mask), 'img must have shape (*, *), got (5,)'),
    ]

# (fn, case) pairs whose function, bad input and message nbs/02_losses.ipynb already checks
IN_NOTEBOOK = {('itc', 0), ('itc', 3), ('itc', 5), ('itc', 7), ('itc', 9), ('total', 7)}

@pytest.mark.parametrize('fn,case', [(fn, c) for fn in ('itc', 'imc', 'cmr', 'total') for c in range(12)
                                     if (fn, c) not in IN_NOTEBOOK])
def test_bad_inputs_raise(case, fn):
    args, msg = _bad_cases()[case]
    call = {'itc': lambda *a: itc_loss(*a, 10.), 'imc': lambda *a: imc_loss(*a, 10.),
            'cmr': lambda *a: cmr_loss(*a, 10., torch.zeros(3)), 'total': lambda *a: HardNegativeLoss()(*a, 10.)}[fn]
    with pytest.raises(ValueError) as e: call(*args)
    assert msg in str(e.value)


def test_gather_features_single_process_is_identity_with_grad():
    img, txt, neg, mask = batch(4, 2, 3, 0, dtype=torch.float32)
    ins = [x.clone().requires_grad_() for x in (img, txt, neg)]
    g = gather_features(*ins, mask)
    for a, b in zip(g, (img, txt, neg, mask)): assert torch.equal(a, b)
    sum(x.sum() for x in g[:3]).backward()
    assert all(torch.equal(x.grad, torch.ones_like(x)) for x in ins)
