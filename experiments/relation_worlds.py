"""Does relation swap move, and is it the hard negatives? Fine-tuning curves on several versions of the shapes world.

For each world: pretrain the tiny CLIP (plain loss, cached under $HNVL_CACHE), then fine-tune `clip_ft` (the plain
loss continued: the control), `itc_hn` and `ce_clip` for the same steps with the demo's own configs
(`hnvl.demo.finetune_config`). Every `--every` steps the run is paused (`stop_after`), scored on relation swap,
attribute swap and image->text R@1, and resumed from its checkpoint, so the schedule is that of one uninterrupted run.

Worlds (`WORLDS`):
- `both`: the default `WorldConfig` (the demo's `binding` world). Pairs are read in either direction ("A left of B" = "B right of A"), so word order and
  relation word interact (an XOR). It has 16 wordings, outlines, shared attributes and noise.
- `canonical`: `inverse_phrasings=False`, relations left of / above only, 8 colours, 5 shapes, 3 sizes, no
  outlines. Word order alone says which object is where.
- `fixed`: the XOR as in `both`, but one template per relation (`varied_wording=False`), no outlines, no shared
  attributes, no noise.
- `horizontal`: `fixed` with the relations left of / right of only.
- `relations`: the demo's default world (`hnvl.demo.DEMO_WORLDS`): `fixed` with every colour, shape and size, so a
  batch of 256 holds ~4 same-pair scenes in different relations instead of ~31 (`fixed`): little signal for the plain loss.

Run: `python experiments/relation_worlds.py --worlds fixed,relations --pretrain_steps 2000 --steps 600 --every 150
     --configs clip_ft,itc_hn_imc,ce_clip`
(with 2 CPU threads: about 4 min of pretraining per world (2,000 steps), then ~20 s per 100 steps for `clip_ft` and ~45 s for the
hard-negative runs, plus the scoring).
"""
import argparse, json, sys, time
from pathlib import Path
try: import hnvl  # noqa: F401
except ImportError: sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install
import numpy as np
import torch
from hnvl.demo import DEMO_WORLDS, DemoConfig, pretrain, make_benchmarks, evaluate, finetune_config
from hnvl.model import create_model
from hnvl.train import LOSS_CONFIGS, fit

_SIMPLE = dict(outline_prob=0.0, share_prob=0.0, noise=0.0, color_jitter=0)
WORLDS = {
    'both': {},
    'canonical': dict(relations=('left of', 'above'), inverse_phrasings=False, outline_prob=0.0,
                      colors=('red', 'green', 'blue', 'yellow', 'purple', 'white', 'orange', 'cyan'),
                      shapes=('circle', 'square', 'triangle', 'cross', 'diamond'), sizes=('small', 'medium', 'large')),
    'fixed': dict(varied_wording=False, **_SIMPLE),
    'horizontal': dict(varied_wording=False, relations=('left of', 'right of'), **_SIMPLE),
    'relations': DEMO_WORLDS['relations'],
}
TASKS = ('relation_swap', 'attribute_swap', 'retrieval')

def relation_collisions(world:dict, batch:int=256, n_train:int=10_000, draws:int=50, seed:int=0) -> float:
    "Mean number of scene pairs per random batch that describe the same two objects in different relations."
    from hnvl.data import WorldConfig, make_world, INVERSE
    def key(s):
        a, b = ((o['size'], o['color'], o['shape']) for o in (s['objects'][s['subject']], s['objects'][s['object']]))
        return ((a, b), s['relation']) if a <= b else ((b, a), INVERSE[s['relation']])
    keys = [key(s) for s in make_world(WorldConfig(**world), n_train, split='train', seed=0).scenes]
    rng, counts = np.random.default_rng(seed), []
    for _ in range(draws):
        rels = {}
        for i in rng.choice(len(keys), batch, replace=False): rels.setdefault(keys[i][0], []).append(keys[i][1])
        counts.append(sum(r[i] != r[j] for r in rels.values() for i in range(len(r)) for j in range(i + 1, len(r))))
    return float(np.mean(counts))

def scores(bundle, benches):
    r = evaluate(bundle, benches)
    return {k: round(r[k], 1) for k in ('relation_swap', 'attribute_swap', 'retrieval_i2t_r1')}

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--worlds', default='both,canonical,fixed,horizontal,relations')
    ap.add_argument('--configs', default='clip_ft,itc_hn,ce_clip')
    ap.add_argument('--pretrain_steps', type=int, default=700)
    ap.add_argument('--steps', type=int, default=300)
    ap.add_argument('--every', type=int, default=100)
    ap.add_argument('--batch_size', type=int, default=256)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', default='runs/relation_worlds')
    a = ap.parse_args()
    rows = []
    for name in a.worlds.split(','):
        dc = DemoConfig.make(quick=True, out=f"{a.out}/{name}", world=WORLDS[name], pretrain_steps=a.pretrain_steps,
                             finetune_steps=a.steps, batch_size=a.batch_size, num_threads=a.threads, progress=False)
        t0 = time.perf_counter()
        print(f"# {name}: {relation_collisions(dc.world, a.batch_size, dc.n_train):.1f} same-pair scene pairs in different "
              f"relations per batch of {a.batch_size} (the plain loss's only relation signal)", flush=True)
        ckpt = pretrain(dc, log=lambda *x: None)
        benches = {k: v for k, v in make_benchmarks(dc).items() if k in TASKS}
        s = scores(create_model('hnvl-tiny', checkpoint=ckpt, device='cpu'), benches)
        rows.append(dict(world=name, config='clip', step=0, **s)); print(json.dumps(rows[-1]), flush=True)
        for c in a.configs.split(','):
            cfg = finetune_config(dc, ckpt, LOSS_CONFIGS[c], 0, Path(dc.out)/c).replace(device='cpu')
            for f in Path(cfg.out).glob('*'): f.unlink()  # a fresh run, not a resume of an older one
            for step in range(a.every, a.steps + 1, a.every):
                res = fit(cfg.replace(stop_after=step, resume=True))
                rows.append(dict(world=name, config=c, step=step, **scores(res['bundle'], benches)))
                print(json.dumps(rows[-1]), flush=True)
        print(f"# {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    print('\nworld       config    step  relation_swap  attribute_swap  i2t_R@1')
    for r in rows:
        print(f"{r['world']:<11} {r['config']:<9} {r['step']:>4} {r['relation_swap']:>14} {r['attribute_swap']:>15} {r['retrieval_i2t_r1']:>8}")
    for name in dict.fromkeys(r['world'] for r in rows):
        last = {r['config']: r['relation_swap'] for r in rows if r['world'] == name and r['step'] in (0, a.steps)}
        if {'clip', 'clip_ft', 'ce_clip'} <= set(last):
            print(f"{name}: ce_clip - clip = {last['ce_clip'] - last['clip']:+.1f}; "
                  f"ce_clip - clip_ft (same steps, plain loss) = {last['ce_clip'] - last['clip_ft']:+.1f}")
