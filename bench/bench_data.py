"""Images per second of the COCO training data path, one process: decoding each JPEG and applying open_clip's train
transform (RandomResizedCrop to --image-size, bicubic; ToTensor; Normalize) vs reading the image cache
(`hnvl_image_cache`, longer side 1.5 x image size) and applying the same transform on the original geometry
(`transform_as_original`), through `CocoHardNegatives.__getitem__` both ways. The images are COCO-like JPEGs rendered
here (640x480, 480x640, 640x427, 500x375, 640x360; quality 90). Also printed: the cache build rate. Last line: ratio."""
import argparse, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
import torch
from open_clip.transform import image_transform
from hnvl.coco import CocoHardNegatives, build_image_cache, synthetic_coco

p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
p.add_argument('--n', type=int, default=64, help='images rendered')
p.add_argument('--image-size', type=int, default=224, help='training resolution')
p.add_argument('--repeats', type=int, default=3, help='passes timed per path (best is reported)')
p.add_argument('--threads', type=int, default=1, help='torch threads (DataLoader workers run 1 each)')
a = p.parse_args()
torch.set_num_threads(a.threads)

with tempfile.TemporaryDirectory() as d:
    t = time.perf_counter()
    ann, root = synthetic_coco(d, n=a.n, sizes=((640, 480), (480, 640), (640, 427), (500, 375), (640, 360)),
                               quality=90, captions=(1, 1))
    print(f"rendered {a.n} COCO-like JPEGs (quality 90) in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    out = build_image_cache(ann, root, image_size=a.image_size, progress=False)
    print(f"cache build: {a.n / (time.perf_counter() - t):,.0f} images/s (decode + fit to {round(1.5 * a.image_size)}, "
          f"write {(out / 'images.npy').stat().st_size / 2**20:.0f} MiB)")
    pre = image_transform(a.image_size, is_train=True)
    rates = {}
    for name, cache in (('JPEG decode + train transform', False), ('image cache + same transform', out)):
        ds = CocoHardNegatives(ann, root, None, pre, image_cache=cache)
        assert (ds.image_cache is None) == (cache is False) and len(ds) == a.n  # one caption per image
        ds[0]  # warm-up: maps the cache, imports
        wall = cpu = float('inf')
        for _ in range(a.repeats):
            t, c = time.perf_counter(), time.process_time()
            for i in range(len(ds)): ds[i]
            wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
        rates[name] = a.n / wall, a.n / cpu
        print(f"{name}: {a.n / wall:,.0f} images/s ({a.n / cpu:,.0f} per CPU-second; {a.image_size}px, "
              f"best of {a.repeats})")
    (jw, jc), (cw, cc) = rates.values()
    print(f"ratio cache/JPEG images/s: {cw / jw:.2f} (per CPU-second: {cc / jc:.2f})")
