"""Why `hnvl_demo` runs its fine-tunes two at a time on a CPU: throughput of 2 processes x 1 thread vs 1 process x 2 threads.

For the tiny CLIP most operations are too small to keep two threads busy, so two independent fine-tunes, each
in its own process with one thread, get through more steps per second than one process with both threads.
Each case times `--steps` training steps (after 3 warm-up steps) of the same model and batch, on the same machine,
in one run; the ratio is (2 x steps / wall of the two concurrent processes) / (steps / wall of the two-thread process).
Usage: python bench/bench_jobs.py [--steps 30] [--batches 64,256] [--losses clip_ft,ce_clip]
The last lines are the throughput ratios (> 1: running two at a time is faster).
"""
import argparse, os, subprocess, sys, time
from pathlib import Path

WORKER = r'''
import sys, time, torch
try: import hnvl  # noqa: F401
except ImportError: sys.path.insert(0, {root!r})
from hnvl.model import create_model
from hnvl.train import TrainConfig, LOSS_CONFIGS, make_loss, make_optimizer, train_step, make_dataset, CachedTokenizer
threads, batch, loss, steps = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads); torch.manual_seed(0)
bundle = create_model('hnvl-tiny')
cfg = TrainConfig.preset('shapes', n_train=max(2 * batch, 1024), batch_size=batch).replace(**LOSS_CONFIGS[loss])
ds, types = make_dataset(cfg, bundle)
b = ds.batch(range(batch), CachedTokenizer(bundle.tokenizer))
if not cfg.hard_negatives: b = dict(images=b['images'], texts=b['texts'][:batch], mask=b['mask'][:, :0])
model = bundle.model.train(); lf = make_loss(cfg, b['mask'].shape[1]); opt = make_optimizer(model, cfg.replace(lr=1e-5))
for _ in range(3): train_step(model, b, lf, opt)
print('READY', flush=True); sys.stdin.readline()   # start together
t = time.perf_counter()
for _ in range(steps): train_step(model, b, lf, opt)
print('SECONDS', time.perf_counter() - t, flush=True)
'''

def run(n_procs, threads, batch, loss, steps):
    "Wall seconds for `n_procs` concurrent processes to each do `steps` steps (timed from a common start)."
    code = WORKER.format(root=str(Path(__file__).resolve().parent.parent))
    ps = [subprocess.Popen([sys.executable, '-c', code, str(threads), str(batch), loss, str(steps)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads))) for _ in range(n_procs)]
    for p in ps:
        while p.stdout.readline().strip() != 'READY': pass
    t = time.perf_counter()
    for p in ps: p.stdin.write('\n'); p.stdin.flush()
    secs = []
    for p in ps:
        for line in p.stdout:
            if line.startswith('SECONDS'): secs.append(float(line.split()[1]))
        p.wait()
    return time.perf_counter() - t, secs

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--steps', type=int, default=30)
    ap.add_argument('--batches', default='64,256'); ap.add_argument('--losses', default='clip_ft,ce_clip')
    a = ap.parse_args()
    rows = []
    for batch in map(int, a.batches.split(',')):
        for loss in a.losses.split(','):
            one, _ = run(1, 2, batch, loss, a.steps)
            two, _ = run(2, 1, batch, loss, a.steps)
            ratio = (2 * a.steps / two) / (a.steps / one)
            rows.append((batch, loss, one, two, ratio))
            print(f"batch {batch:4d} {loss:8s}: 1 process x 2 threads {a.steps / one:5.1f} steps/s; "
                  f"2 processes x 1 thread {2 * a.steps / two:5.1f} steps/s together", flush=True)
    for batch, loss, one, two, ratio in rows:
        print(f"throughput ratio, 2 x 1 thread / 1 x 2 threads, batch {batch} {loss}: {ratio:.2f}")

if __name__ == '__main__':
    main()
