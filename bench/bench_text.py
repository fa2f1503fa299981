"""Text-tower time per batch: all context positions vs only up to the batch's last end-of-text token.

`hnvl.model.encode_texts(trim=False)` runs open_clip's `encode_text` on every position (77 for ViT-B/32);
`trim=True` (the default in training and evaluation) runs `encode_text_trimmed`, which cuts the columns after the
batch's last end-of-text token and gives the same features. Texts: random COCO Karpathy test captions, each with its
K = 4 'ceclip' hard negatives from `hnvl.negatives.make_negatives` (the valid ones, as `hnvl.train` encodes them), so
about 5 texts per caption. Models: the tiny CLIP (context 16) and ViT-B/32 (context 77), random init.
Forward under no_grad (evaluation); --backward also times forward + backward (training).
Usage: python bench/bench_text.py [--batch 32] [--repeats 3] [--threads 2] [--models hnvl-tiny,ViT-B-32-quickgelu]
       [--backward] [--device cpu]
The last line is the full/trimmed time ratio per model.
"""
import argparse, json, sys, time
from pathlib import Path
import numpy as np
import torch
try: import hnvl  # noqa: F401
except ImportError: sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from hnvl.core import benchmarks_root
from hnvl.model import create_model, encode_texts
from hnvl.negatives import make_negatives


def texts_batches(n_batches, batch, seed=0):
    "`n_batches` lists of texts: `batch` random Karpathy test captions followed by their valid hard negatives."
    p = benchmarks_root() / 'coco' / 'coco_karpathy_test.json'
    if not p.exists(): sys.exit(f"bench_text: error: {p} not found (set HNVL_BENCHMARKS)")
    caps = [c.strip() for it in json.loads(p.read_text()) for c in it['caption']]
    rng, out = np.random.default_rng(seed), []
    for _ in range(n_batches):
        cs = [caps[i] for i in rng.choice(len(caps), batch, replace=False)]
        negs = make_negatives(cs, recipe='ceclip', seed=seed)
        out.append(cs + [t for row, m in zip(negs.negatives, negs.mask) for t, ok in zip(row, m) if ok])
    return out, len(negs.types)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batch', type=int, default=32, help='captions per batch (each with up to K = 4 negatives)')
    ap.add_argument('--repeats', type=int, default=3, help='batches timed per model and mode (different captions)')
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--device', default='cpu')
    ap.add_argument('--models', default='hnvl-tiny,ViT-B-32-quickgelu')
    ap.add_argument('--backward', action='store_true', help='also time forward + backward')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(0)
    batches, K = texts_batches(a.repeats, a.batch)
    sync = (lambda: torch.cuda.synchronize()) if a.device.startswith('cuda') else (lambda: None)
    print(f"device {a.device}, threads {a.threads}, {a.batch} captions + valid of their K={K} negatives per batch "
          f"({', '.join(str(len(b)) for b in batches)} texts), median of {a.repeats} batches")
    ratios = []
    for name in a.models.split(','):
        b = create_model(name, device=a.device)
        toks = [b.tokenizer(t).to(a.device) for t in batches]
        L = [int(t.argmax(-1).max()) + 1 for t in toks]
        print(f"{name}: context {b.context_length}, trimmed to {L} positions "
              f"(median real length {int(np.median([int(i) + 1 for t in toks for i in t.argmax(-1)]))})")
        modes = [('forward', False)] + ([('forward+backward', True)] if a.backward else [])
        for mode, bwd in modes:
            b.model.train(bwd)
            def run(t, trim):
                if bwd:
                    b.model.zero_grad(set_to_none=True); encode_texts(b, t, trim=trim).sum().backward()
                else:
                    with torch.no_grad(): encode_texts(b, t, trim=trim)
            run(toks[0], False); run(toks[0], True)  # warm-up
            ts = {False: [], True: []}
            for t in toks:  # interleave the two ways to share the machine's noise
                for trim in (False, True):
                    sync(); s = time.perf_counter(); run(t, trim); sync(); ts[trim].append(time.perf_counter() - s)
            full, short = np.median(ts[False]), np.median(ts[True])
            print(f"  {mode:16s}: full {full * 1e3:9.1f} ms/batch, trimmed {short * 1e3:9.1f} ms/batch, "
                  f"ratio {full / short:.2f}")
            ratios.append(f"{name} {mode} {full / short:.2f}")
        del b
    print("ratio full/trimmed text-tower time: " + "; ".join(ratios))


if __name__ == '__main__': main()
