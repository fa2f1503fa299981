"""What does weight interpolation win back from a demo run's fine-tunes?

Fine-tuning on hard negatives buys relation-swap accuracy and may cost attribute swap or retrieval. For each
fine-tuned model of a finished `hnvl_demo` run folder (`RUN/runs/<config>/seed0/model.pt`), this mixes its weights
with those of the pretrained model the run started from (`runs.json`'s `pretrained`),
θ(α) = (1 − α)·θ₀ + α·θ₁ (`hnvl.interpolate`, after Wortsman et al., CVPR 2022), scores every α on the run's own
world tasks (`hnvl.demo.make_benchmarks` of the run's config: relation swap, attribute swap, retrieval R@1 both
ways), and prints

- the curve, one row per α;
- α*, the smallest α that keeps 90% (`--keep`) of the relation-swap gain (`--task`);
- what α* wins back against the fine-tuned model on the other tasks.

The curves go to a PNG (`--out`, default `RUN/interpolation.png`). Nothing is trained.

    python experiments/interpolate_demo.py --run runs/demo --configs ce_clip,itc_hn
    python experiments/interpolate_demo.py --run runs/demo --configs ce_clip --alphas 0,0.25,0.5,0.75,1 --seed 1
"""
import argparse, dataclasses, time
from functools import partial
from pathlib import Path

TASKS = ('relation_swap', 'attribute_swap', 'retrieval_i2t_r1', 'retrieval_t2i_r1')
BENCHES = ('relation_swap', 'attribute_swap', 'retrieval')  # the benchmarks that give TASKS


def read_run(run):
    "(DemoConfig, pretrained checkpoint path) of a finished demo run folder."
    from hnvl.core import load_json
    from hnvl.demo import DemoConfig
    p = Path(run)/'runs.json'
    if not p.exists(): raise SystemExit(f"{p} not found: {run} is not a finished hnvl_demo run folder")
    r = load_json(p)
    names = {f.name for f in dataclasses.fields(DemoConfig)}
    cfg = {k: v for k, v in r['config'].items() if k in names}
    return DemoConfig(**{**cfg, 'progress': False}), r['pretrained']


def parse_alphas(s):
    "The α grid from '0,0.1,...'; it must hold 0 and 1 (the two models)."
    try: alphas = [float(a) for a in s.split(',') if a.strip()]
    except ValueError: raise SystemExit(f"--alphas must be comma-separated numbers, got {s!r}") from None
    if 0 not in alphas or 1 not in alphas: raise SystemExit(f"--alphas must hold 0 and 1, got {alphas}")
    return sorted(alphas)


def curve_table(curve, tasks=TASKS):
    "The curve as text, one row per α."
    head = f"{'alpha':>6}  " + '  '.join(f"{t:>16}" for t in tasks)
    rows = [f"{a:>6.2f}  " + '  '.join(f"{m[t]:>16.1f}" for t in tasks) for a, m in sorted(curve.items())]
    return '\n'.join([head] + rows)


def winback(curve, task, keep, tasks=TASKS):
    "α* for `task` and, per other task, what α* changes against the fine-tuned model, as text."
    from hnvl.interpolate import best_alpha
    a = best_alpha(curve, task, keep)
    v0, v1, va = (curve[x][task] for x in (0, 1, a))
    kept = f"{100 * (va - v0) / (v1 - v0):.0f}%" if v1 != v0 else 'all'
    lines = [f"alpha* = {a:g} keeps {kept} of the {task} gain ({v0:.1f} -> {v1:.1f}; {va:.1f} at alpha*)"]
    for t in tasks:
        if t == task: continue
        v0, v1, va = (curve[x][t] for x in (0, 1, a))
        note = (f"wins back {100 * (va - v1) / (v0 - v1):.0f}% of the {v0 - v1:.1f} lost" if v1 < v0
                else "fine-tuning cost nothing here")
        lines.append(f"  {t:<17} pretrained {v0:5.1f}  fine-tuned {v1:5.1f}  alpha* {va:5.1f}  "
                     f"({va - v1:+.1f} vs fine-tuned; {note})")
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--run', required=True, help='hnvl_demo output folder (runs.json, runs/<config>/seed<S>/model.pt)')
    ap.add_argument('--configs', default='ce_clip,itc_hn', help='comma-separated fine-tuning configurations')
    ap.add_argument('--alphas', default='0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1', help='comma-separated α grid')
    ap.add_argument('--seed', type=int, default=0, help='which fine-tuning seed')
    ap.add_argument('--task', default='relation_swap', help="the task whose gain alpha* keeps")
    ap.add_argument('--keep', type=float, default=0.9, help="the share of that gain alpha* keeps")
    ap.add_argument('--out', default=None, help='PNG of the curves (default: RUN/interpolation.png)')
    ap.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    args = ap.parse_args(argv)
    import torch
    from hnvl.demo import evaluate, make_benchmarks
    from hnvl.interpolate import interpolation_curve, plot_interpolation
    if args.threads: torch.set_num_threads(args.threads)
    if args.task not in TASKS: raise SystemExit(f"--task must be one of {TASKS}, got {args.task!r}")
    alphas, configs = parse_alphas(args.alphas), [c for c in args.configs.split(',') if c]
    dc, pretrained = read_run(args.run)
    runs = Path(args.run)/'runs'
    models = {c: runs/c/f'seed{args.seed}'/'model.pt' for c in configs}
    for c, p in models.items():
        if not p.exists():
            have = sorted(q.parent.parent.name for q in runs.glob(f'*/seed{args.seed}/model.pt'))
            raise SystemExit(f"{p} not found (configs with a seed-{args.seed} model: {have})")
    t = time.perf_counter()
    benches = {k: b for k, b in make_benchmarks(dc).items() if k in BENCHES}
    print(f"tasks of {args.run} ({dc.n_per_task} items each): {time.perf_counter() - t:.0f} s; "
          f"pretrained {pretrained}")
    curves = {}
    for c, p in models.items():
        t = time.perf_counter()
        curves[c] = interpolation_curve(pretrained, p, partial(evaluate, benches=benches), alphas, progress=False)
        print(f"\n== {c} (seed {args.seed}, {len(alphas)} models, {time.perf_counter() - t:.0f} s)")
        print(curve_table(curves[c]))
        print(winback(curves[c], args.task, args.keep))
    out = Path(args.out) if args.out else Path(args.run)/'interpolation.png'
    plot_interpolation(curves, tasks=list(TASKS), task=args.task, keep=args.keep,
                       title=f"weight interpolation, {Path(args.run).name} seed {args.seed}", path=out)
    print(f"\nwrote {out}")
    return curves


if __name__ == '__main__':
    main()
