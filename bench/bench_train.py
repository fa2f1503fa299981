"""Step time of the CE-CLIP objective vs plain CLIP on the tiny model at the same batch (CPU unless --device cuda).

One training step = encode images + encode texts + loss + backward + AdamW. Plain CLIP encodes N captions;
CE-CLIP encodes N captions + their valid hard negatives (K = 4 slots; a masked slot, e.g. the verb type in the
shapes world, which has no verbs, is never encoded), so the text tower sees up to 5x the sequences. The loss maths
(an N x (N + N*K) logit matrix, IMC and CMR) is small next to that. The script also times the text tower alone
at N rows and at the rows a CE-CLIP step encodes, and the loss alone, so the ratio can be explained from the parts.
Usage: python bench/bench_train.py [--batch 256] [--steps 10] [--threads 2] [--device cpu]
It also runs 10 CE-CLIP steps back to back (one wait for the device at the end) with the loss checked on the
host after every step (`train_step(guard=None)`, two reads a step) and without any read (`guard=FiniteGuard()`,
what `fit` does between log points); on a CPU the two match, on a GPU the reads stall the launch queue.
The last line is the ratio ce_clip / clip step time.
"""
import argparse, sys, time
from pathlib import Path
import torch
try: import hnvl  # noqa: F401
except ImportError: sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from hnvl.model import create_model, encode_images, encode_texts, get_logit_scale
from hnvl.train import (TrainConfig, LOSS_CONFIGS, make_loss, make_optimizer, train_step, make_dataset, CachedTokenizer,
                        FiniteGuard)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batch', type=int, default=256); ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--device', default='cpu')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(0)
    bundle = create_model('hnvl-tiny', device=a.device)
    cfg = TrainConfig.preset('shapes', n_train=max(2 * a.batch, 1024), batch_size=a.batch, device=a.device)
    ds, types = make_dataset(cfg, bundle)
    tok = CachedTokenizer(bundle.tokenizer)
    batch_hn = ds.batch(range(a.batch), tok)
    n = a.batch  # the plain-CLIP batch: the same images and captions, no negatives
    batch_clip = dict(images=batch_hn['images'], texts=batch_hn['texts'][:n], mask=batch_hn['mask'][:, :0])
    model = bundle.model.to(a.device).train()
    sync = (lambda: torch.cuda.synchronize()) if a.device.startswith('cuda') else (lambda: None)

    def time_fn(f, n=None):
        "Median seconds of `n` (default --steps) calls of `f`, after one warmup call."
        n = n or a.steps; f(); ts = []
        for _ in range(n):
            sync(); t = time.perf_counter(); f(); sync(); ts.append(time.perf_counter() - t)
        return sorted(ts)[len(ts) // 2]

    def time_steps(name, batch):
        c = cfg.replace(**LOSS_CONFIGS[name])
        loss_fn = make_loss(c, batch['mask'].shape[1])
        opt = make_optimizer(model, cfg.replace(lr=1e-5, weight_decay=0.1))
        step = lambda: train_step(model, batch, loss_fn, opt)
        step()  # a second warmup step (time_fn does the first)
        return time_fn(step)

    def time_run(guard, k=10):
        "Seconds per step of `k` CE-CLIP steps back to back, waiting for the device only at the end."
        c = cfg.replace(**LOSS_CONFIGS['ce_clip'])
        loss_fn, opt = make_loss(c, batch_hn['mask'].shape[1]), make_optimizer(model, cfg.replace(lr=1e-5))
        g = FiniteGuard() if guard else None
        train_step(model, batch_hn, loss_fn, opt, guard=g); sync()
        t = time.perf_counter()
        for _ in range(k): train_step(model, batch_hn, loss_fn, opt, guard=g)
        sync()
        return (time.perf_counter() - t) / k

    N, K = a.batch, len(types)
    V = N + int(batch_hn['mask'].sum())  # the rows train_step encodes: captions + valid negatives
    # interleave the two objectives to share the machine's noise
    clip_t, ce_t = [], []
    for _ in range(2):
        clip_t.append(time_steps('clip_ft', batch_clip)); ce_t.append(time_steps('ce_clip', batch_hn))
    clip_s, ce_s = min(clip_t), min(ce_t)
    # the parts: text tower forward+backward at N and N + N*K rows, image tower, loss alone
    texts = batch_hn['texts'].to(a.device)
    def tower(rows):
        def f():
            model.zero_grad(); encode_texts(model, texts[:rows]).sum().backward()
        return f
    t_txt_n, t_txt_all = time_fn(tower(N)), time_fn(tower(V))
    imgs = batch_hn['images'].to(a.device)
    t_img = time_fn(lambda: (model.zero_grad(), encode_images(model, imgs).sum().backward()))
    with torch.no_grad():
        img = encode_images(model, imgs); txt_all = encode_texts(model, texts)
    img = img.detach().requires_grad_(); txt_all = txt_all.detach().requires_grad_()
    lf = make_loss(cfg.replace(**LOSS_CONFIGS['ce_clip']), K); s = get_logit_scale(model).detach()
    mask = batch_hn['mask'].to(a.device)
    t_loss = time_fn(lambda: lf(img, txt_all[:N], txt_all[N:].reshape(N, K, -1), mask, s)['loss'].backward())
    print(f"device {a.device}, threads {a.threads}, batch N={N}, K={K}, median of {a.steps} steps (best of 2 rounds)")
    print(f"step clip    : {clip_s * 1e3:8.1f} ms  ({N} captions through the text tower)")
    print(f"step ce_clip : {ce_s * 1e3:8.1f} ms  ({V} texts through the text tower: {N} captions + {V - N} valid of {N * K} negatives)")
    print(f"parts: image tower fwd+bwd {t_img * 1e3:.1f} ms; text tower fwd+bwd at {N} rows {t_txt_n * 1e3:.1f} ms, "
          f"at {V} rows {t_txt_all * 1e3:.1f} ms; ce_clip loss fwd+bwd alone {t_loss * 1e3:.1f} ms")
    extra = ce_s - clip_s
    print(f"extra time per step {extra * 1e3:.1f} ms; of it, text tower on the {V - N} valid negatives {(t_txt_all - t_txt_n) * 1e3:.1f} ms, "
          f"loss maths {t_loss * 1e3:.1f} ms (upper bound)")
    checked, free = min(time_run(False), time_run(False)), min(time_run(True), time_run(True))
    print(f"ce_clip, 10 steps back to back: loss read every step {checked * 1e3:.1f} ms/step, no reads (guard) "
          f"{free * 1e3:.1f} ms/step; ratio checked/sync-free {checked / free:.2f}")
    print(f"ratio ce_clip/clip step time: {ce_s / clip_s:.2f}")

if __name__ == '__main__': main()
