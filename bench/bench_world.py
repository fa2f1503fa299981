"""Shapes-world speed: scenes sampled and rendered per second, and the batch fast path vs the per-sample collate.

Run: `python bench/bench_world.py [--n 4000]` (printed figures; no pass/fail — these machines are noisy).
"""
import argparse, sys, time
from pathlib import Path
import numpy as np
try: import hnvl  # noqa: F401
except ImportError: sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install
from hnvl.data import WorldConfig, make_world, ArrayHardNegatives, collate_hard_negatives
from hnvl.negatives import make_negatives

def best(f, reps=5):
    ts = []
    for _ in range(reps): t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--n', type=int, default=4000); ap.add_argument('--batch', type=int, default=512)
    a = ap.parse_args()
    t = time.perf_counter(); w = make_world(WorldConfig(), a.n, cache=False); dt = time.perf_counter() - t
    print(f"shapes world: {a.n / dt:,.0f} scenes/s (sampling + rendering, 32x32, 2 objects, {a.n} scenes)")
    negs = make_negatives(w.captions, vocab=sorted({x for c in w.captions for x in c.split()}))
    ds = ArrayHardNegatives(w.images, w.captions, negs, (0.5,) * 3, (0.25,) * 3)
    tok = lambda texts: len(texts)  # tokenisation is not what is measured here
    idx = np.arange(min(a.batch, len(ds)))
    fast = best(lambda: ds.batch(idx, tok)); slow = best(lambda: collate_hard_negatives([ds[i] for i in idx], tok))
    print(f"batch of {len(idx)}: ds.batch {fast * 1e3:.2f} ms, per-sample collate {slow * 1e3:.2f} ms, ratio {slow / fast:.1f}x")
