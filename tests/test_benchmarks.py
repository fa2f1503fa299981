"Tests of hnvl.benchmarks: real annotation counts, scoring rules with oracle scores, end-to-end scoring on CPU."
import dataclasses, json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hnvl import benchmarks as B
from hnvl.core import benchmarks_root
from hnvl.benchmarks import Item, Benchmark, load, score, from_task

ANN = benchmarks_root()
need_ann = pytest.mark.skipif(not ANN.exists(), reason=f"real annotation files not found at {ANN} (set HNVL_BENCHMARKS)")

# published per-file counts (SugarCrepe paper / repo, VALSE PROVENANCE table)
SC_COUNTS = {'add_att': 692, 'add_obj': 2062, 'replace_att': 788, 'replace_obj': 1652, 'replace_rel': 1406, 'swap_att': 666, 'swap_obj': 245}
VALSE_COUNTS = {'actant-swap': (1042, 949), 'action-replacement': (779, 648), 'coreference-hard': (141, 104),
                'coreference-standard': (916, 708), 'counting-adversarial': (756, 691), 'counting-hard': (1000, 868),
                'counting-small-quant': (1000, 900), 'existence': (534, 505), 'foil-it': (1000, 943), 'plurals': (1000, 851),
                'relations': (614, 535)}


def oracle_sims(bench, mode):
    "Per-item similarity tables: 'oracle' prefers the right option, 'anti' a wrong one, 'tie' scores all options equal."
    out = []
    for it in bench.items:
        ni, nt = len(it.images), len(it.texts)
        if ni == 2:  # winoground: image k matches caption k
            s = np.eye(2) if mode == 'oracle' else (1 - np.eye(2) if mode == 'anti' else np.ones((2, 2)))
        else:
            s = np.zeros((1, nt))
            if mode == 'oracle': s[0, it.label] = 1
            elif mode == 'anti': s[0] = 1; s[0, it.label] = 0
        out.append(s)
    return out


def scalars(m):
    return {k: v for k, v in m.items() if isinstance(v, float) and not k.startswith('n_') and k != 'rsum'}


def all_values(m):
    "Every float metric, including those inside per-group tables."
    out = []
    for k, v in m.items():
        if isinstance(v, dict): out += all_values(v)
        elif isinstance(v, float) and not k.startswith('n_'): out.append(v)
    return out


# ---------------------------------------------------------------------------------------------- real files, counts
@need_ann
def test_sugarcrepe_counts():
    b = load('sugarcrepe', ANN)
    assert len(b) == 7511
    got = {}
    for it in b.items: got[it.groups['subset']] = got.get(it.groups['subset'], 0) + 1
    assert got == SC_COUNTS
    assert len({it.images[0] for it in b.items}) == 1560
    it = b.items[0]
    raw = json.loads((ANN/'sugarcrepe'/'add_att.json').read_text())['0']
    assert it.texts == [raw['caption'], raw['negative_caption']] and it.label == 0 and it.images == (raw['filename'],)


@need_ann
def test_valse_counts():
    b = load('valse', ANN)
    assert (len(b), b.meta['counts']['total_items'], b.meta['counts']['valid_items']) == (7702, 8782, 7702)
    got = {}
    for it in load('valse', ANN, valid_only=False).items:
        n, v = got.get(it.groups['instrument'], (0, 0)); got[it.groups['instrument']] = (n + 1, v + it.groups['valid'])
    assert got == VALSE_COUNTS
    assert all(it.groups['valid'] for it in b.items)


@need_ann
def test_aro_vg_relation_examples():
    b = load('vgr', ANN/'aro', file='examples_vg_relation.json')
    recs = json.loads((ANN/'aro'/'examples_vg_relation.json').read_text())
    assert len(b) == len(recs) == 5
    for it, r in zip(b.items, recs):
        assert it.images == ((r['image_path'], (r['bbox_x'], r['bbox_y'], r['bbox_w'], r['bbox_h'])),)
        assert it.texts == [r['false_caption'], r['true_caption']] and it.label == 1
        assert it.groups['relation'] == r['relation_name']
    sym = set(json.loads((ANN/'aro'/'symmetric_relations.json').read_text()))
    assert set(B.symmetric_relations()) == sym and len(sym) == 157
    kept = {r['relation_name'] for r in recs} - sym
    m = b.evaluate(oracle_sims(b, 'oracle'))
    assert m['n_groups'] == len(kept) and m['macro_acc'] == 100.
    assert b.evaluate(oracle_sims(b, 'tie'))['macro_acc'] == 0.  # ties go to index 0 = the false caption


@need_ann
def test_aro_crop_is_applied(tmp_path):
    b = load('vgr', ANN/'aro', tmp_path, file='examples_vg_relation.json')
    arr = np.zeros((400, 400, 3), np.uint8); arr[:, :200] = 255
    Image.fromarray(arr).save(tmp_path/'2410049.jpg')
    key = b.items[0].images[0]  # box (42, 0, 259, 354)
    im = b.images.load(key)
    assert im.size == (259, 354)
    a = np.asarray(im)
    assert a[:, :150].mean() > 250 and a[:, 170:].mean() < 5  # the white half ends at x = 200 - 42 = 158


@need_ann
def test_coco_order_counts_and_cache(tmp_path):
    calls = []
    def perturb(caps, seed):
        calls.append(len(caps)); return [[f'{c} {seed} {k}' for k in range(4)] for c in caps]
    b = load('coco_order', ANN, perturb=perturb, options_path=tmp_path/'opts.json')
    assert len(b) == 25010 and len({it.images[0] for it in b.items}) == 5000 and calls == [25010]
    assert all(len(it.texts) == 5 and it.label == 0 for it in b.items)
    b2 = load('coco_order', ANN, perturb=perturb, options_path=tmp_path/'opts.json')
    assert calls == [25010] and [it.texts for it in b2.items[:50]] == [it.texts for it in b.items[:50]]  # read from the cache
    b3 = load('coco_order', ANN, perturb=perturb, options_path=tmp_path/'opts.json', seed=2)
    assert calls == [25010, 25010]  # another seed is not served from a cache of seed 1
    assert b.evaluate(oracle_sims(b, 'tie'))['p_at_1'] == 100.  # ties go to index 0 = the original caption
    assert b.evaluate(oracle_sims(b, 'anti'))['p_at_1'] == 0.
    raw = json.loads((ANN/'coco'/'coco_karpathy_test.json').read_text())[0]
    assert b.items[0].texts[0] == B.pre_caption(raw['caption'][0])


@need_ann
def test_coco_order_real_negatives(tmp_path, monkeypatch):
    import hnvl.negatives  # noqa: F401  (the default Order perturbation)
    monkeypatch.setenv('HNVL_CACHE', str(tmp_path))
    b = load('coco_order', ANN, max_items=20, seed=1)
    p = Path(b.meta['options_path']); assert p.is_file() and p.parent.parent == tmp_path
    again = load('coco_order', ANN, max_items=20, seed=1)
    assert [it.texts for it in again.items] == [it.texts for it in b.items]
    assert all(len(it.texts) == 5 for it in b.items)
    assert any(it.texts[k] != it.texts[0] for it in b.items for k in range(1, 5))


@need_ann
def test_retrieval_counts():
    b = load('coco_retrieval', ANN)
    assert len(b) == 5000 and sum(len(it.texts) for it in b.items) == 25010
    assert sum(len(it.texts) == 6 for it in b.items) == 10


# ------------------------------------------------------------------------------------------ scoring rules (oracle)
@need_ann
@pytest.mark.parametrize('name', ['sugarcrepe', 'valse'])
def test_oracle_anti_tie_real(name):
    b = load(name, ANN)
    assert all(v == 100. for v in all_values(b.evaluate(oracle_sims(b, 'oracle'))))
    assert all(v == 0. for v in all_values(b.evaluate(oracle_sims(b, 'anti'))))
    assert all(v == 0. for v in all_values(b.evaluate(oracle_sims(b, 'tie'))))  # strict >: ties wrong
    m = b.evaluate(oracle_sims(b, 'oracle'))
    if name == 'sugarcrepe': assert {'replace', 'swap', 'add', 'replace_micro', 'swap_micro', 'add_micro', 'micro', 'mean_7'} <= set(m)
    else: assert {'avg_11', 'avg_7', 'micro'} <= set(m) and len(m['categories']) == 7


def _vga_records(n_a, n_b):
    r = dict(image_path='1.jpg', bbox_x=0, bbox_y=0, bbox_w=4, bbox_h=4, true_caption='the red car', false_caption='the blue car')
    return [dict(r, attributes=['red', 'blue'])] * n_a + [dict(r, attributes=['blue', 'red'])] * n_b


def test_vg_attribution_min_count_and_macro(tmp_path):
    (tmp_path/'visual_genome_attribution.json').write_text(json.dumps(_vga_records(25, 24) + _vga_records(0, 0)))
    b = load('vga', tmp_path)
    assert len(b) == 49
    # red_blue (25 items): 20 right; blue_red (24 items, dropped by the >= 25 rule): all right
    sims = [np.array([[0., 1.]])] * 20 + [np.array([[1., 0.]])] * 5 + [np.array([[0., 1.]])] * 24
    m = b.evaluate(sims)
    assert m['n_groups'] == 1 and m['n_groups_dropped'] == 1
    assert m['macro_acc'] == pytest.approx(80.) and m['micro_acc'] == pytest.approx(100 * 44 / 49)
    assert b.evaluate(oracle_sims(b, 'tie'))['macro_acc'] == 0.
    assert load('vga', tmp_path, min_count=24).evaluate(sims)['macro_acc'] == pytest.approx((80 + 100) / 2)


def test_macro_vs_micro_by_hand():
    mk = lambda s: Item('x.jpg', ['p', 'n'], 0, {'subset': s, 'category': B.SUGARCREPE_SUBSETS[s]})
    items = [mk('replace_obj')] * 4 + [mk('replace_att')] * 1 + [mk('replace_rel')] * 5
    right, wrong = np.array([[1., 0.]]), np.array([[0., 1.]])
    sims = [right] * 3 + [wrong] + [right] + [wrong] * 5  # obj 3/4, att 1/1, rel 0/5
    b = Benchmark('sugarcrepe', items, None, B._agg_sugarcrepe, '')
    m = b.evaluate(sims)
    assert m['replace'] == pytest.approx((75 + 100 + 0) / 3)  # mean of subsets
    assert m['replace_micro'] == pytest.approx(100 * 4 / 10)  # pooled
    iv = lambda s: Item('x.jpg', ['c', 'f'], 0, {'instrument': s, 'category': B.VALSE_INSTRUMENTS[s]})
    items = [iv('actant-swap'), iv('action-replacement'), iv('action-replacement'), iv('foil-it')]
    m = Benchmark('valse', items, None, B._agg_valse, '').evaluate([right, right, wrong, wrong])
    assert m['avg_11'] == pytest.approx((100 + 50 + 0) / 3)
    assert m['avg_7'] == pytest.approx(((100 + 50) / 2 + 0) / 2)
    assert m['micro'] == pytest.approx(50.)


def test_winoground_and_vl_checklist(tmp_path):
    (tmp_path/'examples.jsonl').write_text('\n'.join(json.dumps(dict(id=i, caption_0=f'a{i}', caption_1=f'b{i}', image_0=f'ex_{i}_img_0',
                                                                     image_1=f'ex_{i}_img_1', collapsed_tag='Object')) for i in range(4)))
    b = load('winoground', tmp_path)
    assert len(b) == 4 and b.items[0].images == ('ex_0_img_0.png', 'ex_0_img_1.png')
    for mode, want in [('oracle', 100.), ('anti', 0.), ('tie', 0.)]:
        m = b.evaluate(oracle_sims(b, mode)); assert (m['text'], m['image'], m['group']) == (want,) * 3
    # rows = images, columns = captions. Caption 0 is the best caption for both images (text wrong), yet each
    # caption prefers its own image (image right)
    m = b.evaluate([np.array([[.9, .1], [.8, .5]])] * 4)
    assert (m['text'], m['image'], m['group']) == (0., 100., 0.)
    m = b.evaluate([np.array([[.9, .8], [.1, .5]])] * 4)  # the transpose: text right, image wrong
    assert (m['text'], m['image'], m['group']) == (100., 0., 0.)
    d = tmp_path/'vlc'/'Relation'/'vg'; d.mkdir(parents=True)
    (d/'action.json').write_text(json.dumps([[f'{i}.jpg', {'POS': [f'p{i}', 'x'], 'NEG': [f'n{i}']}] for i in range(5)]))
    v = load('vl_checklist', tmp_path/'vlc')
    assert len(v) == 5 and v.items[0].texts == ['p0', 'n0']
    assert v.evaluate(oracle_sims(v, 'oracle'))['Relation'] == 100. and v.evaluate(oracle_sims(v, 'tie'))['micro'] == 0.
    assert len(load('vl_checklist', tmp_path/'vlc', max_per_file=3)) == 3


def test_retrieval_oracle_anti(tmp_path):
    data = [{'image': f'val2014/{i}.jpg', 'caption': [f'caption {i} number {k}' for k in range(5)]} for i in range(15)]
    (tmp_path/'coco_karpathy_test.json').write_text(json.dumps(data))
    b = load('coco_retrieval', tmp_path)
    eye = torch.eye(15)
    m = b.evaluate(image_feats=eye, text_feats=eye.repeat_interleave(5, 0))
    assert all(m[k] == 100. for k in m if 'R@' in k)
    m = b.evaluate(image_feats=eye, text_feats=(-eye).repeat_interleave(5, 0))  # own captions are the least similar
    assert all(m[k] == 0. for k in m if 'R@' in k)
    assert m['n_queries_t2i'] == 75


# ----------------------------------------------------------------------------------------- scorer with a fake model
class CountingEncoder(torch.nn.Module):
    "Stand-in model: image feature = mean colour (3-d), text feature = hashed; counts rows it encodes."
    def __init__(self): super().__init__(); self.img_rows, self.txt_rows, self.img_calls = 0, 0, 0
    def preprocess(self, im): return torch.tensor(np.asarray(im.resize((4, 4)), np.float32).mean((0, 1)) / 255 + 0.01)
    def tokenizer(self, texts): return torch.tensor([[sum(map(ord, t)) % 97, len(t)] for t in texts], dtype=torch.float32)
    def encode_image(self, x): self.img_rows += len(x); self.img_calls += 1; return x
    def encode_text(self, t): self.txt_rows += len(t); return torch.stack([t[:, 0], t[:, 1], torch.ones(len(t))], 1)


class AngleEncoder(torch.nn.Module):
    "Stand-in model: an image's grey level and a prompt's first word are angles in degrees; features are unit vectors at them."
    def preprocess(self, im): return torch.tensor([float(np.asarray(im, np.float32).mean())])
    def tokenizer(self, texts): return torch.tensor([[float(t.split()[0])] for t in texts])
    def encode_image(self, x): a = torch.deg2rad(x[:, 0]); return torch.stack([a.cos(), a.sin()], 1)
    encode_text = encode_image


def _render(root, names, size=32):
    rng = np.random.default_rng(0)
    for n in names:
        p = root/n; p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p, format='JPEG')


def test_missing_images_error_and_skip(tmp_path):
    items = [Item(f'{i}.jpg', ['a', 'b'], 0, {'subset': 'add_att', 'category': 'add'}) for i in range(6)]
    _render(tmp_path, ['0.jpg', '1.jpg', '2.jpg'])
    b = Benchmark('sugarcrepe', items, B.FolderImages(tmp_path), B._agg_sugarcrepe, '')
    with pytest.raises(FileNotFoundError) as e: score(CountingEncoder(), b)
    assert '3 of 6 images are missing' in str(e.value) and str(tmp_path/'3.jpg') in str(e.value)
    enc = CountingEncoder()
    r = score(enc, b, skip_missing=True)
    assert (r.counts['items'], r.counts['scored'], r.counts['missing_items'], r.counts['missing_images']) == (6, 3, 3, 3)
    assert enc.img_rows == 3


def test_zeroshot_folder(tmp_path):
    for c in ('cat', 'dog'):
        _render(tmp_path/'ds', [f'{c}/{i}.jpg' for i in range(3)])
    b = load('zeroshot', tmp_path/'ds', templates=['a photo of a {}.', 'a {} thing'])
    assert len(b) == 6 and b.texts == ['a photo of a cat.', 'a cat thing', 'a photo of a dog.', 'a dog thing']
    enc = CountingEncoder(); r = score(enc, b)
    assert enc.img_rows == 6 and enc.txt_rows == 4 and 0 <= r.metrics['top1'] <= 100 and r.metrics['top5'] == 100.
    # exact values: 7 classes whose images and prompts are angles (10*j degrees), so every similarity is known
    for j in range(7):
        (tmp_path/'ang'/f'c{j}').mkdir(parents=True); Image.new('RGB', (4, 4), (10 * j,) * 3).save(tmp_path/'ang'/f'c{j}'/'0.png')
    right = load('zeroshot', tmp_path/'ang', templates=['{} degrees'], classnames={f'c{j}': str(10 * j) for j in range(7)})
    m = score(AngleEncoder(), right).metrics
    assert (m['top1'], m['top5'], m['mean_per_class']) == (100., 100., 100.)
    # reversed names: image j's own prompt sits at 10*(6-j) degrees, |20j - 60| away. Only j = 3 is top-1; j = 2, 4 (20
    # degrees off, ranks 4-5) are top-5; j = 0, 1, 5, 6 (40 or 60 degrees off, rank >= 6) are not
    m = score(AngleEncoder(), load('zeroshot', tmp_path/'ang', templates=['{} degrees'],
                                   classnames={f'c{j}': str(10 * (6 - j)) for j in range(7)})).metrics
    assert m['top1'] == pytest.approx(100 / 7) and m['top5'] == pytest.approx(300 / 7) and m['mean_per_class'] == pytest.approx(100 / 7)


def test_eval_resolves_aliases_for_image_roots(tmp_path):
    "`--benchmarks vgr --image_roots vgr=... / vg_relation=...` reads images from that root, not from data_root."
    rec = dict(image_path='1.jpg', bbox_x=0, bbox_y=0, bbox_w=8, bbox_h=8, relation_name='on', true_caption='a on b', false_caption='b on a')
    (tmp_path/'ann').mkdir(); (tmp_path/'ann'/'visual_genome_relation.json').write_text(json.dumps([rec]))
    _render(tmp_path/'imgs', ['1.jpg'])
    for bench, roots in [('vgr', 'vg_relation'), ('VG-R', 'vgr'), ('vg_relation', 'aro_vgr')]:
        out = tmp_path/f'out_{bench}'
        doc = B.hnvl_eval(model='hnvl-tiny', benchmarks=bench, data_root=str(tmp_path/'ann'), image_roots=f'{roots}={tmp_path/"imgs"}',
                          out=str(out), device='cpu')
        assert doc['benchmarks']['vg_relation']['counts']['scored'] == 1
        assert doc['settings']['image_roots'] == {'vg_relation': str(tmp_path/'imgs')}


def test_imagenet_names_from_open_clip():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES
    assert len(IMAGENET_CLASSNAMES) == 1000 and len(OPENAI_IMAGENET_TEMPLATES) == 80


# ------------------------------------------------------------------------------------------ end to end, tiny model
def _tiny():
    from hnvl.model import create_model
    torch.manual_seed(0)
    return create_model('hnvl-tiny')


def _count_calls(bundle):
    rows = {'img': 0, 'txt': 0}
    ei, et = bundle.model.encode_image, bundle.model.encode_text
    def enc_i(x, *a, **k): rows['img'] += len(x); return ei(x, *a, **k)
    def enc_t(x, *a, **k): rows['txt'] += len(x); return et(x, *a, **k)
    bundle.model.encode_image, bundle.model.encode_text = enc_i, enc_t
    return rows


@need_ann
def test_end_to_end_tiny_sugarcrepe_valse(tmp_path):
    bundle = _tiny(); torch.set_num_threads(1)
    sc, va = load('sugarcrepe', ANN, tmp_path), load('valse', ANN, tmp_path)
    sc_imgs = {it.images[0] for it in sc.items}
    shared = [it for it in va.items if it.images[0] in sc_imgs][:4]  # VALSE plurals/relations also use COCO val2017
    assert len(shared) == 4
    sc = dataclasses.replace(sc, items=[it for s in B.SUGARCREPE_SUBSETS for it in [x for x in sc.items if x.groups['subset'] == s][:12]]
                             + [x for x in sc.items if x.images[0] in {v.images[0] for v in shared}])
    va = dataclasses.replace(va, items=[it for it in va.items if it.groups['instrument'] in ('plurals', 'relations', 'existence')][:60] + shared)
    names = {k for b in (sc, va) for it in b.items for k in it.images}
    _render(tmp_path, sorted(names))
    rows = _count_calls(bundle)
    cache = {}
    r1 = score(bundle, sc, batch_size=32, cache=cache)
    n_sc_img = len({k for it in sc.items for k in it.images}); n_sc_txt = len({t for it in sc.items for t in it.texts})
    assert (rows['img'], rows['txt']) == (n_sc_img, n_sc_txt)  # every distinct image / caption exactly once
    assert r1.counts['images'] == n_sc_img and r1.counts['scored'] == len(sc) > 84
    r2 = score(bundle, va, batch_size=32, cache=cache)
    assert rows['img'] == len(names)  # shared images are served from the cache
    for m in (r1.metrics, r2.metrics):
        assert all(0 <= v <= 100 for v in scalars(m).values())
    # the per-item table matches a direct computation from the model's normalised features
    it = sc.items[0]
    x = torch.stack([bundle.preprocess(sc.images.load(it.images[0]))])
    with torch.no_grad():
        f = torch.nn.functional.normalize(bundle.model.encode_image(x), dim=-1)
        t = torch.nn.functional.normalize(bundle.model.encode_text(bundle.tokenizer(it.texts)), dim=-1)
    np.testing.assert_allclose(r1.sims[0], (f @ t.T).numpy(), atol=1e-5)


def test_from_task_shapes_world():
    from hnvl import data
    bundle = _tiny()
    cfg = data.WorldConfig()
    for name in ('attribute_swap', 'order', 'retrieval'):
        task = data.make_task(cfg, name, n=16, seed=0)
        b = from_task(task)
        assert len(b) == 16
        rows = _count_calls(bundle)
        r = score(bundle, b)
        assert rows['img'] == len({d['image'] for d in task.items})
        vals = scalars(r.metrics)
        assert vals and all(0 <= v <= 100 for v in vals.values())
        if name == 'retrieval': assert {'i2t_R@1', 't2i_R@1'} <= set(r.metrics)
        else:
            assert b.evaluate(oracle_sims(b, 'oracle'))['acc'] == 100. and b.evaluate(oracle_sims(b, 'anti'))['acc'] == 0.
            assert b.evaluate(oracle_sims(b, 'tie'))['acc'] == (100. if name == 'order' else 0.)


def test_from_task_retrieval_equivalent_captions():
    from types import SimpleNamespace
    imgs = np.zeros((3, 8, 8, 3), np.uint8)
    task = SimpleNamespace(name='retrieval', images=imgs, items=[dict(image=0, texts=['a left of b'], label=0, key='k1'),
                                                                 dict(image=1, texts=['b right of a'], label=0, key='k1'),
                                                                 dict(image=2, texts=['c above d'], label=0, key='k2')])
    b = from_task(task)
    # image 0 is closest to the text of image 1 — an equivalent caption of the same scene, so it is a hit
    m = b.evaluate(image_feats=torch.tensor([[0., 1.], [1., 0.], [-1., 0.]]), text_feats=torch.tensor([[1., 0.], [0., 1.], [-1., 0.]]))
    assert m['i2t_R@1'] == 100. and m['t2i_R@1'] == 100.


@need_ann
def test_hnvl_eval_cli(tmp_path, monkeypatch):
    from hnvl import model
    root = tmp_path/'data'; (root/'sugarcrepe').mkdir(parents=True)
    for s in B.SUGARCREPE_SUBSETS:
        d = json.loads((ANN/'sugarcrepe'/f'{s}.json').read_text())
        (root/'sugarcrepe'/f'{s}.json').write_text(json.dumps({k: d[k] for k in list(d)[:3]}))
    b = load('sugarcrepe', root)
    names = sorted({it.images[0] for it in b.items})
    _render(root/'sugarcrepe'/'images', names[:-1])  # one image missing
    with pytest.raises(FileNotFoundError, match='1 of'):
        B.hnvl_eval(model='hnvl-tiny', benchmarks='sugarcrepe', data_root=str(root), out=str(tmp_path/'out'), device='cpu')
    doc = B.hnvl_eval(model='hnvl-tiny', benchmarks='sugarcrepe', data_root=str(root), out=str(tmp_path/'out'), device='cpu',
                      skip_missing=True)
    res = json.loads((tmp_path/'out'/'results.json').read_text())
    sc = res['benchmarks']['sugarcrepe']
    assert sc['counts']['missing_images'] == 1 and sc['counts']['items'] == 21 and sc['counts']['scored'] < 21
    assert res['model']['activation'] in ('gelu', 'quick_gelu') and 'strictly' in sc['conventions']
    assert {'replace', 'swap', 'add', 'micro'} <= set(sc['metrics'])
    # the console entry point parses dashed flags
    import sys
    argv = ['hnvl_eval', '--benchmarks', 'sugarcrepe', '--data-root', str(root), '--out', str(tmp_path/'out2'), '--device', 'cpu',
            '--skip-missing']
    old = sys.argv; sys.argv = argv
    try: B.hnvl_eval()
    finally: sys.argv = old
    assert json.loads((tmp_path/'out2'/'results.json').read_text())['settings']['skip_missing'] is True
    # so does the installed script's function (settings.ini), which returns nothing (exit status 0)
    sys.argv = [a.replace('out2', 'out3') for a in argv]
    try: assert B._cli() is None
    finally: sys.argv = old
    assert json.loads((tmp_path/'out3'/'results.json').read_text())['settings']['skip_missing'] is True
    md = (tmp_path/'out'/'results.md').read_text()
    assert '| sugarcrepe/replace |' in md and '80.2 | 85.0 | 87.0 |' in md
    # activation guard (its refusal is checked in nbs/07_benchmarks.ipynb): a mismatch is scored only when allowed
    bundle = model.create_model('hnvl-tiny'); ck = tmp_path/'ck.pt'
    model.save_model(bundle, ck)
    other = dataclasses.replace(bundle, quick_gelu=not bundle.quick_gelu, model=None)
    assert B.check_activation(other, ck, allow_mismatch=True) == ('quick_gelu' if other.quick_gelu else 'gelu')
    # a bundle built from that checkpoint carries its record, so the guard does not read the file a second time
    loaded = model.create_model('hnvl-tiny', checkpoint=ck)
    assert loaded.meta.get('quick_gelu') == bundle.quick_gelu
    def no_read(path): raise AssertionError(f"checkpoint read again: {path}")
    monkeypatch.setattr(model, 'checkpoint_meta', no_read)
    assert B.check_activation(loaded, ck) == ('quick_gelu' if bundle.quick_gelu else 'gelu')
    with pytest.raises(AssertionError, match='read again'): B.check_activation(other, ck)   # weights from elsewhere: read
