"""Items scored per second on SugarCrepe-shaped work (7,511 items over 1,560 images) with the tiny model on CPU:
hnvl's scorer with its image cache (each distinct image encoded once) vs encoding the image of every item.

Uses the real SugarCrepe annotations when `hnvl.core.benchmarks_root()` holds them (else a synthetic set with the same
items-per-image ratio), placeholder JPEGs under a temporary folder, 1 CPU thread. `--scale 0.1` runs a
same-ratio tenth. Both runs use the same scorer, batch size and text handling; only the image keys differ.
The last line is the ratio asked for: items/s with the cache over items/s encoding per item."""
import argparse, dataclasses, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from hnvl import benchmarks as B
from hnvl.core import benchmarks_root
from hnvl.model import create_model


class PerItemImages(B.FolderImages):
    "Keys '<item index>::<file>' name the same file once per item, so nothing is shared between items."
    def _name(self, key): return str(key).split('::', 1)[1]
    def cache_key(self, key): return (str(key), None)


def sugarcrepe_shaped(scale, root):
    ann = benchmarks_root()
    if ann.exists():
        b = B.load('sugarcrepe', ann, root)
        imgs = list(dict.fromkeys(it.images[0] for it in b.items))
        pick = np.random.default_rng(0).permutation(len(imgs))[:max(1, round(len(imgs) * scale))]
        keep = {imgs[i] for i in pick}  # a random (seeded) sample of images keeps the items-per-image ratio close to 4.81
        items = [it for it in b.items if it.images[0] in keep]
        src = 'real SugarCrepe annotations'
    else:
        rng = np.random.default_rng(0); n_img = max(1, round(1560 * scale)); n_items = round(7511 * scale)
        items = [B.Item(f'{int(rng.integers(n_img)):012d}.jpg', [f'caption {i} a', f'caption {i} b'], 0,
                        {'subset': 'add_att', 'category': 'add'}) for i in range(n_items)]
        b = B.Benchmark('sugarcrepe', items, B.FolderImages(root), B._agg_sugarcrepe, B._SC_CONV)
        src = 'synthetic (no annotation files found)'
    b = dataclasses.replace(b, items=items, images=B.FolderImages(root))
    return b, src


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--scale', type=float, default=1.0, help='fraction of the 1,560 images (and their items) to use')
    ap.add_argument('--batch-size', type=int, default=256)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--repeats', type=int, default=2, help='alternating runs per variant; the best is kept')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(0)
    bundle = create_model('hnvl-tiny')
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        b, src = sugarcrepe_shaped(a.scale, root)
        names = list(dict.fromkeys(it.images[0] for it in b.items))
        rng = np.random.default_rng(0)
        for n in names: Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root/n, format='JPEG')
        per_item = dataclasses.replace(b, images=PerItemImages(root),
                                       items=[dataclasses.replace(it, images=(f'{i}::{it.images[0]}',)) for i, it in enumerate(b.items)])
        print(f'{src}: {len(b)} items over {len(names)} images ({len(b) / len(names):.2f} items per image), '
              f'hnvl-tiny on CPU, {a.threads} thread(s), batch {a.batch_size}')
        score = lambda bench, cache=None: B.score(bundle, bench, batch_size=a.batch_size, device='cpu', cache=cache)
        score(dataclasses.replace(b, items=b.items[:64]))  # warm-up
        # image side: texts pre-encoded in a shared cache, so only image loading + encoding differs
        tcache = {}; score(b, tcache)
        tcache = {k: v for k, v in tcache.items() if k[0] == 'txt'}
        def timed(bench, cache_proto):
            t0 = time.perf_counter(); r = score(bench, None if cache_proto is None else dict(cache_proto)); return time.perf_counter() - t0, r
        # alternate the two variants and keep the best of `repeats` runs each (the machine is shared)
        t_img_c = t_img_p = t_c = t_p = float('inf')
        for _ in range(a.repeats):
            t, r_img_c = timed(b, tcache); t_img_c = min(t_img_c, t)
            t, r_img_p = timed(per_item, tcache); t_img_p = min(t_img_p, t)
            t, r_c = timed(b, None); t_c = min(t_c, t)
            t, r_p = timed(per_item, None); t_p = min(t_p, t)
        assert r_c.counts['images'] == len(names) and r_p.counts['images'] == len(b)
        assert np.allclose(np.stack(r_c.sims), np.stack(r_p.sims), atol=1e-5), 'cached and per-item scores differ'
        n = len(b)
        print(f'image side (texts pre-encoded): cache {n / t_img_c:8.1f} items/s ({len(names)} image encodes, {t_img_c:.2f}s) | '
              f'per item {n / t_img_p:8.1f} items/s ({n} image encodes, {t_img_p:.2f}s) | {t_img_p / t_img_c:.2f}x '
              f'(ideal {n / len(names):.2f}x)')
        print(f'whole scoring: cache {n / t_c:8.1f} items/s ({t_c:.2f}s) | per item {n / t_p:8.1f} items/s ({t_p:.2f}s)')
        print(f'items/s ratio, image cache vs per-item encoding: {t_p / t_c:.2f}x (image side {t_img_p / t_img_c:.2f}x)')


if __name__ == '__main__':
    main()
