"""Update latency of the explorer (hnvl.explore) with the tiny CLIP on the CPU: caption edits and scene switches made
through its widgets, each one new to the caches (a caption never typed before, a scene not shown before), so every
update encodes: the caption and its negatives per model shown for an edit, the image per model for a switch.

The explorer encodes on one torch thread (`Explorer(threads=1)`); `--threads 1,2` also times it on two (the first
`--models` count only), the case that choice is for. Run: `python bench/bench_explore.py [--edits 20] [--models 1,2]
[--threads 1,2]` (printed figures; no pass/fail — these machines are noisy). Last line: median and max latency over
the updates at the explorer's default (one thread) vs the 200 ms target.
"""
import argparse, statistics, sys, time
from pathlib import Path
try: import hnvl  # noqa: F401
except ImportError: sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install
import torch
from hnvl.explore import explore, default_scenes
from hnvl.model import create_model

TARGET_MS = 200

def timed(f):
    t = time.perf_counter(); f(); return (time.perf_counter() - t) * 1e3

def run(n_models, edits, threads):
    "(caption edit ms, scene switch ms) for an explorer showing `n_models` untrained tiny CLIPs, encoding on `threads`."
    models = {}
    for k in range(n_models): torch.manual_seed(k); models[f'tiny{k}'] = create_model('tiny')
    ex = explore(models, n_scenes=edits + 1, show=list(models), threads=threads)
    ex.widget()  # the ipywidgets layer is part of what is timed: each value set runs update and refreshes the view
    typed = [c for c in default_scenes(n=4 * edits, seed=1).captions if c not in ex.captions]
    typed = list(dict.fromkeys(typed))[:edits]
    ex.controls['caption'].value = 'a warm-up caption'  # first use: the word lists load once per process
    cap = [timed(lambda c=c: setattr(ex.controls['caption'], 'value', c)) for c in typed]
    scene = [timed(lambda i=i: setattr(ex.controls['scene'], 'value', i)) for i in range(1, edits + 1)]
    assert ex.snapshot.scene == edits and len(ex.snapshot.scores) == n_models
    return cap, scene

def fmt(ms): return f"median {statistics.median(ms):6.1f} ms, max {max(ms):6.1f} ms"

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--edits', type=int, default=20, help='caption edits, and as many scene switches, per run')
    ap.add_argument('--models', default='1,2', help='comma-separated numbers of models shown at once')
    ap.add_argument('--threads', default='1,2', help="comma-separated torch threads while encoding (the explorer's default is 1)")
    a = ap.parse_args()
    torch.set_num_threads(2)  # the process's own setting, as in a notebook on these 2-core machines; the explorer sets its own
    counts, every = [int(x) for x in a.models.split(',')], []
    for th in [int(x) for x in a.threads.split(',')]:
        for n in counts if th == 1 else counts[:1]:
            cap, scene = run(n, a.edits, th)
            print(f"{n} model(s) shown, {th} thread(s): caption edit {fmt(cap)} ({len(cap)} edits); scene switch {fmt(scene)} ({len(scene)} switches)")
            if th == 1: every += cap + scene
    if every:
        med, worst = statistics.median(every), max(every)
        print(f"all {len(every)} updates at 1 thread: median {med:.1f} ms, max {worst:.1f} ms vs target {TARGET_MS} ms -> "
              f"{'meets' if worst <= TARGET_MS else 'median meets' if med <= TARGET_MS else 'above'} target")
