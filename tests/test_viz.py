"""Golden-figure tests for hnvl.viz: each plot is rendered on fixed synthetic data into a PNG, then checked for
existence, exact pixel size (figsize × dpi) and a structural property that a broken plot would fail — never
pixel hashes."""
import json, math, subprocess, sys

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
    # each error bar spans mean ± the given std, over the centre of its bar
    for i, e in enumerate(errs):
        seg = np.array(e.lines[2][0].get_segments())                     # (tasks, 2 ends, xy)
        np.testing.assert_allclose(seg[:, 1, 1] - seg[:, 0, 1], 2 * 100 * sd[i], rtol=1e-6)
        bars = ax.patches[i * len(tasks):(i + 1) * len(tasks)]
        np.testing.assert_allclose(seg[:, 0, 0], [b.get_x() + b.get_width() / 2 for b in bars])
    assert not [l for l in ax.lines if l.get_gid() == "seed sd"]       # no per-seed values: no seaborn error bars
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


def test_ablation_per_seed_golden(tmp_path):
    configs = ["clip", "itc_hn", "ce_clip"]
    tasks = ["relation_swap", "attribute_swap", "order", "replace_rel"]
    rng = np.random.default_rng(1)
    acc = rng.uniform(0.3, 0.95, size=(len(configs), len(tasks), 3))          # 3 seeds per cell
    metrics = {c: {t: list(acc[i, j]) for j, t in enumerate(tasks)} for i, c in enumerate(configs)}
    p = tmp_path / "ablation_seeds.png"
    fig = viz.plot_ablation(metrics, chance={"relation_swap": 0.5}, paper=viz.PAPER_ABLATION, path=p)
    _png(p, fig)
    ax = fig.axes[0]
    assert len(ax.patches) == len(configs) * len(tasks)
    heights = np.array([b.get_height() for b in ax.patches]).reshape(len(configs), len(tasks))
    np.testing.assert_allclose(heights, 100 * acc.mean(-1), rtol=1e-6)
    # one seaborn error bar per bar, spanning mean ± the seeds' sample std
    err = [l for l in ax.lines if l.get_gid() == "seed sd"]
    assert len(err) == len(configs) * len(tasks)
    lo = np.array([np.nanmin(l.get_ydata()) for l in err]).reshape(heights.shape)
    hi = np.array([np.nanmax(l.get_ydata()) for l in err]).reshape(heights.shape)
    sd = 100 * acc.std(-1, ddof=1)
    np.testing.assert_allclose(lo, heights - sd, rtol=1e-6)
    np.testing.assert_allclose(hi, heights + sd, rtol=1e-6)
    centres = [b.get_x() + b.get_width() / 2 for b in ax.patches]
    np.testing.assert_allclose([np.nanmean(l.get_xdata()) for l in err], centres, atol=1e-9)
    assert not [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert _legend(ax) == configs + ["chance", "paper"]
    paper = [c for c in ax.collections if c.get_label() == "paper"][0]
    assert len(paper.get_offsets()) == 6                                       # 3 configs × 2 paper tasks
    # the diamonds sit on the centres of their bars (config-major: relation_swap, attribute_swap of each config)
    np.testing.assert_allclose(paper.get_offsets()[:, 0],
                               [centres[i * len(tasks) + j] for i in range(3) for j in (0, 1)])
    # fewer seeds in a cell change its bar and error bar only
    metrics["clip"]["order"] = [0.4]
    fig = viz.plot_ablation(metrics)
    err = [l for l in fig.axes[0].lines if l.get_gid() == "seed sd"]
    assert fig.axes[0].patches[2].get_height() == pytest.approx(40.0)
    assert np.isnan(err[2].get_ydata()).all() and np.isfinite(err[3].get_ydata()).any()


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


def test_losses_seed_bands(tmp_path):
    steps = list(range(0, 60, 10))
    seeds = []
    for k in range(3):                                    # ce_clip: 3 seeds, each a metrics.jsonl file
        f = tmp_path / f"seed{k}.jsonl"
        f.write_text("".join(json.dumps({"step": s, "loss": (1 + k) / (1 + s), "cmr": 0.1 * k}) + "\n" for s in steps))
        seeds.append(f)
    clip = [{"step": s, "loss": 2.0 / (1 + s)} for s in steps]   # one seed: a plain line
    p = tmp_path / "losses_seeds.png"
    fig = viz.plot_losses({"clip": clip, "ce_clip": seeds}, path=p)
    _png(p, fig)
    assert [a.get_title() for a in fig.axes] == ["loss", "cmr"]
    assert [len(a.lines) for a in fig.axes] == [2, 1]
    assert [len(a.collections) for a in fig.axes] == [1, 1]       # a ± sd band for the 3-seed run only
    assert _legend(fig.axes[0]) == ["clip", "ce_clip"]
    ys = np.array([[(1 + k) / (1 + s) for s in steps] for k in range(3)])
    line = fig.axes[0].lines[1]
    np.testing.assert_allclose(line.get_xdata(), steps)
    np.testing.assert_allclose(line.get_ydata(), ys.mean(0))
    band = fig.axes[0].collections[0].get_paths()[0].vertices
    lo, hi = ys.mean(0) - ys.std(0, ddof=1), ys.mean(0) + ys.std(0, ddof=1)
    for x, l, h in zip(steps, lo, hi):                            # the band spans mean ± sd at every step
        at = band[np.isclose(band[:, 0], x), 1]
        assert at.min() == pytest.approx(l) and at.max() == pytest.approx(h)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [2.0 / (1 + s) for s in steps])
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), [0.1] * len(steps))   # mean of 0, 0.1, 0.2


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
    # seaborn's histogram per model (30 shared bins, each a density), a KDE per model and the 0 line
    for k, ax in enumerate(fig.axes):
        assert len(ax.patches) == 2 * 30
        areas = [sum(b.get_height() * b.get_width() for b in ax.patches[m * 30:(m + 1) * 30]) for m in range(2)]
        np.testing.assert_allclose(areas, [1, 1], rtol=1e-6)
        assert len(ax.lines) == 3 and list(ax.lines[-1].get_xdata()) == [0, 0]
        kde_peak = [ax.lines[m].get_xdata()[np.argmax(ax.lines[m].get_ydata())] for m in range(2)]
        gaps = [(pn - bn[:, k])[mn[:, k]], (pn - an[:, k])[mn[:, k]]]
        for peak, g in zip(kde_peak, gaps): assert abs(peak - np.median(g)) < 1.0
    assert _legend(fig.axes[0]) == ["before", "after"]
    assert all(ax.get_legend() is None for ax in fig.axes[1:])
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
    figs = [viz.plot_ablation({"a": {"t": [0.5, 0.6]}}),                      # the seaborn-drawn plots too
            viz.plot_losses({"r": [[{"step": 0, "loss": 1.0}], [{"step": 0, "loss": 2.0}]]}),
            viz.plot_separation(torch.zeros(5), torch.randn(5, 4))]
    assert set(plt.get_fignums()) == before     # figures are never registered with pyplot (no leaks in long runs)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    assert all(isinstance(f, viz.HFigure) and isinstance(f.canvas, FigureCanvasAgg) for f in figs)


def test_colors_are_seaborns_and_lazy():
    import seaborn as sns
    assert viz.COLORS == sns.color_palette("colorblind").as_hex()
    assert "COLORS" in dir(viz) and "COLORS" in viz.__all__
    with pytest.raises(AttributeError, match="has no attribute 'nope'"): viz.nope
    # importing hnvl.viz does not import seaborn or pandas; the first plot does
    code = ("import sys, hnvl.viz as v; assert 'seaborn' not in sys.modules and 'pandas' not in sys.modules; "
            "v.plot_ablation({'a': {'t': 0.5}}); assert 'seaborn' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
