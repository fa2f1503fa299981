"""Golden-figure tests for hnvl.viz: each plot is rendered on fixed synthetic data into a PNG, then checked for
existence, exact pixel size (figsize × dpi) and a structural property that a broken plot would fail — never
pixel hashes."""
import json, math

import numpy as np
import pytest
import torch
from PIL import Image

from hnvl import viz

TYPES = ["relation", "adjective", "noun", "verb"]


def _png(path, fig):
    assert path.exists() and path.stat().st_size > 1000
    im = Image.open(path)
    assert im.format == "PNG"
    w, h = fig.get_size_inches()
    assert im.size == (round(w * 100), round(h * 100))
    # not a blank canvas: a real plot has many distinct colours
    assert len(im.convert("RGB").getcolors(maxcolors=1 << 20)) > 20
    return im


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_ablation_golden(tmp_path):
    configs = ["clip", "itc_hn", "itc_hn_imc", "itc_hn_cmr", "ce_clip", "ce_clip_fixed", "clip_ft"]
    tasks = ["relation_swap", "attribute_swap", "order", "replace_att", "replace_obj", "replace_rel",
             "retrieval_i2t_r1", "retrieval_t2i_r1"]
    rng = np.random.default_rng(0)
    acc = rng.uniform(0.3, 1.0, size=(len(configs), len(tasks)))
    sd = rng.uniform(0.0, 0.05, size=acc.shape)
    metrics = {c: {t: {"mean": float(acc[i, j]), "std": float(sd[i, j])} for j, t in enumerate(tasks)}
               for i, c in enumerate(configs)}
    chance = {"relation_swap": 0.5, "attribute_swap": 0.5, "order": 0.2}
    p = tmp_path / "out" / "ablation.png"
    fig = viz.plot_ablation(metrics, chance=chance, paper=viz.PAPER_ABLATION, path=p)
    _png(p, fig)
    ax = fig.axes[0]
    assert len(ax.patches) == len(configs) * len(tasks)
    # bars are percentages of the inputs, grouped config-major
    heights = np.array([b.get_height() for b in ax.patches]).reshape(len(configs), len(tasks))
    np.testing.assert_allclose(heights, 100 * acc, rtol=1e-6)
    errs = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(errs) == len(configs)
    assert _legend(ax) == configs + ["chance", "paper"]
    chance_lines = [c for c in ax.collections if c.get_label() == "chance"][0]
    assert sorted(s[0][1] for s in chance_lines.get_segments()) == [20.0, 50.0, 50.0]
    paper = [c for c in ax.collections if c.get_label() == "paper"][0]
    assert len(paper.get_offsets()) == 10        # 5 paper configs present × 2 tasks
    assert [t.get_text() for t in ax.get_xticklabels()] == tasks


def test_ablation_plain_numbers_and_subset(tmp_path):
    metrics = {"clip": {"relation_swap": 52.0, "order": 30.0}, "ce_clip": {"relation_swap": 90.0, "order": 80.0}}
    fig = viz.plot_ablation(metrics, tasks=["order"], configs=["ce_clip", "clip"], path=tmp_path / "a.png")
    ax = fig.axes[0]
    assert [b.get_height() for b in ax.patches] == [80.0, 30.0]
    assert not [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]   # no std → no error bars


def test_losses_golden_from_jsonl(tmp_path):
    runs = {}
    for name, terms in [("clip", ["loss", "itc"]), ("ce_clip", ["loss", "itc", "imc", "cmr"])]:
        f = tmp_path / f"{name}.jsonl"
        with open(f, "w") as fh:
            for s in range(0, 60, 10):
                fh.write(json.dumps({"step": s, "lr": 1e-3, **{t: 1.0 / (1 + s) for t in terms}}) + "\n")
        runs[name] = f
    p = tmp_path / "losses.png"
    fig = viz.plot_losses(runs, path=p)
    _png(p, fig)
    assert [a.get_title() for a in fig.axes if a.get_visible()] == ["loss", "itc", "imc", "cmr"]
    assert [len(a.lines) for a in fig.axes] == [2, 2, 1, 1]
    assert _legend(fig.axes[0]) == ["clip", "ce_clip"]
    assert list(fig.axes[2].lines[0].get_xdata()) == [0, 10, 20, 30, 40, 50]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [1 / (1 + s) for s in range(0, 60, 10)])


def test_losses_by_field_and_smoothing():
    recs = [{"step": s, "config": c, "loss": float(v)} for c, vals in [("a", [4, 0, 0]), ("b", [1, 1, 1])]
            for s, v in enumerate(vals)]
    fig = viz.plot_losses(recs, by="config", smooth=0.5)
    a, b = fig.axes[0].lines
    np.testing.assert_allclose(a.get_ydata(), [4, 2, 1])     # EMA with factor 0.5
    np.testing.assert_allclose(b.get_ydata(), [1, 1, 1])


def test_thresholds_golden(tmp_path):
    T = 120
    steps = np.arange(T)
    hist = np.stack([np.minimum(steps / 10, 10), np.full(T, 3.0), np.full(T, 2.5), np.full(T, 3.5)], 1)
    recs = [{"step": int(s) * 10, "loss": 1.0, **{f"theta_{t}": float(hist[i, k]) for k, t in enumerate(TYPES)}}
            for i, s in enumerate(steps)]
    p = tmp_path / "thr.png"
    fig = viz.plot_thresholds(recs, upper_bound=10.0, path=p)
    _png(p, fig)
    ax = fig.axes[0]
    assert _legend(ax) == TYPES + ["upper bound 10"]
    assert len(ax.lines) == 5
    np.testing.assert_allclose(ax.lines[0].get_ydata(), hist[:, 0])
    assert ax.lines[0].get_xdata()[-1] == 1190
    assert ax.lines[-1].get_ydata()[0] == 10.0
    # the AdaptiveThreshold.history form (list of lists) gives the same trajectories
    fig2 = viz.plot_thresholds([list(r) for r in hist], upper_bound=None)
    assert len(fig2.axes[0].lines) == 4
    np.testing.assert_allclose(fig2.axes[0].lines[3].get_ydata(), hist[:, 3])


def test_separation_golden(tmp_path):
    g = torch.Generator().manual_seed(0)
    N = 400
    pos = torch.randn(N, generator=g) + 20
    shift_before, shift_after = torch.tensor([0.0, 2.0, 2.0, 2.0]), torch.tensor([5.0, 4.0, 4.0, 4.0])
    before = pos[:, None] - shift_before - 2 * torch.randn(N, 4, generator=g)
    after = pos[:, None] - shift_after - 2 * torch.randn(N, 4, generator=g)
    mask = torch.rand(N, 4, generator=g) > 0.2
    p = tmp_path / "sep.png"
    fig = viz.plot_separation({"before": (pos, before, mask), "after": (pos.numpy(), after.numpy(), mask.numpy())}, path=p)
    _png(p, fig)
    assert [a.get_title() for a in fig.axes] == TYPES
    pn, bn, an, mn = pos.numpy(), before.numpy(), after.numpy(), mask.numpy()
    for k, ax in enumerate(fig.axes):
        texts = [t.get_text() for t in ax.texts]
        fb = 100 * np.mean((pn - bn[:, k])[mn[:, k]] > 0)
        fa = 100 * np.mean((pn - an[:, k])[mn[:, k]] > 0)
        assert texts == [f"before: {fb:.1f}% > 0", f"after: {fa:.1f}% > 0"]
    rel = fig.axes[0].texts
    assert float(rel[1].get_text().split()[1][:-1]) > float(rel[0].get_text().split()[1][:-1]) + 30
    np.testing.assert_allclose(viz.gap_fraction(pos, before, mask).numpy(),
                               [np.mean((pn - bn[:, k])[mn[:, k]] > 0) for k in range(4)], rtol=1e-6)


def test_separation_from_features():
    g = torch.Generator().manual_seed(2)
    img = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    neg = torch.nn.functional.normalize(torch.randn(6, 3, 8, generator=g), dim=-1)
    pos_s, neg_s = viz.pair_similarities(img, txt, neg, logit_scale=100.0)
    np.testing.assert_allclose(pos_s.numpy(), 100 * (img.numpy() * txt.numpy()).sum(1), rtol=1e-5)
    np.testing.assert_allclose(neg_s[2, 1].item(), 100 * float(img[2] @ neg[2, 1]), rtol=1e-5)
    fig = viz.plot_separation(pos_s, neg_s, types=["a", "b", "c"])
    assert [a.get_title() for a in fig.axes] == ["a", "b", "c"]
    # the scores are the CMR loss's own similarities, detached and float32 whatever the inputs
    from hnvl.losses import own_similarities
    ref_pos, ref_neg = own_similarities(img, txt, neg, 100.0)
    torch.testing.assert_close(pos_s, ref_pos); torch.testing.assert_close(neg_s, ref_neg)
    p2, n2 = viz.pair_similarities(img.double().requires_grad_(), txt.double(), neg.double(), logit_scale=100.0)
    assert p2.dtype == n2.dtype == torch.float32 and not p2.requires_grad and not n2.requires_grad
    assert n2.shape == (6, 3)


def test_neg_types_is_the_ceclip_recipe():
    # viz keeps its own copy (importing hnvl.negatives would pull fastcore.script into every plot); it must not drift
    from hnvl.negatives import RECIPES
    assert viz.NEG_TYPES == RECIPES["ceclip"] == TYPES


def test_embeddings_2d_golden(tmp_path):
    g = torch.Generator().manual_seed(1)
    nrm = lambda x: torch.nn.functional.normalize(x, dim=-1)
    N, K, D = 10, 4, 32
    img = nrm(torch.randn(N, D, generator=g))
    txt = nrm(img + 0.2 * torch.randn(N, D, generator=g))
    neg = nrm(txt[:, None] + torch.randn(N, K, D, generator=g))
    mask = torch.ones(N, K, dtype=torch.bool)
    mask[0, 0] = mask[1, 0] = mask[3, 2] = False
    p = tmp_path / "emb.png"
    fig = viz.plot_embeddings_2d(img, txt, neg, mask, n=6, labels=[f"cap {i}" for i in range(N)], path=p)
    _png(p, fig)
    ax = fig.axes[0]
    assert sum(l.get_gid() == "image-caption" for l in ax.lines) == 6
    assert sum(l.get_gid() == "image-negative" for l in ax.lines) == 6 * K - 3
    assert _legend(ax) == ["image", "caption"] + [f"neg: {t}" for t in TYPES]
    assert sorted(t.get_text() for t in ax.texts) == [f"cap {i}" for i in range(6)]
    # the image→caption line of pair 0 starts at the PCA projection of image 0 (independent numpy PCA)
    pts = torch.cat([img[:6], txt[:6], neg[:6][mask[:6]]]).double().numpy()
    xc = pts - pts.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    proj = xc @ vt[:2].T
    line = [l for l in ax.lines if l.get_gid() == "image-caption"][0]
    start, end = np.array([line.get_xdata()[0], line.get_ydata()[0]]), np.array([line.get_xdata()[1], line.get_ydata()[1]])
    np.testing.assert_allclose(np.abs(start), np.abs(proj[0]), atol=1e-4)   # up to the sign of each component
    np.testing.assert_allclose(np.abs(end), np.abs(proj[6]), atol=1e-4)


def test_no_pyplot_state():
    import matplotlib.pyplot as plt
    before = set(plt.get_fignums())
    viz.plot_thresholds(torch.zeros(3, 4)); viz.plot_ablation({"a": {"t": 0.5}})
    assert set(plt.get_fignums()) == before     # figures are never registered with pyplot (no leaks in long runs)
