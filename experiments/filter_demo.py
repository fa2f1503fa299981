"""Does training on filtered hard negatives keep the demo's relation-swap gain?

`hnvl.filter` makes negatives harder to spot by their text alone (context-fit replacement words, adversarial
filtering). This runs the shapes-world demo's `ce_clip` fine-tune twice per seed, on the same pretrained model:
once on the word lists' negatives (`make_negatives`, the default) and once on the filtered ones
(`TrainConfig.neg_filter`, `filter_negatives` fitted on the training captions), and prints every task's mean ± std
over the seeds, the filtered − default difference and the seed noise it is judged against (`hnvl.demo.seed_delta`).
Writes an ordinary `hnvl_demo` run folder (`--out`).

    python experiments/filter_demo.py --seeds 3 --out runs/filter_demo   # the committed run (experiments/runs/demo_filter)
"""
import argparse, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, default=3, help='fine-tuning seeds per configuration')
    p.add_argument('--out', default='runs/filter_demo', help='the run folder')
    p.add_argument('--world', default='relations', help='a hnvl.demo.DEMO_WORLDS name')
    p.add_argument('--jobs', type=int, default=2, help='fine-tunes at once (processes sharing the threads)')
    p.add_argument('--steps', type=int, default=None, help="fine-tuning steps (default: the demo's)")
    a = p.parse_args()
    from hnvl.demo import DemoConfig, run_demo, seed_delta
    from hnvl.train import LOSS_CONFIGS
    dc = DemoConfig.make(out=a.out, seeds=a.seeds, world=a.world, jobs=a.jobs, configs=('ce_clip',),
                         **({} if a.steps is None else dict(finetune_steps=a.steps)),
                         variants={'ce_clip_filtered': dict(LOSS_CONFIGS['ce_clip'], neg_filter=True)})
    run_demo(dc)
    from hnvl.core import load_json
    m, sd = load_json(Path(a.out)/'metrics.json'), load_json(Path(a.out)/'metrics_std.json')
    print(f"\n{'task':<20} {'ce_clip':>14} {'ce_clip_filtered':>18} {'difference':>11} {'noise':>6}")
    for t in m['ce_clip']:
        d, beyond, noise = seed_delta(m, sd, 'ce_clip', 'ce_clip_filtered', t, a.seeds)
        print(f"{t:<20} {m['ce_clip'][t]:>7.1f} ± {sd['ce_clip'][t]:<4.1f} {m['ce_clip_filtered'][t]:>11.1f} ± "
              f"{sd['ce_clip_filtered'][t]:<4.1f} {d:>+11.1f} {noise:>6.1f}{'  beyond noise' if beyond else ''}")
    gain = {c: m[c]['relation_swap'] - m['clip']['relation_swap'] for c in ('ce_clip', 'ce_clip_filtered')}
    print(f"relation-swap gain over clip: word lists {gain['ce_clip']:+.1f}, filtered {gain['ce_clip_filtered']:+.1f}")


if __name__ == '__main__': main()
