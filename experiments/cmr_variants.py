"""Does the cross-modal rank loss (CMR) without IMC hold relations back? Variants of `itc_hn_cmr` in the demo's default profile.

An early prototype of the demo saw `itc_hn` + CMR (no IMC) stay at ~50-69% relation swap in every run, with the
adjective margin θ at its cap at once and the relation margin near 0. This script fine-tunes the demo's pretrained tiny CLIP
(600 steps at batch 256, the demo's default profile when these figures were made; `relations` world, seed 0; the
shipped pretrained model) under `itc_hn` and `itc_hn_cmr` and under variants that ask more of the relation margin:
- `cmr_cap10`: every type's θ fixed at the cap (10 logits), as if one θ were shared by all types;
- `cmr_lambda1`: λ_cmr 1.0 instead of 0.2; `cmr_cap10_lambda1`: both;
- `cmr_max`: the reference's `max` rule; `cmr_ema`: the mean rule as an EMA, not reset per epoch.
It prints each run's relation swap, attribute swap and i2t R@1, and θ_relation / θ_adjective at a few steps.

Run: `python experiments/cmr_variants.py [--out runs/cmr_variants] [--jobs 2]`
(2 CPU cores: about 15 minutes with the pretraining cached).
"""
import argparse, json, sys
from pathlib import Path
try: import hnvl  # noqa: F401
except ImportError: sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install
from hnvl.demo import DemoConfig, run_demo

CMR = dict(hard_negatives=True, imc=False, cmr=True)
VARIANTS = dict(cmr_cap10=dict(CMR, threshold='fixed', fixed_theta=10.0), cmr_lambda1=dict(CMR, lambda_cmr=1.0),
                cmr_cap10_lambda1=dict(CMR, threshold='fixed', fixed_theta=10.0, lambda_cmr=1.0),
                cmr_max=dict(CMR, threshold='max'), cmr_ema=dict(CMR, threshold='ema'))

def theta_at(folder, steps=(50, 150, 300, 600)):
    "θ_relation / θ_adjective logged at `steps` in a run's metrics.jsonl."
    rows = {r['step']: r for r in map(json.loads, (Path(folder)/'metrics.jsonl').read_text().splitlines())}
    return ' '.join(f"{s}:{rows[s]['theta_relation']:.1f}/{rows[s]['theta_adjective']:.1f}" for s in steps if s in rows)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='runs/cmr_variants'); ap.add_argument('--jobs', type=int, default=2)
    a = ap.parse_args()
    dc = DemoConfig.make(out=a.out, configs=('itc_hn', 'itc_hn_cmr'), variants=VARIANTS, jobs=a.jobs, progress=False,
                         finetune_steps=600, finetune_batch_size=256)
    m = run_demo(dc, log=lambda s: None)['metrics']
    print(f"{'config':18s} {'rel swap':>8s} {'att swap':>8s} {'i2t R@1':>8s}  θ relation/adjective at steps")
    for c, r in m.items():
        th = '' if c == 'clip' else theta_at(Path(a.out)/'runs'/c/'seed0')
        print(f"{c:18s} {r['relation_swap']:8.1f} {r['attribute_swap']:8.1f} {r['retrieval_i2t_r1']:8.1f}  {th}")

if __name__ == '__main__':
    main()
