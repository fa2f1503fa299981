"""GPU check for hnvl (run once on a lent GPU machine; not part of CI).

1. loss parity: `HardNegativeLoss` on CUDA (fp32) vs CPU float64 at paper shapes (N=256, K=4, D=512);
2. paper-profile step: ViT-B-32-quickgelu (random init), global batch 256 with K=4 negatives (1,280 captions),
   bf16 autocast, AdamW: steps/s and peak memory for the plain CLIP objective vs the full CE-CLIP objective;
3. the shapes-world demo, quick profile, on the GPU (wall time and its relation-swap numbers).
Writes everything to $OUT/gpu_check.json (or ./gpu_check.json) and prints the ratios last."""
import json, os, sys, time, subprocess
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

out_dir = Path(os.environ.get('OUT', '.')); out_dir.mkdir(parents=True, exist_ok=True)
res = dict(torch=torch.__version__, cuda=torch.version.cuda, device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
print(res, flush=True)
DRY = '--dry' in sys.argv  # CPU smoke run of this script (tiny sizes, no demo)
assert DRY or torch.cuda.is_available(), 'no GPU visible'
dev = 'cpu' if DRY else 'cuda'

# 1. loss parity
from hnvl.losses import HardNegativeLoss
from hnvl.schedule import FixedThreshold
g = torch.Generator().manual_seed(0)
n, k, d = 256, 4, 512
f = lambda *s: torch.nn.functional.normalize(torch.randn(*s, generator=g, dtype=torch.float64), dim=-1)
img, txt, neg = f(n, d), f(n, d), f(n, k, d)
mask = torch.rand(n, k, generator=g) < 0.8
ls = torch.tensor(100., dtype=torch.float64)
cpu = HardNegativeLoss(threshold=FixedThreshold(torch.full((k,), 3.0, dtype=torch.float64)))(img, txt, neg, mask, ls)
gpu = HardNegativeLoss(threshold=FixedThreshold(torch.full((k,), 3.0)))(*(t.float().to(dev) for t in (img, txt, neg)), mask.to(dev), ls.float().to(dev))
res['loss_parity'] = {t: dict(cpu64=float(cpu[t]), cuda32=float(gpu[t]), abs_diff=abs(float(cpu[t]) - float(gpu[t]))) for t in ('loss', 'itc', 'imc', 'cmr')}
print('loss parity', res['loss_parity'], flush=True)

# 2. paper-profile step time
from hnvl.model import create_model
from hnvl.train import TrainConfig, make_loss, make_optimizer, train_step, LOSS_CONFIGS, as_floats
bundle = create_model('ViT-B-32-quickgelu', device=dev)
net = bundle.model.train()
B = 2 if DRY else 256
images = torch.randn(B, 3, 224, 224, device=dev)
texts = torch.randint(1, 49000, (B * (1 + k), 77), device=dev); texts[:, 0] = 49406; texts[:, 20] = 49407
for name in ('clip_ft', 'ce_clip'):
    cfg = TrainConfig.preset('paper', **LOSS_CONFIGS[name])
    kk = k if cfg.hard_negatives else 0
    loss_fn = make_loss(cfg, kk)
    opt = make_optimizer(net, cfg)
    batch = dict(images=images, texts=texts[:B * (1 + kk)], mask=torch.ones(B, kk, dtype=torch.bool, device=dev))
    ac = lambda: torch.autocast(dev, dtype=torch.bfloat16)
    for _ in range(1 if DRY else 3): train_step(net, batch, loss_fn, opt, autocast=ac)
    if not DRY: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter(); steps = 1 if DRY else 20
    for _ in range(steps): terms = train_step(net, batch, loss_fn, opt, autocast=ac)
    if not DRY: torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    res[f'paper_step_{name}'] = dict(s_per_step=dt, images_per_s=B / dt, peak_mem_gib=0 if DRY else torch.cuda.max_memory_allocated() / 2**30, last_terms=as_floats(terms))
    print(name, res[f'paper_step_{name}'], flush=True)
    del opt
res['paper_step_ratio_ceclip_over_clip'] = res['paper_step_ce_clip']['s_per_step'] / res['paper_step_clip_ft']['s_per_step']
del net, bundle
if not DRY: torch.cuda.empty_cache()

# 3. the demo, quick profile, on the GPU
demo_out = out_dir/'demo'
t0 = time.perf_counter()
code = f"from hnvl.demo import hnvl_demo; hnvl_demo(out={str(demo_out)!r}, quick=True, threads=8, no_progress=True)"
try:
    if DRY: raise subprocess.TimeoutExpired('dry run', 0)
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=float(os.environ.get('DEMO_TIMEOUT', 170)))
    res['demo_quick_rc'] = p.returncode
    if p.returncode: print(p.stdout[-3000:], p.stderr[-3000:])
except subprocess.TimeoutExpired: res['demo_quick_rc'] = 'timeout or skipped'
res['demo_quick_wall_s'] = time.perf_counter() - t0
mp = demo_out/'metrics.json'
if mp.exists(): res['demo_quick_metrics'] = json.loads(mp.read_text())
(out_dir/'gpu_check.json').write_text(json.dumps(res, indent=2, default=str))
print(json.dumps({k: v for k, v in res.items() if k != 'demo_quick_metrics'}, indent=1, default=str))
print('demo relation_swap:', {c: m.get('relation_swap') for c, m in res.get('demo_quick_metrics', {}).items()})
print(f"ratio ce_clip/clip step time at paper shapes on {res['device']}: {res['paper_step_ratio_ceclip_over_clip']:.2f}x")
