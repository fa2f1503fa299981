"""Does relation swap move, and is it the hard negatives? The quick demo on two phrasings of the shapes world.

For each world below: pretrain the tiny CLIP (plain loss, cached), fine-tune `clip_ft` (plain loss continued — the
control), `itc_hn` and `ce_clip` for the same steps, and print relation swap / attribute swap per configuration.

- `both`: the default world — captions read the pair in either direction ("A left of B" or "B right of A"), so
  relation word and word order interact (an XOR);
- `canonical`: `inverse_phrasings=False`, relations left of / above only, 8 colours, 5 shapes, 3 sizes,
  no outlines — word order alone says which object is where.

Run: `python benchmarks/relation_worlds.py [--pretrain_steps 300] [--steps 300] [--out runs/relation_worlds]`
(about 5 minutes per world on 2 cores).
"""
import argparse, json, sys
from pathlib import Path
try: import hnvl  # noqa: F401
except ImportError: sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install
from hnvl.demo import DemoConfig, run_demo

WORLDS = {
    'both': {},
    'canonical': dict(relations=('left of', 'above'), inverse_phrasings=False, outline_prob=0.0,
                      colors=('red', 'green', 'blue', 'yellow', 'purple', 'white', 'orange', 'cyan'),
                      shapes=('circle', 'square', 'triangle', 'cross', 'diamond'), sizes=('small', 'medium', 'large')),
}

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--pretrain_steps', type=int, default=300)
    ap.add_argument('--steps', type=int, default=300)
    ap.add_argument('--worlds', default='both,canonical')
    ap.add_argument('--out', default='runs/relation_worlds')
    a = ap.parse_args()
    rows = {}
    for name in a.worlds.split(','):
        dc = DemoConfig.make(quick=True, out=f"{a.out}/{name}", world=WORLDS[name], configs=('clip_ft', 'itc_hn', 'ce_clip'),
                             pretrain_steps=a.pretrain_steps, finetune_steps=a.steps, progress=False)
        m = run_demo(dc, log=lambda *x: None)['metrics']
        rows[name] = {c: (round(v['relation_swap'], 1), round(v['attribute_swap'], 1)) for c, v in m.items()}
        print(name, json.dumps(rows[name]), flush=True)
    print('\nworld       config    relation_swap  attribute_swap')
    for name, r in rows.items():
        for c, (rs, at) in r.items(): print(f"{name:<11} {c:<9} {rs:>13} {at:>15}")
        gain, ctrl = r['ce_clip'][0] - r['clip'][0], r['ce_clip'][0] - r['clip_ft'][0]
        print(f"{name:<11} ce_clip - clip = {gain:+.1f}; ce_clip - clip_ft (same steps, plain loss) = {ctrl:+.1f}")
