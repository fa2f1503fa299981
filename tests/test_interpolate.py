"Tests for hnvl.interpolate: weight interpolation of two CLIPs, the curve over α, choosing α, the plot, the script."
import dataclasses, importlib.util, json, math
from functools import partial
from pathlib import Path

import pytest
import torch

from hnvl.model import ClipBundle, create_model, save_model, get_logit_scale
from hnvl.interpolate import ALPHAS, interpolate, interpolation_curve, best_alpha, plot_interpolation

ROOT = Path(__file__).resolve().parent.parent
W = 'visual.conv1.weight'


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny(seed, **kw):
    torch.manual_seed(seed)
    return create_model('tiny', **kw)


def _bits(t): return t.detach().reshape(-1).contiguous().view(torch.uint8)
def _same_bits(a, b): return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))
def _sd(x): return x if isinstance(x, dict) else (x.model if isinstance(x, ClipBundle) else x).state_dict()


@pytest.fixture(scope='module')
def ends(tmp_path_factory):
    "Two tiny CLIPs from different seeds (the second with another temperature) and their checkpoints."
    pre, ft = _tiny(0), _tiny(1)
    with torch.no_grad(): ft.model.logit_scale.fill_(math.log(50.))
    tmp = tmp_path_factory.mktemp('ends')
    return pre, ft, save_model(pre, tmp/'pre.pt'), save_model(ft, tmp/'ft.safetensors')


def _kinds(ends, i):
    pre, ft, p0, p1 = ends
    return {'bundle': (pre, ft)[i], 'module': (pre, ft)[i].model, 'sd': _sd((pre, ft)[i]), 'path': (p0, p1)[i]}


@pytest.mark.parametrize('alpha', [0, 0.3, 1])
def test_every_kind_gives_the_same_weights(ends, alpha):
    "Each kind of pretrained against each kind of finetuned: the result has finetuned's kind and the same bits."
    pre, ft = ends[:2]
    want = {k: (1 - alpha) * v + alpha * _sd(ft)[k] for k, v in _sd(pre).items()}
    ref = None
    for kp, x0 in _kinds(ends, 0).items():
        for kf, x1 in _kinds(ends, 1).items():
            r = interpolate(x0, x1, alpha)
            assert isinstance(r, {'bundle': ClipBundle, 'path': ClipBundle, 'module': torch.nn.Module, 'sd': dict}[kf])
            got = _sd(r)
            ref = ref or got
            assert all(_same_bits(got[k], ref[k]) for k in ref), (kp, kf)
    for k in want: torch.testing.assert_close(ref[k], want[k], rtol=1e-6, atol=1e-6)


def test_ends_are_exact_and_inputs_untouched(ends):
    pre, ft = ends[:2]
    before = [{k: v.clone() for k, v in _sd(b).items()} for b in (pre, ft)]
    for alpha, end in ((0, pre), (1, ft)):
        got = _sd(interpolate(pre, ft, alpha))
        assert all(_same_bits(got[k], v) for k, v in _sd(end).items())
    for b, old in zip((pre, ft), before): assert all(_same_bits(_sd(b)[k], v) for k, v in old.items())


def test_logit_scale_is_interpolated(ends):
    "logit_scale mixes like any parameter: the scale exp(logit_scale) is the geometric interpolation."
    pre, ft = ends[:2]
    for a in (0.25, 0.5):
        s = get_logit_scale(interpolate(pre, ft, a))
        assert math.isclose(float(s.detach()), (1 / 0.07) ** (1 - a) * 50 ** a, rel_tol=1e-5)


def test_bundle_result(ends):
    pre, ft, p0, p1 = ends
    r = interpolate(p0, ft, 0.5)
    assert r.model is not ft.model and r.tokenizer is ft.tokenizer and r.preprocess is ft.preprocess
    assert r.checkpoint is None and r.meta == {'interpolation': dict(alpha=0.5, pretrained=str(p0), finetuned=None)}
    r = interpolate(pre, p1, 0.5)
    assert r.name == 'hnvl-tiny' and r.quick_gelu is False and r.meta['interpolation']['finetuned'] == str(p1)
    assert torch.isfinite(r.model.encode_image(torch.randn(2, 3, 32, 32))).all()


def test_wrapped_module_is_unwrapped(ends):
    pre, ft = ends[:2]
    r = interpolate(pre, torch.nn.DataParallel(ft.model), 1)
    assert not isinstance(r, torch.nn.DataParallel)
    assert all(_same_bits(_sd(r)[k], v) for k, v in _sd(ft).items())


def test_dtype_of_finetuned_wins(ends):
    pre, ft = ends[:2]
    half0 = {k: v.half() for k, v in _sd(pre).items()}
    r = interpolate(half0, ft, 0.5)
    assert {p.dtype for p in r.model.parameters()} == {torch.float32}
    assert _same_bits(_sd(interpolate(half0, ft, 0))[W], half0[W].float())
    half1 = {k: v.half() for k, v in _sd(ft).items()}
    r = interpolate(pre, half1, 0.5)
    assert {v.dtype for v in r.values()} == {torch.float16}
    assert _same_bits(r[W], ((_sd(pre)[W] + half1[W].float()) / 2).half())   # mixed in fp32, then rounded


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_device_of_finetuned_wins(ends):
    pre, ft = ends[:2]
    r = interpolate(pre, {k: v.cuda() for k, v in _sd(ft).items()}, 0.5)
    assert {v.device.type for v in r.values()} == {'cuda'}
    torch.testing.assert_close(r[W].cpu(), (_sd(pre)[W] + _sd(ft)[W]) / 2)


def test_refusals(ends):
    pre, ft, _, p1 = ends
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"): interpolate(pre, ft, 1.01)
    with pytest.raises(ValueError, match='alpha must be a finite number'): interpolate(pre, ft, float('nan'))
    torch.testing.assert_close(_sd(interpolate(pre, ft, 2, extrapolate=True))[W], 2 * _sd(ft)[W] - _sd(pre)[W])
    with pytest.raises(ValueError, match=r"\(1 of 62 entries differ\); first: 'visual.positional_embedding' has shape"):
        interpolate(create_model('tiny', force_image_size=64), ft, 0.5)
    with pytest.raises(ValueError, match='pretrained uses QuickGELU, finetuned GELU'):
        interpolate(_tiny(2, quick_gelu=True), p1, 0.5)
    ids = torch.arange(16)[None]
    with pytest.raises(ValueError, match="non-floating entry 'ids' differs"):
        interpolate({**_sd(pre), 'ids': ids}, {**_sd(ft), 'ids': ids + 1}, 0.5)
    assert torch.equal(interpolate({**_sd(pre), 'ids': ids}, {**_sd(ft), 'ids': ids.clone()}, 0.5)['ids'], ids)
    with pytest.raises(TypeError, match='finetuned must be a ClipBundle'): interpolate(pre, 3, 0.5)


def test_vit_b32_shapes_and_dtype():
    "Any two open_clip checkpoints of one architecture: ViT-B-32-quickgelu at random init, fp16 against fp32."
    torch.manual_seed(0)
    b = create_model('ViT-B-32-quickgelu')
    sd = _sd(b)
    half = {k: v.half() for k, v in sd.items()}
    shapes = {k: v.shape for k, v in sd.items()}
    r = interpolate(half, b, 0.5)   # fp16 pretrained, fp32 finetuned: fp32
    assert r.quick_gelu and r.name == 'ViT-B-32-quickgelu'
    assert {k: v.shape for k, v in _sd(r).items()} == shapes and {v.dtype for v in _sd(r).values()} == {torch.float32}
    assert _same_bits(_sd(r)['logit_scale'], ((half['logit_scale'].float() + sd['logit_scale']) / 2))
    del r
    r = interpolate(b, half, 0.5)   # fp32 pretrained, fp16 finetuned: fp16
    assert {k: v.shape for k, v in r.items()} == shapes and {v.dtype for v in r.values()} == {torch.float16}
    del r
    with pytest.raises(ValueError, match=r"first: 'positional_embedding' has shape \(16, 64\) in pretrained, "
                                         r"\(77, 512\) in finetuned"):
        interpolate(_tiny(0, quick_gelu=True), b, 0.5)


def _world_dc(**kw):
    from hnvl.demo import DemoConfig
    return DemoConfig(n_per_task=16, progress=False, **kw)


def test_curve_with_the_demo_tasks(ends):
    "The curve's ends are the two models' own scores; `best_alpha` and the plot read it."
    from hnvl.demo import evaluate, make_benchmarks
    pre, ft, p0, p1 = ends
    benches = {k: v for k, v in make_benchmarks(_world_dc()).items() if k in ('relation_swap', 'retrieval')}
    ev = partial(evaluate, benches=benches)
    curve = interpolation_curve(p0, p1, ev, alphas=(0, 0.5, 1), progress=False)
    assert list(curve) == [0, 0.5, 1] and set(curve[0]) == {'relation_swap', 'retrieval_i2t_r1', 'retrieval_t2i_r1'}
    assert curve[0] == ev(create_model('tiny', checkpoint=p0)) and curve[1] == ev(create_model('tiny', checkpoint=p1))
    assert 0 <= best_alpha(curve, 'relation_swap') <= 1
    fig = plot_interpolation(curve, task='relation_swap')
    assert len(fig.axes[0].get_lines()) == 4


def test_curve_default_grid(ends):
    pre, ft = ends[:2]
    curve = interpolation_curve(pre, ft, lambda b: {'s': get_logit_scale(b).detach()}, progress=False)
    assert list(curve) == list(ALPHAS) == [i / 10 for i in range(11)]
    assert curve[0]['s'] == pytest.approx(1 / 0.07, rel=1e-6) and curve[1]['s'] == pytest.approx(50, rel=1e-6)


def test_best_alpha():
    c = {0: {'t': 50.}, 0.2: {'t': 60.}, 0.4: {'t': 68.}, 0.6: {'t': 69.}, 1: {'t': 70.}}
    assert best_alpha(c, 't') == 0.4            # 50 + 0.9 * 20 = 68: 0.4 reaches it exactly
    assert best_alpha(c, 't', keep=0.5) == 0.2 and best_alpha(c, 't', keep=1) == 1 and best_alpha(c, 't', keep=0) == 0
    assert best_alpha({0: {'t': 70.}, 0.5: {'t': 60.}, 1: {'t': 50.}}, 't') == 0
    with pytest.raises(ValueError, match='with alpha = 0 and 1'): best_alpha({0: {'t': 1.}}, 't')


def _script():
    spec = importlib.util.spec_from_file_location('interpolate_demo', ROOT/'experiments'/'interpolate_demo.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_script_on_a_run_folder(ends, tmp_path, capsys):
    "experiments/interpolate_demo.py on a run folder laid out as `hnvl_demo` writes it (untrained models)."
    pre, ft, p0, _ = ends
    run = tmp_path/'run'
    for c, m in (('ce_clip', ft), ('itc_hn', _tiny(3))): save_model(m, run/'runs'/c/'seed0'/'model.pt')
    (run/'runs.json').write_text(json.dumps(dict(config=dataclasses.asdict(_world_dc()), pretrained=str(p0))))
    curves = _script().main(['--run', str(run), '--alphas', '0,0.5,1', '--out', str(tmp_path/'c.png'),
                             '--threads', '1'])
    out = capsys.readouterr().out
    assert set(curves) == {'ce_clip', 'itc_hn'} and list(curves['ce_clip']) == [0, 0.5, 1]
    assert '== ce_clip' in out and '== itc_hn' in out and 'of the relation_swap gain' in out
    assert 'retrieval_t2i_r1' in out and (tmp_path/'c.png').stat().st_size > 1000
    with pytest.raises(SystemExit, match='ce_clip/seed1/model.pt not found'):
        _script().main(['--run', str(run), '--seed', '1', '--alphas', '0,1', '--out', str(tmp_path/'d.png')])
    with pytest.raises(SystemExit, match='must hold 0 and 1'): _script().main(['--run', str(run), '--alphas', '0,0.5'])
    with pytest.raises(SystemExit, match='runs.json not found'): _script().main(['--run', str(tmp_path)])
