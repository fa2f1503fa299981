"""Cost of the full CE-CLIP objective relative to the hard-negative contrastive loss alone.

Paper shapes (N=256, K=4, D=512) on the CPU: forward + backward of `itc_loss` vs `HardNegativeLoss()` (ITC + IMC +
CMR + threshold update), timed interleaved in one run (warm-up, then the median of the repeats).
The last line printed is the ratio full / itc.   Usage: python bench/bench_losses.py [--repeats 25] [--threads 1]
"""
import argparse, statistics, sys, time
from pathlib import Path

import torch
import torch.nn.functional as F

try: import hnvl  # noqa: F401
except ImportError: sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install
from hnvl.losses import itc_loss, HardNegativeLoss


def main(n=256, k=4, d=512, repeats=25, warmup=3, threads=1, seed=0):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, d, generator=g), dim=-1).requires_grad_()
    txt = F.normalize(torch.randn(n, d, generator=g), dim=-1).requires_grad_()
    neg = F.normalize(torch.randn(n, k, d, generator=g), dim=-1).requires_grad_()
    mask = torch.rand(n, k, generator=g) < 0.8
    scale = torch.tensor(100.)
    crit = HardNegativeLoss()

    def step_itc(): return itc_loss(img, txt, neg, mask, scale)
    def step_full(): return crit(img, txt, neg, mask, scale)['loss']

    def timed(fn):
        for x in (img, txt, neg): x.grad = None
        t = time.perf_counter()
        fn().backward()
        return time.perf_counter() - t

    for _ in range(warmup): timed(step_itc); timed(step_full)
    t_itc, t_full = [], []
    for i in range(repeats):                      # interleaved, alternating which goes first
        order = [(step_itc, t_itc), (step_full, t_full)]
        for fn, acc in (order if i % 2 == 0 else order[::-1]): acc.append(timed(fn))
    mi, mf = statistics.median(t_itc), statistics.median(t_full)
    print(f"N={n} K={k} D={d} threads={threads} repeats={repeats}")
    print(f"itc_loss          fwd+bwd median {mi * 1e3:8.2f} ms")
    print(f"HardNegativeLoss  fwd+bwd median {mf * 1e3:8.2f} ms")
    # GEMM work (multiply-adds, forward + the two backward products): ITC needs img@txt.T, txt@img.T and
    # img@neg.T; IMC adds txt@neg.T, as large as the ITC negative block. This ratio is a floor for exact fp32 maths.
    itc_mm, imc_mm = 3 * (2 * n * n * d + n * n * k * d), 3 * n * n * k * d
    print(f"GEMM-work floor full/itc: {(itc_mm + imc_mm) / itc_mm:.3f}")
    print(f"ratio full/itc: {mf / mi:.3f}")


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=25)
    p.add_argument('--threads', type=int, default=1)
    a = p.parse_args()
    main(repeats=a.repeats, threads=a.threads)
