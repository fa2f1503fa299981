"""The COCO image cache (hnvl.coco): building it (index, resume, workers), reading it through CocoHardNegatives with
the same crops as the JPEGs, training on it without a new option, stale caches, and the `hnvl_image_cache` script's
one-line errors. Data: a COCO-shaped folder rendered here (`synthetic_coco`), nothing downloaded."""
import json, math, os, pickle, subprocess, sys, warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hnvl.coco as C
from hnvl.coco import CocoHardNegatives, ImageCache, build_image_cache, hnvl_image_cache, synthetic_coco
from hnvl.core import console_entry

ROOT = Path(__file__).resolve().parents[1]
STD = torch.tensor((0.26862954, 0.26130258, 0.27577711))[:, None, None]  # CLIP's: normalised -> [0, 1] units


def err(a, b): return float(((a - b) * STD).abs().mean())


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    "24 rendered JPEGs of six sizes (4:3, 3:4, 1:1, 16:9, 1:3), 2-5 captions each, and their cache at S = 48."
    d = tmp_path_factory.mktemp('coco')
    ann, root = synthetic_coco(d, n=24)
    return ann, root, build_image_cache(ann, root, image_size=32, progress=False)


@pytest.fixture(scope='module')
def tiny():
    from hnvl.model import create_model
    return create_model('tiny')


def test_index_describes_every_image(coco):
    ann, root, out = coco
    idx, j = json.loads((out/'index.json').read_text()), json.loads(ann.read_text())
    file_of = {im['id']: im['file_name'] for im in j['images']}
    names = list(dict.fromkeys(file_of[a['image_id']] for a in j['annotations']))  # first-caption order
    assert list(idx['files']) == names and list(idx['files'].values()) == list(range(24))
    assert (idx['n'], idx['size'], idx['image_size'], idx['unreadable']) == (24, 48, 32, {})
    pix = np.load(out/'images.npy', mmap_mode='r')
    assert pix.shape == (24, 48, 48, 3) and pix.dtype == np.uint8
    for f, r in idx['files'].items():
        h, w, H, W, nbytes = idx['rows'][r]
        assert (W, H) == Image.open(root/f).size and nbytes == (root/f).stat().st_size
        assert max(h, w) == min(48, max(W, H)) and abs(w / h - W / H) <= W / H / min(h, w)
        assert pix[r, :h, :w].std() > 0 and not pix[r, h:].any() and not pix[r, :, w:].any()
    # the stored copy is the JPEG shrunk with Pillow's bicubic filter
    f = names[3]
    want = np.asarray(Image.open(root/f).convert('RGB').resize((48, 36), Image.BICUBIC))
    assert np.array_equal(pix[3, :36, :48], want)
    assert idx['sources_sha256'] == C._sources_hash(names, [(root/f).stat().st_size for f in names])
    assert not (out/'progress.json').exists() and not (out/'rows.npy').exists()


def test_workers_build_the_same_bytes(coco, tmp_path):
    ann, root, out = coco
    par = build_image_cache(ann, root, tmp_path/'par', image_size=32, workers=2, chunk=5, progress=False)
    assert (par/'images.npy').read_bytes() == (out/'images.npy').read_bytes()
    strip = lambda p: {k: v for k, v in json.loads((p/'index.json').read_text()).items() if k != 'image_root'}
    assert strip(par) == strip(out)


def test_resume_after_interrupt(coco, tmp_path, monkeypatch):
    ann, root, out = coco
    real, calls, stop = C._fit_image, [], {'at': 10}
    def fit(path, size):  # Ctrl-C at the `stop['at']`-th image decoded
        if len(calls) == stop['at']: raise KeyboardInterrupt
        calls.append(path); return real(path, size)
    monkeypatch.setattr(C, '_fit_image', fit)
    with pytest.raises(KeyboardInterrupt):
        build_image_cache(ann, root, tmp_path/'c', image_size=32, chunk=4, progress=False)
    assert json.loads((tmp_path/'c'/'progress.json').read_text())['done'] == 8
    assert not (tmp_path/'c'/'index.json').exists()
    with pytest.raises(FileNotFoundError, match='build did not finish'): ImageCache(tmp_path/'c')
    stop['at'] = 10**9
    build_image_cache(ann, root, tmp_path/'c', image_size=32, chunk=4, progress=False)
    assert len(calls) == 10 + 16  # images 8..23 again, 0..7 not
    assert (tmp_path/'c'/'images.npy').read_bytes() == (out/'images.npy').read_bytes()
    # a build with other settings in a folder with a leftover progress file starts over
    calls.clear(); stop['at'] = 3
    with pytest.raises(KeyboardInterrupt):
        build_image_cache(ann, root, tmp_path/'d', image_size=32, chunk=2, progress=False)
    stop['at'] = 10**9
    build_image_cache(ann, root, tmp_path/'d', image_size=32, size=40, chunk=2, progress=False)
    assert len(calls) == 3 + 24 and ImageCache(tmp_path/'d').size == 40


def test_cached_samples_equal_jpeg_samples(coco, tiny):
    "Same seed: same captions, negatives, RNG draws; images within 2/255 per image (4:3 at most), 4/255 for wider ones."
    ann, root, out = coco
    jpeg = CocoHardNegatives(ann, root, None, tiny.preprocess_train, image_cache=False)
    ds = CocoHardNegatives(ann, root, None, tiny.preprocess_train)
    assert ds.image_cache.path == out and ds.samples == jpeg.samples
    per_image = {}
    for i in range(len(ds)):
        torch.manual_seed(i); a = jpeg[i]; s1 = torch.get_rng_state()
        torch.manual_seed(i); b = ds[i]; s2 = torch.get_rng_state()
        assert torch.equal(s1, s2) and a[1:3] == b[1:3] and a[0].shape == b[0].shape == (3, 32, 32)
        per_image.setdefault(ds.samples[i][0], []).append(err(a[0], b[0]))
    for f, e in per_image.items():
        W, H = Image.open(root/f).size
        assert np.mean(e) <= (2 if 3 / 4 <= W / H <= 4 / 3 else 4) / 255, (f, W, H, e)
    # a cache image swapped for another would not pass
    first = ds.samples[0][0]
    other = next(f for f in per_image if f != first and Image.open(root/f).size == Image.open(root/first).size)
    copy, size = ds.image_cache.get(other)
    torch.manual_seed(0); a = jpeg[0][0]
    torch.manual_seed(0); b = C.transform_as_original(tiny.preprocess_train, copy, size)
    assert err(a, b) > 4 / 255


def test_eval_transform_equal_within_tolerance(coco, tiny):
    "The deterministic eval preprocess (Resize + CenterCrop): within 2/255 up to 4:3, exact for images stored as is."
    ann, root, out = coco
    cache = ImageCache(out)
    for f in cache.files:
        im = Image.open(root/f).convert('RGB')
        copy, size = cache.get(f)
        e = err(tiny.preprocess(im), C.transform_as_original(tiny.preprocess, copy, size))
        if copy.size == im.size: assert e == 0, f
        elif 3 / 4 <= im.width / im.height <= 4 / 3: assert e <= 2 / 255, (f, e)


def test_training_runs_on_the_cache_without_a_new_option(coco, tmp_path, monkeypatch):
    "`hnvl.train.fit` on a COCO folder with a cache beside its images reads it (DataLoader, 2 workers, batches of 8)."
    from hnvl.train import TrainConfig, fit, make_dataset, batches, EpochBatchSampler
    from hnvl.negatives import make_negatives
    from hnvl.negatives_io import save_negatives
    ann, root, out = coco
    caps = [a['caption'] for a in json.loads(ann.read_text())['annotations']]
    save_negatives(tmp_path/'negs.jsonl.gz', caps, make_negatives(caps, recipe='ceclip', seed=0))
    cfg = TrainConfig.preset('tiny', out=str(tmp_path/'run'), data='coco', coco_ann=str(ann), coco_images=str(root),
                             negatives_path=str(tmp_path/'negs.jsonl.gz'), batch_size=8, steps=2, num_workers=2,
                             progress=False)
    from hnvl.model import create_model
    bundle = create_model('tiny')
    ds, types = make_dataset(cfg, bundle)
    assert ds.image_cache is not None and ds.image_cache.path == out and len(types) == 4
    b = next(batches(ds, EpochBatchSampler(len(ds), 8, seed=0, total=1), bundle.tokenizer, cfg))
    assert b['images'].shape == (8, 3, 32, 32) and b['mask'].shape == (8, 4) and len(b['index']) == 8
    assert b['texts'].shape[0] == 8 + 8 * 4
    got = []
    real = ImageCache.get
    monkeypatch.setattr(ImageCache, 'get', lambda self, name: got.append(name) or real(self, name))
    r = fit(cfg.replace(num_workers=0))
    assert r['step'] == 2 and math.isfinite(r['loss']) and len(got) == 16


def test_stale_cache_refused_when_named_skipped_when_found(coco, tmp_path, tiny, monkeypatch):
    ann, root, out = coco
    j = json.loads(ann.read_text())
    j['images'] = j['images'][:5] + [dict(id=99, file_name='new.jpg')]
    j['annotations'] = [a for a in j['annotations'] if a['image_id'] <= 5]
    j['annotations'].append(dict(id=999, image_id=99, caption='a new one'))
    Image.open(root/j['images'][0]['file_name']).save(root/'new.jpg')
    (tmp_path/'more.json').write_text(json.dumps(j))
    try:
        with pytest.raises(ValueError, match=r"^image_cache: image cache .* has no row for 1 of the 6 images to read "
                                             r"\(first: 'new.jpg'\): it was built from another image list"):
            CocoHardNegatives(tmp_path/'more.json', root, None, tiny.preprocess_train, image_cache=str(out))
        monkeypatch.setenv('HNVL_IMAGE_CACHE', str(out))
        with pytest.raises(ValueError, match=r"^\$HNVL_IMAGE_CACHE: image cache"):
            CocoHardNegatives(tmp_path/'more.json', root, None, tiny.preprocess_train)
        monkeypatch.delenv('HNVL_IMAGE_CACHE')
        with pytest.warns(UserWarning, match="reading the JPEGs instead"):
            ds = CocoHardNegatives(tmp_path/'more.json', root, None, tiny.preprocess_train)
        assert ds.image_cache is None and len(ds) == len(j['annotations'])
        # a subset of the cached images is served
        sub = dict(j, images=j['images'][:5], annotations=j['annotations'][:-1])
        (tmp_path/'sub.json').write_text(json.dumps(sub))
        assert CocoHardNegatives(tmp_path/'sub.json', root, None, tiny.preprocess_train).image_cache.path == out
        # a transform bigger than the cache was built for
        from open_clip.transform import image_transform
        with pytest.raises(ValueError, match="was built for image_size 32, the transform makes 48"):
            CocoHardNegatives(ann, root, None, image_transform(48, is_train=True), image_cache=out)
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            assert CocoHardNegatives(ann, root, None, tiny.preprocess_train).image_cache is not None  # no warning
    finally: (root/'new.jpg').unlink()


def test_dataset_pickles_without_pixels(coco, tiny):
    ann, root, out = coco
    ds = CocoHardNegatives(ann, root, None, tiny.preprocess_train)
    ds[0]
    assert ds.image_cache._pixels is not None
    blob = pickle.dumps(ds)
    assert len(blob) < 200_000
    again = pickle.loads(blob)
    assert again.image_cache._pixels is None and again[1][0].shape == (3, 32, 32)


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        console_entry(hnvl_image_cache, [str(a) for a in argv], prog='hnvl_image_cache')
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and lines[0].startswith('hnvl_image_cache: error: '), lines
    return lines[0]


def test_cli_bad_arguments_are_one_line(coco, tmp_path, capsys):
    ann, root, out = coco
    assert 'missing.json' in _cli([tmp_path/'missing.json', root], capsys)
    assert f"image_root {str(tmp_path/'nope')!r} is not a folder" in _cli([ann, tmp_path/'nope'], capsys)
    assert "size must be an int >= 224 (image_size), got 100" in _cli([ann, root, '--size', '100'], capsys)
    assert "image_size must be an int >= 1, got 0" in _cli([ann, root, '--image-size', '0'], capsys)
    assert "workers must be an int >= 0, got -2" in _cli([ann, root, '--workers', '-2', '--out', tmp_path/'w'], capsys)
    assert "none of the 24 images" in _cli([ann, tmp_path], capsys)
    line = _cli([ann, root, '--image_size', '40'], capsys)  # the default out holds the S = 48 cache
    assert "holds an image cache of 24 images at size 48" in line and '--overwrite' in line
    assert "--image_size" in _cli([ann, root, '--image_size', 'big'], capsys)


def test_cli_help_lists_its_options(monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['/usr/local/bin/hnvl_image_cache', '--help'])
    with pytest.raises(SystemExit) as e: C._cli()
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith('usage: hnvl_image_cache ')
    for o in ('ann_file', 'image_root', '--out', '--image_size', '--size', '--workers', '--overwrite', '--debug',
              'longest stored side'):
        assert o in out, o


def test_cli_builds_and_reports(coco, tmp_path, capsys):
    ann, root, out = coco
    console_entry(hnvl_image_cache, [str(ann), str(root), '--out', str(tmp_path/'c'), '--image-size', '32'])
    printed = capsys.readouterr().out
    want = f"24 of 24 images at size 48 (0 unreadable: read from their files) -> {tmp_path/'c'}"
    assert printed.strip().endswith(want), printed
    assert (tmp_path/'c'/'images.npy').read_bytes() == (out/'images.npy').read_bytes()


def test_console_script_entry_point(coco, tmp_path):
    "What the installed `hnvl_image_cache` runs (settings.ini), in a fresh process: a user mistake is one line, exit 2."
    import configparser
    cfg = configparser.ConfigParser(); cfg.read(ROOT/'settings.ini')
    assert 'hnvl_image_cache=hnvl.coco:_cli' in cfg['DEFAULT']['console_scripts'].split()
    code = "import sys; sys.argv[0] = 'hnvl_image_cache'; from hnvl.coco import _cli; _cli()"
    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    env.pop('HNVL_DEBUG', None)
    r = subprocess.run([sys.executable, '-c', code, str(coco[0]), str(tmp_path/'nope')], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"hnvl_image_cache: error: image_root {str(tmp_path/'nope')!r} is not a folder"], r.stderr
