"Tests of hnvl.data (the shapes world, its evaluation tasks, the array dataset and the collate) and hnvl.coco (the COCO dataset)."
import json, re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import hnvl.data as D
from hnvl.data import (WorldConfig, make_world, world_tasks, make_task, retrieval_targets, render_scenes,
                       ArrayHardNegatives, collate_hard_negatives, TASKS)
from hnvl.coco import CocoHardNegatives

CFG = WorldConfig()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv('HNVL_CACHE', str(tmp_path / 'cache'))


# ---- an independent reader of the world's captions (does not use hnvl.data's helpers) ----
_REL = {'to the left of': 'L', 'left of': 'L', 'to the right of': 'R', 'right of': 'R', 'above': 'A', 'over': 'A',
        'below': 'B', 'under': 'B'}
_CAP = re.compile(r"^(a|the) (\w+) (\w+) (\w+) (?:is )?(" + '|'.join(sorted(_REL, key=len, reverse=True)) + r") (a|the) (\w+) (\w+) (\w+)$")


def parse(caption):
    m = _CAP.match(caption)
    assert m, f"not a world caption: {caption!r}"
    return (m[2], m[3], m[4]), _REL[m[5]], (m[7], m[8], m[9])


def geom(a, b, rel):
    "Reference relation: a rel b under the dominant-axis rule (y grows downwards)."
    dx, dy = b['x'] - a['x'], b['y'] - a['y']
    return {'L': dx > abs(dy), 'R': -dx > abs(dy), 'A': dy > abs(dx), 'B': -dy > abs(dx)}[rel]


def true_in(scene, caption):
    s, rel, t = parse(caption)
    objs = scene['objects']
    key = lambda o: (o['size'], o['color'], o['shape'])
    return any(i != j and key(a) == s and key(b) == t and geom(a, b, rel)
               for i, a in enumerate(objs) for j, b in enumerate(objs))


# ---- world ----
def test_world_deterministic_by_seed():
    a, b = make_world(CFG, 64, 'train', seed=1, cache=False), make_world(CFG, 64, 'train', seed=1, cache=False)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions and a.scenes == b.scenes
    c = make_world(CFG, 64, 'train', seed=2, cache=False)
    assert not np.array_equal(a.images, c.images) and a.captions != c.captions
    v = make_world(CFG, 64, 'val', seed=1, cache=False)
    assert v.captions != a.captions
    assert a.images.dtype == np.uint8 and a.images.shape == (64, 32, 32, 3)


def test_cache_hit_identical(tmp_path, monkeypatch):
    w1 = make_world(CFG, 50, 'test', seed=4)
    path = D.world_cache_path(CFG, 50, 'test', 4)
    assert path.exists() and path.suffix == '.npz' and Path(path).is_relative_to(tmp_path / 'cache' / 'worlds')
    with np.load(path, allow_pickle=False) as z: assert set(z.files) == {'images', 'captions', 'scenes'}
    monkeypatch.setattr(D, 'render_scenes', lambda *a, **k: pytest.fail('cache miss: rendered again'))
    w2 = make_world(CFG, 50, 'test', seed=4)
    assert np.array_equal(w1.images, w2.images) and w1.captions == w2.captions and w1.scenes == w2.scenes
    assert D.world_cache_path(WorldConfig(share_prob=0.1), 50, 'test', 4) != path  # config is part of the key


def test_captions_are_true_and_phrasings_equivalent():
    w = make_world(WorldConfig(n_objects=3), 200, 'train', cache=False)
    for i in range(len(w)):
        assert w.captions[i] in w.all_captions(i)
        for c in w.all_captions(i): assert true_in(w.scenes[i], c), (c, w.scenes[i])
        assert len(w.captions[i].split()) <= 14  # fits a 16-token context with SOT/EOT
    assert any(len(s['objects']) == 3 for s in w.scenes)


def test_heldout_combos_only_in_test():
    held = set(CFG.heldout)
    combos = lambda w: Counter((o['color'], o['shape']) for s in w.scenes for o in s['objects'])
    for split in ('train', 'val'):
        w = make_world(WorldConfig(n_objects=3), 2000, split, cache=False)
        assert not set(combos(w)) & held
        assert not any(s['heldout'] for s in w.scenes)
    t = make_world(CFG, 1000, 'test', cache=False)
    assert set(combos(t)) & held == held  # every held-out combination shows up in test
    frac = np.mean([s['heldout'] for s in t.scenes])
    assert 0.4 < frac < 0.6, frac


def test_binding_is_not_free():
    "Outlines in the other object's colour and shared attributes are common, as designed."
    w = make_world(CFG, 2000, 'train', cache=False)
    pairs = [s['objects'][:2] for s in w.scenes]
    crossed = np.mean([a.get('outline') == b['color'] for a, b in pairs])
    shared = np.mean([a['color'] == b['color'] or a['shape'] == b['shape'] for a, b in pairs])
    assert crossed > 0.25 and shared > 0.4, (crossed, shared)


def test_render_pixels():
    sc = {'objects': [dict(size='large', color='red', shape='square', x=8., y=16., r=6.5, outline='blue'),
                      dict(size='large', color='green', shape='circle', x=24., y=16., r=6.5, outline=None)],
          'subject': 0, 'relation': 'left of', 'object': 1}
    im = render_scenes(WorldConfig(noise=0, color_jitter=0), [sc])[0].astype(int)
    red, blue, green = (np.array(D.COLORS[c]) for c in ('red', 'blue', 'green'))
    assert np.abs(im[16, 8] - red).max() <= 1       # fill at the centre
    assert np.abs(im[16, 3] - blue).max() <= 1      # outline on the square's left edge (8 - 0.82*6.5 = 2.67) ...
    assert np.abs(im[16, 4] - blue).max() <= 1      # ... two pixels thick (0.3 * 6.5 = 1.95 -> 2)
    assert np.abs(im[16, 5] - red).max() <= 1
    assert np.abs(im[16, 24] - green).max() <= 1
    assert im[1, 16].max() < 60                     # background


# ---- tasks ----
@pytest.fixture(scope='module')
def tasks():
    return world_tasks(CFG, n_per_task=60, seed=0)


def test_tasks_shapes_and_true_caption_differs(tasks):
    assert set(tasks) == set(TASKS)
    for name, task in tasks.items():
        assert len(task.items) == 60 and task.images.shape == (60, 32, 32, 3), name
        for it in task.items:
            assert set(it) >= {'image', 'texts', 'label', 'group'}
            assert 0 <= it['label'] < len(it['texts']) and 0 <= it['image'] < len(task.images)
            true = it['texts'][it['label']]
            if name != 'retrieval':
                assert all(t != true for k, t in enumerate(it['texts']) if k != it['label']), (name, it)
            assert len(set(it['texts'])) == len(it['texts'])
    assert {len(it['texts']) for it in tasks['order'].items} == {5}
    labels = Counter(it['label'] for it in tasks['relation_swap'].items)
    assert labels[0] > 10 and labels[1] > 10  # options shuffled


def test_same_bag_of_words(tasks):
    for name in ('relation_swap', 'attribute_swap', 'swap_obj', 'swap_att', 'order'):
        for it in tasks[name].items:
            bags = {tuple(sorted(t.split())) for t in it['texts']}
            assert len(bags) == 1, (name, it['texts'])


def test_negatives_are_false_in_their_image(tasks):
    "Rebuild each task's scenes from the seeded stream and check every caption with the independent reader."
    pal = {c: np.array(D.COLORS[c]) for c in CFG.colors}
    nearest = lambda px: min(pal, key=lambda c: np.abs(pal[c] - px).sum())
    for name in ('relation_swap', 'replace_att', 'replace_obj', 'replace_rel', 'swap_obj', 'swap_att', 'order'):
        task = tasks[name]
        assert len(task.scenes) == len(task.items)
        for it in task.items:
            sc, img = task.scenes[it['image']], task.images[it['image']].astype(int)
            for o in sc['objects']:  # the image shows the scene: fill colour at each object's centre
                if o['shape'] != 'triangle': assert nearest(img[int(o['y']), int(o['x'])]) == o['color'], (o, img[int(o['y']), int(o['x'])])
            for k, t in enumerate(it['texts']):
                if name == 'order' and k != it['label']: continue  # shuffles are not captions
                assert true_in(sc, t) == (k == it['label']), (name, t, sc)


def test_no_text_only_giveaways(tasks):
    held = set(CFG.heldout)
    for name in ('replace_att', 'replace_obj', 'swap_obj', 'swap_att'):
        for it in tasks[name].items:
            true = parse(it['texts'][it['label']])
            true_combos = {(true[0][1], true[0][2]), (true[2][1], true[2][2])}
            for k, t in enumerate(it['texts']):
                s, _, o = parse(t)
                assert s != o, t  # the world never describes two identical objects
                for d in (s, o): assert (d[1], d[2]) not in held or (d[1], d[2]) in true_combos, t


def test_retrieval_equivalence(tasks):
    task = tasks['retrieval']
    texts, i2t, t2i = retrieval_targets(task)
    for it in task.items:
        triples = {parse(t) for t in it['texts']}
        inv = {'L': 'R', 'R': 'L', 'A': 'B', 'B': 'A'}
        s, rel, o = next(iter(triples))
        assert (o, inv[rel], s) in triples and (s, rel, o) in triples  # "A left of B" and "B right of A" both listed
        assert {(a, r, b) if r in 'LA' else (b, inv[r], a) for a, r, b in triples} == {(s, rel, o) if rel in 'LA' else (o, inv[rel], s)}
        for t in it['texts']:
            j = texts.index(t)
            assert j in i2t[it['image']] and it['image'] in t2i[j]
    # images with the same description accept each other's captions
    keys = [it['key'] for it in task.items]
    for i, it in enumerate(task.items):
        assert set(t2i[texts.index(it['texts'][0])]) == {k for k, key in enumerate(keys) if key == it['key']}


# ---- datasets and collate ----
def fake_negs(caps):
    negs = [[c.replace('left', 'right') if 'left' in c else '', c.replace(' a ', ' the ', 1) if ' a ' in c else ''] for c in caps]
    return SimpleNamespace(types=['relation', 'adjective'], negatives=negs, mask=np.array([[a != '', b != ''] for a, b in negs]))


def tok(texts):  # a stand-in tokenizer: words -> ids, padded to 16
    vocab = {}
    rows = [[1] + [vocab.setdefault(w, len(vocab) + 3) for w in t.split()] + [2] for t in texts]
    return torch.tensor([r + [0] * (16 - len(r)) for r in rows])


def test_array_dataset_and_collate_layout():
    w = make_world(CFG, 6, cache=False)
    negs = fake_negs(w.captions)
    mean, std = (0.48, 0.45, 0.40), (0.27, 0.26, 0.28)
    ds = ArrayHardNegatives(w.images, w.captions, negs, mean, std)
    x, c, n, m = ds[3]
    ref = (torch.tensor(w.images[3], dtype=torch.float32).permute(2, 0, 1) / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert torch.allclose(x, ref, atol=1e-5) and c == w.captions[3] and n == negs.negatives[3]
    assert m.dtype == torch.bool and m.tolist() == negs.mask[3].tolist()
    B, K = 4, 2
    out = collate_hard_negatives([ds[i] for i in range(B)], tok)
    assert out['images'].shape == (B, 3, 32, 32) and out['texts'].shape == (B + B * K, 16) and out['mask'].shape == (B, K)
    assert out['texts'].dtype == torch.long and out['mask'].dtype == torch.bool
    flat = w.captions[:B] + [negs.negatives[i][k] if negs.mask[i, k] else '' for i in range(B) for k in range(K)]
    assert torch.equal(out['texts'], tok(flat))  # captions first, then negative k of caption i at row B + i*K + k
    fast = ds.batch(range(B), tok)
    for k in out: assert torch.equal(out[k], fast[k])


def test_collate_with_clip_tokenizer():
    open_clip = pytest.importorskip('open_clip')
    t = open_clip.get_tokenizer('ViT-B-32')
    w = make_world(CFG, 3, cache=False)
    ds = ArrayHardNegatives(w.images, w.captions, fake_negs(w.captions), (0.5,) * 3, (0.5,) * 3)
    out = collate_hard_negatives([ds[i] for i in range(3)], t)
    assert out['texts'].shape == (3 + 3 * 2, 77)
    invalid = [3 + i * 2 + k for i in range(3) for k in range(2) if not ds.mask[i, k]]
    for r in invalid: assert out['texts'][r, 2:].eq(0).all() and out['texts'][r, 1] == 49407  # "" -> SOT EOT


def test_with_real_negatives():
    neg = pytest.importorskip('hnvl.negatives')
    w = make_world(CFG, 32, cache=False)
    negs = neg.make_negatives(list(w.captions), recipe='ceclip', seed=0)
    ds = ArrayHardNegatives(w.images, w.captions, negs, (0.5,) * 3, (0.5,) * 3)
    out = collate_hard_negatives([ds[i] for i in range(8)], tok)
    assert out['texts'].shape[0] == 8 + 8 * len(negs.types) and out['mask'].shape == (8, len(negs.types))


# ---- COCO (hnvl.coco) ----
OLD_DATA_ALL = ['COLORS', 'SHAPES', 'SIZES', 'RELATIONS', 'INVERSE', 'TASKS', 'WorldConfig', 'scene_key', 'scene_captions',
                'render_scenes', 'World', 'world_cache_path', 'make_world', 'Task', 'make_task', 'world_tasks',
                'retrieval_targets', 'HardNegativeDataset', 'ArrayHardNegatives', 'collate_hard_negatives',
                'CocoHardNegatives']


def test_moved_names_still_import_from_data():
    import importlib, subprocess, sys
    for n in OLD_DATA_ALL: exec(f'from hnvl.data import {n}', {})
    assert set(OLD_DATA_ALL) <= set(D.__all__)
    assert D.CocoHardNegatives is CocoHardNegatives and D._read_coco is importlib.import_module('hnvl.coco')._read_coco
    # hnvl.data alone does not import hnvl.coco; the forward imports it on first use, in either import order
    code = ("import sys, hnvl.data as D; assert 'hnvl.coco' not in sys.modules; "
            "from hnvl.data import CocoHardNegatives as C; import hnvl.coco; assert C is hnvl.coco.CocoHardNegatives; "
            "from hnvl.data import *; assert CocoHardNegatives is C")
    subprocess.run([sys.executable, '-c', code], check=True)
    subprocess.run([sys.executable, '-c', 'import hnvl.coco, hnvl.data; assert hnvl.data.CocoHardNegatives is hnvl.coco.CocoHardNegatives'], check=True)


CAPS = ['a red circle left of a blue square', 'a blue square right of a red circle',
        'a green cross above a white circle', 'a yellow square below a red circle']


def tiny_coco(d):
    (d / 'img').mkdir()
    rng = np.random.default_rng(0)
    for k in (1, 2): Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d / 'img' / f'{k:012d}.jpg')
    ann = {'images': [{'id': k, 'file_name': f'{k:012d}.jpg'} for k in (1, 2, 3)],
           'annotations': [{'id': 10 + i, 'image_id': im, 'caption': c + ' '} for i, (im, c) in enumerate(zip((1, 1, 2, 3), CAPS))]}
    (d / 'captions_train2014.json').write_text(json.dumps(ann))
    return d / 'captions_train2014.json', d / 'img'


def pre(im): return torch.from_numpy(np.array(im.resize((32, 32)))).permute(2, 0, 1).float() / 255


def negs_source(tmp_path, caps):
    "A negatives cache written by hnvl.negatives when it is there, else the in-memory pair CocoHardNegatives accepts."
    try: from hnvl.negatives_io import save_negatives; from hnvl.negatives import Negatives
    except ImportError: return (caps, fake_negs(caps))
    n = fake_negs(caps)
    return save_negatives(tmp_path / 'negs.jsonl.gz', caps, Negatives(n.types, n.negatives, n.mask), source='test')


def test_coco_skip_missing_counts(tmp_path):
    ann, root = tiny_coco(tmp_path)
    ds = CocoHardNegatives(ann, root, negs_source(tmp_path, CAPS[::-1]), pre, skip_missing=True)  # matched by text
    assert (len(ds), ds.skipped, ds.skipped_captions, ds.skipped_files) == (3, 1, 1, ['000000000003.jpg'])
    x, c, n, m = ds[1]
    assert x.shape == (3, 32, 32) and c == CAPS[1] and n == fake_negs([CAPS[1]]).negatives[0]
    out = collate_hard_negatives([ds[i] for i in range(3)], tok)
    assert out['images'].shape == (3, 3, 32, 32) and out['texts'].shape == (3 + 3 * 2, 16) and out['mask'].shape == (3, 2)


def test_coco_unreadable_image_named_at_load(tmp_path):
    ann, root = tiny_coco(tmp_path)
    (root / '000000000003.jpg').write_bytes(b'not an image')
    ds = CocoHardNegatives(ann, root, (CAPS, fake_negs(CAPS)), pre)
    with pytest.raises(ValueError, match='000000000003.jpg'): ds[3]
    assert CocoHardNegatives(ann, root, (CAPS, fake_negs(CAPS)), pre, skip_missing=True).skipped == 1


def test_canonical_phrasings_tasks():
    "`inverse_phrasings=False`: captions and task texts name the pair only in the sampled direction."
    cfg = WorldConfig(relations=('left of', 'above'), inverse_phrasings=False)
    w = make_world(cfg, 100, cache=False)
    assert all(parse(c)[1] in 'LA' for c in w.captions)
    for name in ('relation_swap', 'replace_rel', 'retrieval'):
        for it in make_task(cfg, name, n=20, seed=0).items:
            assert all(parse(t)[1] in 'LA' for t in it['texts']), (name, it['texts'])
    default = make_world(WorldConfig(), 300, cache=False)
    assert {parse(c)[1] for c in default.captions} == set('LRAB')  # the default reads pairs in both directions


def test_fixed_wording_tasks():
    "`varied_wording=False`: captions and every relational task text use the one template ('a A <rel> a B')."
    cfg = WorldConfig(varied_wording=False)
    templates = {r: ph[0] for r, ph in D.RELATIONS.items()}
    def ok(t):
        return t.startswith('a ') and ' the ' not in t.replace(' to the ', ' ') and ' is ' not in f' {t} ' \
            and any(f' {p} a ' in t for p in templates.values())
    w = make_world(cfg, 200, cache=False)
    assert all(ok(c) for c in w.captions), [c for c in w.captions if not ok(c)][:3]
    for name in ('relation_swap', 'replace_rel', 'replace_att', 'order', 'retrieval'):
        items = make_task(cfg, name, n=20, seed=0).items
        texts = [it['texts'][0] for it in items] if name == 'order' else [t for it in items for t in it['texts']]  # shuffles are not captions
        assert all(ok(t) for t in texts), (name, [t for t in texts if not ok(t)][:3])
    att = [t for it in make_task(cfg, 'attribute_swap', n=20, seed=0).items for t in it['texts']]
    assert all(t.startswith('a ') and ' and a ' in t for t in att), att[:3]
    varied = make_world(WorldConfig(), 300, cache=False)
    assert not all(ok(c) for c in varied.captions)  # the default keeps every wording
