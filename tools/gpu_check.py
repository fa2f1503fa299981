"""The prepared GPU check for hnvl: one call of at most 8 minutes on one H100/H200-class GPU (not part of CI).

Sections, in order (each has a time cap, catches its own errors, and is written to $OUT/gpu_check.json when it ends,
so a run cut short keeps what finished; a section that cannot run records why):

- env: torch / CUDA / cuDNN versions, GPU name, memory, SM count, driver, bf16 support, hnvl commit;
- loss_parity: `HardNegativeLoss` on the device in fp32 vs on the CPU in float64 at the paper's shapes (N=256, K=4);
- paper_step: the paper's step (ViT-B-32-quickgelu, random init, global batch 256, K=4 negatives from
  `make_negatives` on COCO captions, bf16 autocast as `fit` uses on CUDA, fused AdamW) through `hnvl.train.train_step`,
  for clip_ft and ce_clip, text trimmed to the batch's length ('short', what `fit` does) vs the full 77-token context
  ('padded'): s/step, samples/s (images/s), peak memory;
- flops: training FLOPs per sample (forward + backward, `torch.utils.flop_counter.FlopCounterMode`) of those steps,
  and the utilisation the measured samples/s imply (samples/s x FLOPs/sample / the GPU's dense bf16 peak);
- compile: the same steps with the towers `torch.compile`d as `fit(compile=True)` does; compile time apart, capped;
- notebooks: the `#| cuda` cells of nbs/10_tutorial_ceclip.ipynb (the paper-preset `fit`, then its loss and threshold
  plots) on a generated COCO-shaped folder with 5 steps, then the whole notebook on the GPU by `nbdev_test --flags
  cuda` (its paper data unset: that branch is the part run just before);
- reproduce: `hnvl_reproduce --profile tiny --device cuda` end to end on the generated COCO-shaped folder;
- demo: `hnvl_demo --quick` on the GPU (the longest: last, with what is left of its cap).

Each section's record has `status`: ok, failed (it ran; a check in it did not hold), error (an exception, recorded),
or skipped (with `reason`), and `seconds`.

`--dry` runs every section on the CPU at tiny sizes (hnvl-tiny, batch 8, a few steps; `torch.compile` with the
'eager' backend, `hnvl_reproduce` in-process; no demo; CI runs it): it checks the script, it measures nothing about
a GPU, and says so. Without `--dry` and without a GPU it exits (2) at once. `--skip a,b` leaves sections out;
`--budget S` is the whole run's time.
The last two printed lines: CE-CLIP's samples/s against the 3,000 samples/s target; the ce_clip/clip step-time ratio.
"""
import argparse, contextlib, json, os, platform, random, shutil, signal, subprocess, sys, tempfile, time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

SECTIONS = ('env', 'loss_parity', 'paper_step', 'flops', 'compile', 'notebooks', 'reproduce', 'demo')
# seconds each section may take on an H100 (the whole run is also held to --budget)
CAPS = dict(env=20, loss_parity=20, paper_step=90, flops=30, compile=120, notebooks=100, reproduce=75, demo=120)
MIN_START = 8  # a section starts only with at least this many seconds of the budget left
GRACE = 5  # seconds past its cap before a section is stopped (SIGALRM: Python code only)
DRY_SLACK = 10  # --dry: caps x 10 (a busy shared CPU, not the GPU's timings, sets how long its sections take)
TARGET = 3000  # CE-CLIP samples/s on one H100-class GPU: 5 COCO epochs (~414k captions x 5) in under 12 minutes
# dense (no sparsity) bf16 tensor-core peaks, FLOP/s, from the vendors' data sheets; first match of the name wins
PEAKS = (('H200', 989e12), ('H100 PCIe', 756e12), ('H100 NVL', 835e12), ('H100', 989e12), ('GH200', 989e12),
         ('A100', 312e12), ('L40S', 362e12), ('L4', 121e12), ('A10', 125e12))
# COCO caption lengths in words (Karpathy test split, 25,010 captions): P(7..20 words); 0.6% are longer (21-43)
WORDS = dict(zip(range(7, 21), (.009, .163, .222, .218, .154, .097, .055, .033, .017, .010, .007, .004, .003, .002)))


class SectionTimeout(Exception): pass
class Skip(Exception): "A section that cannot run here: its message is the recorded reason."


def _alarm(signum, frame): raise SectionTimeout('section time cap reached')


class Check:
    "The run's record: sections run in order under their caps and the overall budget, each written out when done."
    def __init__(self, out:Path, budget:float, dry:bool, skip:set):
        self.out, self.dry, self.skip, self.t0 = out, dry, skip, time.perf_counter()
        self.deadline = self.t0 + budget
        self.res = dict(dry=dry, budget_s=budget, started=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                        sections=list(SECTIONS))
        self.write()

    def left(self) -> float: return self.deadline - time.perf_counter()

    def write(self):
        tmp = self.out/'.gpu_check.json.tmp'
        tmp.write_text(json.dumps(self.res, indent=1, default=str))
        os.replace(tmp, self.out/'gpu_check.json')

    def run(self, name:str, fn, part:dict|None=None):
        "Run section `name` (`fn(cap) -> dict`, filling `part` as it goes) under its cap; record how it ended and when."
        t, part = time.perf_counter(), {} if part is None else part
        cap = min(CAPS[name] * (DRY_SLACK if self.dry else 1), self.left() - 2)
        if name in self.skip: rec = dict(status='skipped', reason='--skip')
        elif cap < MIN_START: rec = dict(status='skipped', reason=f'budget: {max(0, self.left()):.0f} s left')
        else:
            print(f'[{time.perf_counter() - self.t0:6.1f}s] {name} (cap {cap:.0f} s) ...', flush=True)
            signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, cap + GRACE)
            try:
                rec = dict(status='ok', **fn(cap))
                if rec.get('passed') is False: rec['status'] = 'failed'  # it ran, and what it checks did not hold
            except Skip as e: rec = dict(status='skipped', reason=str(e))
            except SectionTimeout as e:  # what the section had finished is kept
                rec = dict(part, status='error', error=f'timeout after {cap + GRACE:.0f} s: {e}')
            except Exception as e:
                rec = dict(part, status='error', error=f'{type(e).__name__}: {e}'[:2000])
                traceback.print_exc()
            finally: signal.setitimer(signal.ITIMER_REAL, 0)
            _free()
        rec['seconds'] = round(time.perf_counter() - t, 2)
        self.res[name] = rec
        self.write()
        brief = {k: v for k, v in rec.items() if not isinstance(v, (dict, list))}
        print(f'[{time.perf_counter() - self.t0:6.1f}s] {name}: {brief}', flush=True)
        return rec


def _free():
    import gc, torch
    gc.collect()
    if torch.cuda.is_available(): torch.cuda.empty_cache()


def _sync(dev):
    import torch
    if str(dev).startswith('cuda'): torch.cuda.synchronize()


def _sh(cmd, timeout=10) -> str|None:
    try: return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT).stdout.strip() or None
    except (OSError, subprocess.SubprocessError): return None


# ---------------------------------------------------------------- sections
def env(ctx, cap):
    import torch, open_clip, hnvl
    r = dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
             cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
             open_clip=open_clip.__version__, hnvl=hnvl.__version__, cpus=os.cpu_count(),
             hnvl_commit=_sh(['git', 'rev-parse', 'HEAD']), cuda_available=torch.cuda.is_available())
    if r['hnvl_commit']: r['hnvl_dirty'] = bool(_sh(['git', 'status', '--porcelain', '--untracked-files=no']))
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        r.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count,
                 capability=f'{p.major}.{p.minor}', bf16=torch.cuda.is_bf16_supported(), gpus=torch.cuda.device_count(),
                 driver=_sh(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader']))
        r['peak_bf16_tflops'] = _peak(p.name, ctx['peak_tflops'])
    return r


def _peak(name, override=None):
    if override: return override
    return next((p / 1e12 for k, p in PEAKS if k.lower() in name.lower()), None)


def loss_parity(ctx, cap):
    import torch
    from hnvl.losses import HardNegativeLoss
    from hnvl.schedule import FixedThreshold
    dev, g = ctx['dev'], torch.Generator().manual_seed(0)
    n, k, d = 256, 4, 512
    f = lambda *s: torch.nn.functional.normalize(torch.randn(*s, generator=g, dtype=torch.float64), dim=-1)
    img, txt, neg = f(n, d), f(n, d), f(n, k, d)
    mask = torch.rand(n, k, generator=g) < 0.8
    ls = torch.tensor(100., dtype=torch.float64)
    theta = torch.full((k,), 3.0, dtype=torch.float64)
    cpu = HardNegativeLoss(threshold=FixedThreshold(theta))(img, txt, neg, mask, ls)
    dv = HardNegativeLoss(threshold=FixedThreshold(torch.full((k,), 3.0)))(
        *(t.float().to(dev) for t in (img, txt, neg)), mask.to(dev), ls.float().to(dev))
    terms = {t: dict(cpu64=float(cpu[t]), device32=float(dv[t]), abs_diff=abs(float(cpu[t]) - float(dv[t])))
             for t in ('loss', 'itc', 'imc', 'cmr')}
    return dict(device=dev, shapes=dict(n=n, k=k, d=d), terms=terms,
                max_abs_diff=max(v['abs_diff'] for v in terms.values()))


def captions(n:int, seed:int=0) -> tuple:
    "`n` COCO captions (Karpathy test split in $HNVL_BENCHMARKS); without that file, synthetic ones of COCO's lengths."
    from hnvl.core import benchmarks_root
    rng, f = random.Random(seed), benchmarks_root()/'coco'/'coco_karpathy_test.json'
    if f.is_file():
        caps = [c.strip() for r in json.loads(f.read_text()) for c in r['caption'] if c.strip()]
        return [caps[rng.randrange(len(caps))] for _ in range(n)], f'COCO Karpathy test captions ({f})'
    adjs, nouns = ('red small old young white wooden large black'.split(), 'man woman dog cat table street car '
                   'plate bus horse train pizza bench kite boat field'.split())
    verbs = 'sitting standing riding holding eating walking parked looking'.split()
    preps = 'on near under beside in'.split()
    out = []
    for _ in range(n):
        w = rng.choices(list(WORDS), weights=list(WORDS.values()))[0] if rng.random() > .006 else rng.randint(21, 40)
        s = ['a', rng.choice(adjs), rng.choice(nouns), rng.choice(verbs), rng.choice(preps), 'a', rng.choice(nouns)]
        while len(s) < w:
            s += [rng.choice(('with', 'and', 'next to', 'behind')), 'a', rng.choice(adjs), rng.choice(nouns)]
        out.append(' '.join(' '.join(s).split()[:w]))
    return out, 'synthetic captions with COCO word-count distribution (no Karpathy file found)'


def make_batches(bundle, n_batches:int, B:int, k:int, dev:str, seed:int=0) -> dict:
    "Host batches as `collate_hard_negatives` makes them: ce (captions + K negatives) and clip (captions only)."
    import torch
    from hnvl.negatives import make_negatives
    caps, src = captions(n_batches * B, seed)
    negs = make_negatives(caps, recipe='ceclip', seed=seed)
    assert len(negs.types) >= k, negs.types
    size = bundle.model.visual.image_size
    size = size if isinstance(size, int) else size[0]
    g, pin = torch.Generator().manual_seed(seed), dev.startswith('cuda')
    out = dict(ce=[], clip=[], source=src, types=negs.types[:k], valid=negs.mask[:, :k].mean(0).round(3).tolist())
    for b in range(n_batches):
        rows = range(b * B, (b + 1) * B)
        img = torch.randn(B, 3, size, size, generator=g)
        cap_tok = bundle.tokenizer([caps[i] for i in rows])
        neg_tok = bundle.tokenizer([negs.negatives[i][j] for i in rows for j in range(k)])
        mask = torch.as_tensor(negs.mask[b * B:(b + 1) * B, :k])
        ce = dict(images=img, texts=torch.cat([cap_tok, neg_tok]), mask=mask)
        cl = dict(images=img, texts=cap_tok, mask=torch.zeros(B, 0, dtype=torch.bool))
        for d in (ce, cl):
            if pin: d.update({kk: v.pin_memory() for kk, v in d.items()})
            out['ce' if d is ce else 'clip'].append(d)
    return out


def _lengths(net, batches) -> list:
    "The text tower's trimmed length of each batch (what `train_step` runs for its kept rows)."
    import torch
    from hnvl.model import text_length
    rows = lambda b: torch.cat([torch.ones(len(b['mask']), dtype=torch.bool), b['mask'].reshape(-1)]).nonzero()[:, 0]
    return [text_length(net, b['texts'][rows(b)]) for b in batches]


def _setup(ctx):
    "The paper-profile model, configs and batches, made once and shared by paper_step, flops and compile."
    if 'setup' in ctx: return ctx['setup']
    from hnvl.core import seed_everything
    from hnvl.model import create_model
    seed_everything(0)
    t = time.perf_counter()
    bundle = create_model(ctx['model'], device=ctx['dev'])
    t_model = time.perf_counter() - t
    t = time.perf_counter()
    data = make_batches(bundle, ctx['n_batches'], ctx['B'], ctx['k'], ctx['dev'])
    ctx['setup'] = s = dict(bundle=bundle, net=bundle.model.train(), data=data, model_s=t_model,
                           batches_s=time.perf_counter() - t, context=bundle.model.context_length)
    s['lengths'] = _lengths(s['net'], data['ce'])
    s['lengths_clip'] = _lengths(s['net'], data['clip'])
    return s


def time_steps(ctx, s, name:str, text:str, warmup:int, steps:int, deadline:float, live:dict|None=None) -> dict:
    "Time `train_step` for loss config `name` with 'short' (trimmed) or 'padded' (full-context) text; fresh AdamW."
    import torch
    from hnvl.core import value_checks
    from hnvl.train import TrainConfig, LOSS_CONFIGS, make_loss, make_optimizer, train_step, FiniteGuard, as_floats
    dev, net = ctx['dev'], s['net']
    cfg = TrainConfig.preset('paper', **LOSS_CONFIGS[name])
    batches = s['data']['ce' if cfg.hard_negatives else 'clip']
    if text == 'padded': batches = [dict(b, text_length=s['context']) for b in batches]  # `_trimmed`: L == context
    k = batches[0]['mask'].shape[1]
    loss_fn, opt, guard = make_loss(cfg, k), make_optimizer(net, cfg), FiniteGuard()
    autocast = (lambda: torch.autocast('cuda', dtype=torch.bfloat16)) if dev.startswith('cuda') else None  # as `fit`
    step = lambda i: train_step(net, batches[i % len(batches)], loss_fn, opt, autocast=autocast, guard=guard)
    with value_checks(False):  # as `fit` after its first step: no host reads inside the steps
        t, warm = time.perf_counter(), []
        if live is not None: live['warmup_step_s'] = warm  # seen in the record if the section runs out of time
        for i in range(warmup):  # each warmup step apart: a compile or recompile shows in its time
            terms = step(i); _sync(dev); warm.append(round(time.perf_counter() - t - sum(warm), 3))
        warm_s = time.perf_counter() - t
        if dev.startswith('cuda'): torch.cuda.reset_peak_memory_stats()
        t, done = time.perf_counter(), 0
        while done < steps and (done < 2 or time.perf_counter() < deadline):
            terms = step(done); done += 1
        _sync(dev)
        dt = (time.perf_counter() - t) / done
    bad, _ = guard.read()
    r = dict(s_per_step=dt, samples_per_s=len(batches[0]['images']) / dt, steps=done, warmup_steps=warmup,
             warmup_s=warm_s, warmup_step_s=warm, text_rows=int(batches[0]['texts'].shape[0]), finite=bad is None,
             text_length=s['context'] if text == 'padded' else s['lengths' if k else 'lengths_clip'],
             peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30 if dev.startswith('cuda') else None,
             last_terms=as_floats(terms))
    return r  # the optimiser's state goes with this frame


def paper_step(ctx, cap):
    s = _setup(ctx)
    deadline = time.perf_counter() + cap - 5
    amp = 'bf16 autocast' if ctx['dev'] != 'cpu' else 'off (CPU)'
    r = ctx.setdefault('rec', {})
    r.update(model=ctx['model'], batch=ctx['B'], k=ctx['k'], amp=amp,
             captions=s['data']['source'], negative_types=s['data']['types'], negative_valid=s['data']['valid'],
             model_s=s['model_s'], batches_s=s['batches_s'], trimmed_lengths=s['lengths'],
             padded_how="train_step with batch['text_length'] = the context length (value checks off, as fit runs): "
                        "open_clip's encode_text over the whole context; 'short' is what fit does",
             timed='train_step from pinned host batches (their copy to the device included, as in fit), '
                   'one host read after the timed steps', configs={})
    plan = [(n, t) for t in ('short', 'padded') for n in ('ce_clip', 'clip_ft')]
    for i, (name, text) in enumerate(plan):
        per = (deadline - time.perf_counter()) / (len(plan) - i)
        if per < 2: r['configs'][f'{name}/{text}'] = dict(skipped=f'section cap: {per:.1f} s left per config'); continue
        r['configs'][f'{name}/{text}'] = time_steps(ctx, s, name, text, ctx['warmup'], ctx['steps'],
                                                     time.perf_counter() + per)
        print(f'  {name}/{text}: {_brief(r["configs"][f"{name}/{text}"])}', flush=True)
    c = r['configs']
    if 's_per_step' in c.get('ce_clip/short', {}) and 's_per_step' in c.get('clip_ft/short', {}):
        r['ratio_ceclip_over_clip'] = c['ce_clip/short']['s_per_step'] / c['clip_ft/short']['s_per_step']
    return r


def _brief(c):
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.items() if k != 'last_terms'}


def count_flops(net, batch, name:str, padded:bool, context:int) -> int:
    "Training FLOPs (forward + backward: matmuls, convolutions, attention) of one `train_step` on `batch`."
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from hnvl.core import value_checks
    from hnvl.train import TrainConfig, LOSS_CONFIGS, make_loss, train_step
    cfg = TrainConfig.preset('paper', **LOSS_CONFIGS[name])
    if padded: batch = dict(batch, text_length=context)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)  # the optimiser's elementwise work is not counted anyway
    cuda = next(net.parameters()).device.type == 'cuda'
    ac = (lambda: torch.autocast('cuda', dtype=torch.bfloat16)) if cuda else None
    with value_checks(False), FlopCounterMode(display=False) as fc:
        train_step(net, batch, make_loss(cfg, batch['mask'].shape[1]), opt, autocast=ac)
    return fc.get_total_flops()


def flops(ctx, cap):
    s = _setup(ctx)
    net, ce, cl, B = s['net'], s['data']['ce'], s['data']['clip'], ctx['B']
    r = ctx.setdefault('rec', {})
    r.update(method='torch.utils.flop_counter.FlopCounterMode around one hnvl.train.train_step (forward + backward; '
                    'matmul/conv/attention FLOPs; optimiser and elementwise work not counted); '
                    'per sample = total / batch',
             batch=B, k=ctx['k'], per_sample={})
    use = slice(0, 1 if ctx['dry'] else None)  # dry: the first batch only (counting is slow on a CPU)
    counts = {}
    for name, data in (('ce_clip', ce), ('clip_ft', cl)):
        for text in ('short', 'padded'):
            counts[f'{name}/{text}'] = [count_flops(net, b, name, text == 'padded', s['context']) for b in data[use]]
            r['per_sample'][f'{name}/{text}'] = sum(counts[f'{name}/{text}']) / len(counts[f'{name}/{text}']) / B
    # per-sample FLOPs do not depend on the batch size: half a batch (plain CLIP, full context) counts the same
    f_half = count_flops(net, head(cl[0], B // 2), 'clip_ft', True, s['context']) / (B // 2)
    f_full = counts['clip_ft/padded'][0] / B
    r['linear_in_batch'] = dict(half_batch=f_half, full_batch=f_full, rel_diff=abs(f_half - f_full) / f_full)
    r['gflops_per_sample'] = {kk: round(v / 1e9, 2) for kk, v in r['per_sample'].items()}
    peak, steps = ctx['res'].get('env', {}).get('peak_bf16_tflops'), ctx['res'].get('paper_step', {}).get('configs', {})
    if ctx['dry']: r['utilisation'] = 'dry run: no GPU, no utilisation'
    elif not peak: r['utilisation'] = 'unknown GPU peak: pass --peak_tflops'
    else:
        r['peak_bf16_tflops'] = peak
        r['utilisation'] = {kk: v['samples_per_s'] * r['per_sample'][kk] / (peak * 1e12)
                            for kk, v in steps.items() if 'samples_per_s' in v}
        r['achieved_tflops'] = {kk: v['samples_per_s'] * r['per_sample'][kk] / 1e12
                                for kk, v in steps.items() if 'samples_per_s' in v}
    return r


def head(b:dict, n:int) -> dict:
    "The first `n` samples of a collated batch: images, mask, and text rows (their captions, then their negatives)."
    import torch
    B, k = b['mask'].shape
    return dict(images=b['images'][:n], mask=b['mask'][:n], texts=torch.cat([b['texts'][:n], b['texts'][B:B + n * k]]))


def utilisation(ctx):
    "Utilisation of the compiled steps too, once compile has run (flops runs before it)."
    peak, fl = ctx['res'].get('env', {}).get('peak_bf16_tflops'), ctx['res'].get('flops', {}).get('per_sample')
    comp = ctx['res'].get('compile', {}).get('configs', {})
    if ctx['dry'] or not peak or not fl: return
    u = {kk: v['samples_per_s'] * fl[kk] / (peak * 1e12) for kk, v in comp.items() if 'samples_per_s' in v and kk in fl}
    if u: ctx['res']['flops']['utilisation_compiled'] = u


def compile_(ctx, cap):
    import torch
    from hnvl.train import _compile_towers  # what `fit(TrainConfig(compile=True))` does
    s = _setup(ctx)
    deadline = time.perf_counter() + cap - 5
    backend = 'inductor' if not ctx['dry'] else 'eager'  # dry: dynamo's tracing only (inductor needs minutes on a CPU)
    r = ctx.setdefault('rec', {})
    r.update(backend=backend, mode='default', what='image tower and text transformer, in place (fit(compile=True))',
             configs={})
    towers = _compile_towers(s['net'], backend)
    try:
        plan = (('ce_clip', 'short'), ('clip_ft', 'short'), ('ce_clip', 'padded'), ('clip_ft', 'padded'))
        for name, text in plan:
            left = deadline - time.perf_counter()
            if ctx['dry'] and r['configs']:
                r['configs'][f'{name}/{text}'] = dict(skipped='dry run: one config traced'); continue
            if left < 10:
                r['configs'][f'{name}/{text}'] = dict(skipped=f'compile cap: {left:.0f} s left'); continue
            # warmup: every distinct trimmed length once (a recompile each, until dynamo marks the length dynamic)
            r['configs'][f'{name}/{text}'] = live = dict(note='unfinished: cut off by the section cap')
            c = time_steps(ctx, s, name, text, ctx['n_batches'] + 1, ctx['steps'], deadline, live)
            c['compile_and_warmup_s'] = c.pop('warmup_s')
            r['configs'][f'{name}/{text}'] = c
            print(f'  compiled {name}/{text}: {_brief(c)}', flush=True)
    finally:
        for t in towers: vars(t).pop('_compiled_call_impl', None)
        torch._dynamo.reset()
    eager = ctx['res'].get('paper_step', {}).get('configs', {})
    r['speedup_over_eager'] = {kk: eager[kk]['s_per_step'] / v['s_per_step'] for kk, v in r['configs'].items()
                               if 's_per_step' in v and 's_per_step' in eager.get(kk, {})}
    return r


def _fake_coco(ctx, root:Path, n_images:int) -> dict:
    "A COCO-shaped folder (`synthetic_coco`) and its negatives cache: the paper data of the tutorial's `#| cuda` cells."
    from hnvl.coco import synthetic_coco
    from hnvl.negatives import make_negatives
    from hnvl.negatives_io import read_captions, save_negatives
    ann, images = synthetic_coco(root, n=n_images, captions=(4, 5))
    caps, _ = read_captions(ann)
    negp = save_negatives(root/'negatives.jsonl.gz', caps, make_negatives(caps, recipe='ceclip', seed=0),
                          recipe='ceclip', backend='lexicon', seed=0)
    return dict(coco_ann=str(ann), coco_images=str(images), negatives_path=str(negp), n_captions=len(caps))


def notebooks(ctx, cap):
    tmp = Path(tempfile.mkdtemp(prefix='gpu-check-nb-'))
    try: return _notebooks(ctx, cap, tmp)
    finally: shutil.rmtree(tmp, ignore_errors=True)


def _notebooks(ctx, cap, tmp):
    import torch
    deadline = time.perf_counter() + cap - 3
    r = ctx.setdefault('rec', {})
    r.update(flagged=_flagged_cells(), covered_elsewhere=dict(
        **{'13_retrain': 'its real-data path is `reproduce`: the reproduce section runs it (tiny profile, cuda)',
           '11_separation': 'no `#| cuda` cells: reads a committed run (CPU)'}))
    t = time.perf_counter()
    data = _fake_coco(ctx, tmp/'coco', 80 if not ctx['dry'] else 12)
    r['data'] = dict(n_captions=data.pop('n_captions'), seconds=time.perf_counter() - t)
    # 1. the cells' own calls (nbs/10_tutorial_ceclip.ipynb, `#| cuda`), steps capped
    import matplotlib; matplotlib.use('Agg')
    from hnvl.train import TrainConfig, LOSS_CONFIGS, fit
    from hnvl import viz
    over = dict(steps=ctx['nb_steps'], log_every=1, ckpt_every=0, progress=False)
    if ctx['dry']: over.update(model='hnvl-tiny', quick_gelu=None, batch_size=8, num_workers=0)
    t = time.perf_counter()
    try:
        cfg = TrainConfig.preset('paper', out=str(tmp/'paper'), **LOSS_CONFIGS['ce_clip'], **data, checkpoint=None,
                                 **over)
        res = fit(cfg)
        rows = viz.read_jsonl(tmp/'paper'/'metrics.jsonl')
        viz.plot_losses(rows, smooth=0.9); viz.plot_thresholds(rows, upper_bound=10.0)
        r['cells'] = dict(passed=True, seconds=time.perf_counter() - t, steps=res['step'], device=cfg.device or
                          ('cuda' if torch.cuda.is_available() else 'cpu'), batch=cfg.batch_size, model=cfg.model,
                          loss=res.get('loss'), samples_per_s_last_log=rows[-1].get('samples_per_s'),
                          note=f'the cells call fit(paper preset); here steps={ctx["nb_steps"]} '
                               f'(the notebook: 5 epochs), random init, on a {len(rows)}-row metrics log')
        del res
    except Exception as e:
        r['cells'] = dict(passed=False, seconds=time.perf_counter() - t, error=f'{type(e).__name__}: {e}'[:1500])
        traceback.print_exc()
    _free()
    # 2. the notebook itself on the GPU, `--flags cuda`. Its paper data stays unset: with a generated folder the
    # `#| cuda` cell's `fit` refuses (the paper preset's ckpt_every=1000 exceeds 5 epochs of a small folder), with real
    # COCO it is 5 epochs; so the cells are run above, and here the rest of the tutorial runs on the GPU
    left = deadline - time.perf_counter()
    exe = shutil.which('nbdev_test', path=str(Path(sys.executable).parent)) or shutil.which('nbdev_test')
    if ctx['dry']: r['notebook'] = dict(skipped='dry run: the whole tutorial takes minutes on a CPU')
    elif not exe: r['notebook'] = dict(skipped='nbdev_test not installed')
    elif left < 30: r['notebook'] = dict(skipped=f'section cap: {left:.0f} s left')
    else:
        env = {k: v for k, v in os.environ.items() if k not in ('HNVL_CLIP_CHECKPOINT', 'HNVL_COCO_ANN',
                                                                'HNVL_COCO_IMAGES', 'HNVL_COCO_NEGATIVES')}
        r['notebook'] = _subprocess([exe, '--path', 'nbs/10_tutorial_ceclip.ipynb', '--flags', 'cuda', '--do_print'],
                                    dict(env, MPLBACKEND='Agg', PYTHONPATH=str(ROOT)), deadline - time.perf_counter(),
                                    cwd=ROOT)
        r['notebook'].update(passed=r['notebook']['rc'] == 0, note="PROFILE='tiny' (no paper data): the shapes-world "
                             "fits run on the GPU, the `#| cuda` cells are evaluated and do nothing")
    r['passed'] = all(v.get('passed', True) for v in (r['cells'], r['notebook']))
    return r


def _flagged_cells() -> dict:
    "The notebooks' cells tagged `#| cuda` (nbdev_test skips them without `--flags cuda`): {notebook: [cell ids]}."
    out = {}
    for f in sorted((ROOT/'nbs').glob('*.ipynb')):
        cells = json.loads(f.read_text())['cells']
        ids = [c.get('id') for c in cells if c['cell_type'] == 'code'
               and any(l.strip() == '#| cuda' for l in ''.join(c['source']).splitlines()[:3])]
        if ids: out[f.name] = ids
    return out


def _subprocess(cmd, env, timeout, cwd=None) -> dict:
    "Run `cmd` in its own process group: `{rc, seconds, ...}`; at its timeout (or any exception) the group is killed."
    t = time.perf_counter()
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd=cwd, start_new_session=True)
    try:
        out, err = p.communicate(timeout=max(1, timeout))
        rec = dict(rc=p.returncode, seconds=time.perf_counter() - t, stdout_tail=out[-300:])
        if p.returncode: rec['tail'] = (out[-1500:] + '\n' + err[-2500:]).strip()
    except subprocess.TimeoutExpired: rec = dict(rc='timeout', seconds=time.perf_counter() - t)
    finally:  # also on a section timeout: nothing it started (workers included) outlives it
        with contextlib.suppress(ProcessLookupError, PermissionError): os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    return rec


def reproduce(ctx, cap):
    tmp = Path(tempfile.mkdtemp(prefix='gpu-check-rep-'))
    try: return _reproduce(ctx, cap, tmp)
    finally: shutil.rmtree(tmp, ignore_errors=True)


def _reproduce(ctx, cap, tmp):
    from hnvl.reproduce import make_coco_like, hnvl_reproduce
    fake, out = make_coco_like(tmp/'data'), tmp/'run'
    args = dict(coco_images=fake['coco_images'], coco_ann=fake['coco_ann'], benchmarks_root=fake['benchmarks_root'],
                out=out, profile='tiny', pretrained='none', device=ctx['dev'], no_progress=True)
    if ctx['dry']:  # the CPU smoke run: two steps, one benchmark, in this process (a new one imports for ~10 s)
        args.update(benchmarks='sugarcrepe', steps=2)
        t = time.perf_counter()
        hnvl_reproduce(**args)
        r = dict(rc=0, seconds=time.perf_counter() - t, how='in-process call of hnvl.reproduce.hnvl_reproduce')
    else:  # the installed console script, as a user runs it
        exe = shutil.which('hnvl_reproduce', path=str(Path(sys.executable).parent)) or shutil.which('hnvl_reproduce')
        cmd = [exe] if exe else [sys.executable, '-c', "import sys; sys.argv[0] = 'hnvl_reproduce'; "
                                                       "from hnvl.reproduce import _cli; _cli()"]
        cmd += [x for k, v in args.items() for x in ((f'--{k}',) if v is True else (f'--{k}', str(v)))]
        env = dict(os.environ, PYTHONPATH=str(ROOT), HNVL_CACHE=str(tmp/'cache'))
        r = dict(_subprocess(cmd, env, cap - 3, cwd=tmp), how='the hnvl_reproduce console script')
    r.update(device=ctx['dev'], profile='tiny', report_exists=(out/'report.md').is_file())
    cfg, rows = out/'finetune'/'config.json', out/'finetune'/'metrics.jsonl'
    if cfg.is_file(): r['finetune_device'] = json.loads(cfg.read_text()).get('device')
    if rows.is_file(): r['finetune_steps'] = len(rows.read_text().splitlines())
    r['passed'] = r['rc'] == 0 and r['report_exists']
    return r


def demo(ctx, cap):
    if ctx['dry']: raise Skip('dry run: the quick demo takes ~5.5 min on 2 CPU cores')
    tmp = Path(tempfile.mkdtemp(prefix='gpu-check-demo-'))
    try:
        code = f"from hnvl.demo import hnvl_demo; hnvl_demo(out={str(tmp)!r}, quick=True, threads=8, no_progress=True)"
        r = _subprocess([sys.executable, '-c', code], dict(os.environ, PYTHONPATH=str(ROOT)), cap - 3)
        (ctx['out']/'demo').mkdir(exist_ok=True)
        for f in ('metrics.json', 'report.md'):  # the small files come back with $OUT; checkpoints do not
            if (tmp/f).is_file(): shutil.copy(tmp/f, ctx['out']/'demo'/f)
        if (tmp/'metrics.json').is_file():
            m = json.loads((tmp/'metrics.json').read_text())
            r['relation_swap'] = {c: v.get('relation_swap') for c, v in m.items() if isinstance(v, dict)}
            r['metrics'] = m
        r['passed'] = r['rc'] == 0
        return r
    finally: shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- main
def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dry', action='store_true', help='CPU smoke run at tiny sizes (no GPU figure)')
    p.add_argument('--skip', default='', help=f'comma-separated sections to leave out: {",".join(SECTIONS)}')
    p.add_argument('--budget', type=float, default=None,
                   help='seconds for the whole run (default 440; with --dry 3600)')
    p.add_argument('--peak_tflops', type=float, default=None, help="the GPU's dense bf16 peak (default: by its name)")
    a = p.parse_args(argv)
    a.skip = {s.strip() for s in a.skip.split(',') if s.strip()}
    bad = sorted(a.skip - set(SECTIONS))
    if bad: p.error(f"--skip: unknown section(s) {bad}; known: {','.join(SECTIONS)}")
    if a.budget is None: a.budget = 3600 if a.dry else 440
    if not a.budget > 0: p.error(f'--budget must be > 0 seconds, got {a.budget}')
    return a


def main(argv=None):
    a = parse(argv)
    import torch
    if not a.dry and not torch.cuda.is_available():
        print('gpu_check: no GPU visible (torch.cuda.is_available() is False); --dry runs the CPU smoke check',
              file=sys.stderr)
        sys.exit(2)
    out = Path(os.environ.get('OUT', '.')); out.mkdir(parents=True, exist_ok=True)
    chk = Check(out, a.budget, a.dry, a.skip)
    dev = 'cpu' if a.dry else 'cuda'
    if a.dry: torch.set_num_threads(1)  # tiny sizes: a second thread only waits on a shared CPU
    ctx = dict(dev=dev, dry=a.dry, out=out, res=chk.res, peak_tflops=a.peak_tflops, k=4,
               model='hnvl-tiny' if a.dry else 'ViT-B-32-quickgelu', B=8 if a.dry else 256,
               n_batches=2 if a.dry else 3, warmup=1 if a.dry else 3, steps=2 if a.dry else 15,
               nb_steps=2 if a.dry else 5)
    fns = dict(env=env, loss_parity=loss_parity, paper_step=paper_step, flops=flops, compile=compile_,
               notebooks=notebooks, reproduce=reproduce, demo=demo)
    for name in SECTIONS:
        ctx['rec'] = {}  # a section's record so far (kept if it fails or runs out of time)
        chk.run(name, lambda cap: fns[name](ctx, cap), ctx['rec'])
        if name == 'compile': utilisation(ctx); chk.write()
    chk.res['total_s'] = round(time.perf_counter() - chk.t0, 1); chk.write()
    summary(chk.res, a.dry)


def summary(res, dry):
    "Print the record without its bulky parts, then the two closing lines (both say when nothing was measured)."
    bulky = ('metrics', 'configs', 'last_terms', 'terms')
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk not in bulky} if isinstance(v, dict) else v
                      for k, v in res.items()}, indent=1, default=str)[-6000:], flush=True)
    ps = res.get('paper_step', {})
    st = ps.get('configs', {})
    ce, cl = st.get('ce_clip/short', {}), st.get('clip_ft/short', {})
    comp = res.get('compile', {}).get('configs', {}).get('ce_clip/short', {})
    dev = res.get('env', {}).get('gpu') or 'cpu'
    head = (f"CE-CLIP samples/s (paper step, batch {ps.get('batch')}, K={ps.get('k')}, short text) "
            f"vs the {TARGET:,} target")
    if dry: print(f'{head}: dry run, no GPU figure', flush=True)
    elif 'samples_per_s' not in ce: print(f'{head}: not measured', flush=True)
    else:
        got = dict(eager=ce['samples_per_s'], compiled=comp.get('samples_per_s'))
        how, best = max(((k, v) for k, v in got.items() if v), key=lambda kv: kv[1])
        fl = res.get('flops', {})
        us = [(w, u['ce_clip/short']) for w, u in (('eager', fl.get('utilisation')),
                                                  ('compiled', fl.get('utilisation_compiled')))
              if isinstance(u, dict) and 'ce_clip/short' in u]
        u = ', utilisation ' + ' / '.join(f'{100 * v:.0f}% {w}' for w, v in us) if us else ''
        shown = ', '.join(f'{v:.0f} {k}' if v else f'{k} not measured' for k, v in got.items())
        print(f"{head} on {dev}: {shown}{u}; {'met' if best >= TARGET else 'NOT met'} ({best / TARGET:.2f}x, {how})",
              flush=True)
    where = 'cpu (dry run, tiny model)' if dry else dev
    both = 's_per_step' in ce and 's_per_step' in cl
    ratio = f"{ce['s_per_step'] / cl['s_per_step']:.2f}x" if both else 'not measured'
    print(f'ratio ce_clip/clip step time at paper shapes on {where}: {ratio}', flush=True)


if __name__ == '__main__': main()
