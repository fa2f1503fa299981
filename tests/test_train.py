"""hnvl.train: fit end to end on the tiny preset, the CLI, checkpoint/resume round trip."""
import json, math, os, subprocess, sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from hnvl.train import TrainConfig, LOSS_CONFIGS, fit, hnvl_train, load_checkpoint, param_groups, lr_lambda

torch.set_num_threads(1)

def _rows(d): return [json.loads(l) for l in open(Path(d)/'metrics.jsonl')]

def test_fit_tiny_loss_finite_and_falling(tmp_path):
    r = fit(TrainConfig.preset('tiny', out=str(tmp_path), steps=16, progress=False))
    rows = _rows(tmp_path)
    assert [x['step'] for x in rows] == list(range(1, 17))
    assert all(math.isfinite(x[k]) for x in rows for k in ('loss', 'itc', 'imc', 'cmr', 'lr', 'logit_scale', 'samples_per_s'))
    first, last = sum(x['loss'] for x in rows[:3]) / 3, sum(x['loss'] for x in rows[-3:]) / 3
    assert last < 0.9 * first, (first, last)
    assert r['types'] == ['relation', 'adjective', 'noun', 'verb']
    assert {f'theta_{t}' for t in r['types']} <= set(rows[-1])
    assert rows[-1]['imc'] > 0 and rows[-1]['cmr'] >= 0
    cfg = json.load(open(tmp_path/'config.json'))
    assert cfg['steps'] == 16 and cfg['lambda_imc'] == 0.3 and cfg['steps_total'] == 16
    assert (tmp_path/'model.pt').exists() and (tmp_path/'checkpoint.pt').exists()
    # the saved model loads back through hnvl.model with the same weights
    from hnvl.model import create_model
    b = create_model('hnvl-tiny', checkpoint=tmp_path/'model.pt')
    for k, v in r['bundle'].model.state_dict().items(): assert torch.equal(v, b.model.state_dict()[k]), k

def test_warmup_cosine_and_clamp(tmp_path):
    from hnvl.model import create_model
    bundle = create_model('hnvl-tiny')
    with torch.no_grad(): bundle.model.logit_scale.fill_(math.log(300))  # above the cap: only train_step's clamp brings it to 100
    fit(TrainConfig.preset('tiny', out=str(tmp_path), steps=8, warmup=4, lr=1e-2, progress=False), model=bundle)
    lrs = [x['lr'] for x in _rows(tmp_path)]
    assert lrs[:4] == pytest.approx([1e-2 * (i + 1) / 4 for i in range(4)])
    assert lrs[4] == pytest.approx(1e-2) and all(a > b for a, b in zip(lrs[4:], lrs[5:]))  # then cosine decay
    assert all(x['logit_scale'] <= 100 + 1e-4 for x in _rows(tmp_path))
    assert _rows(tmp_path)[0]['logit_scale'] == pytest.approx(100)  # one AdamW step (lr 2.5e-3) cannot take ln 300 to ln 100 alone
    assert float(bundle.model.logit_scale.detach().exp()) <= 100 + 1e-4

def test_param_groups_no_decay_on_bias_norm_logit_scale():
    from hnvl.model import create_model
    m = create_model('hnvl-tiny').model
    dec, nodec = param_groups(m, 0.1)
    names = {id(p): n for n, p in m.named_parameters()}
    nd = {names[id(p)] for p in nodec['params']}
    assert 'logit_scale' in nd and any('bias' in n for n in nd) and any('ln_' in n for n in nd)
    assert all(p.ndim >= 2 for p in dec['params']) and dec['weight_decay'] == 0.1 and nodec['weight_decay'] == 0
    assert len(dec['params']) + len(nodec['params']) == len(list(m.parameters()))

def test_resume_gives_identical_weights(tmp_path):
    c = TrainConfig.preset('tiny', steps=8, ckpt_every=2, progress=False)
    a = fit(c.replace(out=str(tmp_path/'a')))['bundle'].model.state_dict()
    fit(c.replace(out=str(tmp_path/'b'), stop_after=4))
    st = load_checkpoint(tmp_path/'b'/'checkpoint.pt')
    assert st['step'] == 4 and set(st) >= {'model', 'optimizer', 'scheduler', 'scaler', 'threshold', 'rng', 'config'}
    assert not (tmp_path/'b'/'model.pt').exists()  # interrupted run: no final model yet
    b = fit(c.replace(out=str(tmp_path/'b'), resume=True))['bundle'].model.state_dict()
    for k in a: assert torch.equal(a[k], b[k]), k
    assert [x['step'] for x in _rows(tmp_path/'b')] == list(range(1, 9))
    ra, rb = _rows(tmp_path/'a'), _rows(tmp_path/'b')
    for x, y in zip(ra, rb): assert x['loss'] == y['loss'] and x['theta_relation'] == y['theta_relation']

def test_plain_clip_never_encodes_negatives(tmp_path, monkeypatch):
    import hnvl.train as T
    seen = []
    orig = T.train_step
    def spy(model, batch, *a, **k):
        seen.append((batch['images'].shape[0], batch['texts'].shape[0], batch['mask'].shape[1])); return orig(model, batch, *a, **k)
    monkeypatch.setattr(T, 'train_step', spy)
    r = fit(TrainConfig.preset('tiny', out=str(tmp_path), steps=2, progress=False, **LOSS_CONFIGS['clip_ft']))
    assert seen == [(32, 32, 0)] * 2 and r['imc'] == 0 and r['cmr'] == 0

def test_bad_schedule_name():
    with pytest.raises(ValueError, match='schedule must be'): lr_lambda(1, 2, 'linear')

def test_every_copy_of_a_config_is_checked():
    "`replace` (and so `preset`) runs the checks again: `make_dataset` and `fit` only see configs that pass them."
    import re
    c = TrainConfig.preset('tiny')
    with pytest.raises(ValueError, match=re.escape("TrainConfig.data must be one of")): c.replace(data='imagenet')
    assert c.replace(steps=None, ckpt_every=13).ckpt_every == 13  # the epochs set the length: `fit` checks this one

def test_cli_runs(tmp_path):
    import hnvl, os
    out = tmp_path/'cli'
    script = tmp_path/'hnvl_train_cli.py'  # what the `hnvl_train` console script does
    script.write_text('from hnvl.train import hnvl_train\nhnvl_train()\n')
    env = dict(os.environ, PYTHONPATH=str(Path(hnvl.__file__).parent.parent))
    p = subprocess.run([sys.executable, str(script), '--preset', 'tiny', '--out', str(out),
                        '--loss', 'ce_clip_fixed', '--steps', '3', '--set', 'progress=false,fixed_theta=2.5'],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res['step'] == 3 and res['theta_relation'] == 2.5
    assert json.load(open(out/'config.json'))['threshold'] == 'fixed'

def test_cli_function_resume(tmp_path):
    r1 = hnvl_train(preset='tiny', out=str(tmp_path), steps=4, set='progress=false,stop_after=2')
    assert r1['step'] == 2
    r2 = hnvl_train(preset='tiny', out=str(tmp_path), steps=4, set='progress=false', resume=True)
    assert r2['step'] == 4 and len(_rows(tmp_path)) == 4

def test_fit_on_a_tiny_coco_folder(tmp_path):
    "The COCO path (DataLoader + collate_hard_negatives + preprocess_train) on a COCO-format folder written here."
    import numpy as np
    from PIL import Image
    from hnvl.negatives import make_negatives
    from hnvl.negatives_io import save_negatives
    rng = np.random.default_rng(0)
    (tmp_path/'img').mkdir()
    caps = ['a dog on a red sofa', 'a cat under a wooden table', 'two men riding brown horses', 'a woman holding a blue umbrella',
            'a small boy eating a green apple', 'a large bus next to a tall building', 'a bird sitting on a white fence', 'a man throwing a frisbee']
    images, anns = [], []
    for i, c in enumerate(caps):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path/'img'/f'{i}.jpg')
        images.append(dict(id=i, file_name=f'{i}.jpg')); anns.append(dict(id=100 + i, image_id=i, caption=c))
    json.dump(dict(images=images, annotations=anns), open(tmp_path/'captions.json', 'w'))
    save_negatives(tmp_path/'negs.jsonl.gz', caps, make_negatives(caps, recipe='ceclip', seed=0))
    r = fit(TrainConfig.preset('tiny', out=str(tmp_path/'run'), data='coco', coco_ann=str(tmp_path/'captions.json'),
                               coco_images=str(tmp_path/'img'), negatives_path=str(tmp_path/'negs.jsonl.gz'),
                               batch_size=4, steps=3, progress=False))
    assert r['step'] == 3 and r['types'] == ['relation', 'adjective', 'noun', 'verb'] and math.isfinite(r['loss'])
    # plain CLIP on COCO needs no negatives cache (K = 0); hard negatives do
    coco = dict(data='coco', coco_ann=str(tmp_path/'captions.json'), coco_images=str(tmp_path/'img'), batch_size=4, progress=False)
    r0 = fit(TrainConfig.preset('tiny', out=str(tmp_path/'run0'), steps=2, **coco, **LOSS_CONFIGS['clip_ft']))
    assert r0['step'] == 2 and r0['types'] == [] and r0['imc'] == 0 and r0['cmr'] == 0 and math.isfinite(r0['loss'])
    # images decoded in a DataLoader worker process (prefetching, persistent): the same run, other augmentations
    rw = fit(TrainConfig.preset('tiny', out=str(tmp_path/'runw'), steps=2, num_workers=1, prefetch_factor=1, **coco,
                                **LOSS_CONFIGS['clip_ft']))
    assert rw['step'] == 2 and math.isfinite(rw['loss'])
    with pytest.raises(ValueError, match="data='coco' needs negatives_path"): fit(TrainConfig.preset('tiny', out=str(tmp_path/'run1'), **coco))
    (tmp_path/'img'/'3.jpg').unlink()
    with pytest.raises(FileNotFoundError, match='3.jpg'):
        fit(TrainConfig.preset('tiny', out=str(tmp_path/'run2'), data='coco', coco_ann=str(tmp_path/'captions.json'),
                               coco_images=str(tmp_path/'img'), negatives_path=str(tmp_path/'negs.jsonl.gz'), batch_size=4, steps=1, progress=False))


# --- no host reads inside the step ---------------------------------------------------------------------------------

# Between two check points a step reads nothing back anywhere (hnvl.train, hnvl.model, hnvl.losses). The first step of
# a run checks its inputs' values (finite features, logit scale, the text length handed to the model); only those
# reads, in hnvl.model and hnvl.losses, are allowed outside hnvl/train.py.
FIRST_STEP_ONLY = ('model.py:', 'losses.py:')

def _reads_of_fit(cfg, monkeypatch):
    """`HostReads` of `fit(cfg)` but the data pipeline (host work) and checkpoint writing (a copy off the device).

    Returns the result, the reads by place, and the reads made inside each `train_step` (a `Counter` per step)."""
    import hnvl.train as T
    reads, per_step = T.HostReads(), []
    batches, write, step = T.batches, T._write_checkpoint, T.train_step
    def quiet_batches(*a, **k):
        it = batches(*a, **k)
        while True:
            with reads.paused(): b = next(it, None)
            if b is None: return
            yield b
    def quiet_write(*a, **k):
        with reads.paused(): return write(*a, **k)
    def counted_step(*a, **k):
        i = len(reads.reads)
        try: return step(*a, **k)
        finally: per_step.append(Counter(w for _, w in reads.reads[i:]))
    monkeypatch.setattr(T, 'batches', quiet_batches)
    monkeypatch.setattr(T, '_write_checkpoint', quiet_write)
    monkeypatch.setattr(T, 'train_step', counted_step)
    with reads: r = fit(cfg)
    return r, reads.where(), per_step

@pytest.mark.parametrize('log_every,ckpt_every,checks', [(4, 0, 3), (6, 4, 4)])
def test_the_loop_reads_the_device_only_at_check_points(tmp_path, monkeypatch, log_every, ckpt_every, checks):
    "12 steps: one read per log point and per checkpoint (steps 4, 8, 12; or 4, 6, 8, 12), none in between."
    steps = 12
    r, where, per_step = _reads_of_fit(TrainConfig.preset('tiny', out=str(tmp_path), steps=steps, log_every=log_every,
                                                          ckpt_every=ckpt_every, progress=False), monkeypatch)
    assert len(per_step) == steps
    assert all(not s for s in per_step[1:]), per_step  # no step after the first reads anything, anywhere
    first = per_step[0]
    assert first and all(w.startswith(FIRST_STEP_ONLY) for w in first), first  # the first step's value checks
    ours = {w: n for w, n in where.items() if w.startswith('train.py')}
    assert sum(ours.values()) == checks, where
    assert where == Counter(ours) + first, where  # nothing else, outside the steps either
    rows = _rows(tmp_path)
    assert [x['step'] for x in rows] == list(range(log_every, steps + 1, log_every))
    assert all(math.isfinite(x['loss']) for x in rows) and r['step'] == steps

def test_a_resumed_run_checks_its_first_step_again(tmp_path, monkeypatch):
    "Value checks run on the first step of each invocation: a resumed run checks its first step, then reads nothing."
    fit(TrainConfig.preset('tiny', out=str(tmp_path), steps=6, log_every=3, stop_after=3, progress=False))
    r, where, per_step = _reads_of_fit(TrainConfig.preset('tiny', out=str(tmp_path), steps=6, log_every=3,
                                                          resume=True, progress=False), monkeypatch)
    assert r['step'] == 6 and len(per_step) == 3
    assert per_step[0] and not per_step[1] and not per_step[2], per_step
    assert sum(n for w, n in where.items() if w.startswith('train.py')) == 1, where  # the row at step 6

def test_check_every_step_reads_every_step(tmp_path, monkeypatch):
    "The debug setting checks each step on the host before its update (two reads: features, then loss terms)."
    _, where, per_step = _reads_of_fit(TrainConfig.preset('tiny', out=str(tmp_path), steps=4, log_every=4,
                                                          progress=False, check_every_step=True), monkeypatch)
    assert sum(n for w, n in where.items() if w.startswith('train.py')) == 2 * 4 + 1, where  # + the metrics row
    # ... and the model and the loss check their inputs' values on every step, not only the first
    assert all(any(w.startswith(FIRST_STEP_ONLY) for w in s) for s in per_step), per_step

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_no_device_syncs_between_log_points_on_cuda(tmp_path, monkeypatch):
    "CUDA sync detector (it also sees `nonzero`, copies to the CPU...): past the first step, syncs only at log points."
    import warnings, hnvl.train as T
    batches, write, step = T.batches, T._write_checkpoint, T.train_step
    def off(f):
        def g(*a, **k):
            mode = torch.cuda.get_sync_debug_mode(); torch.cuda.set_sync_debug_mode(0)
            try: return f(*a, **k)
            finally: torch.cuda.set_sync_debug_mode(mode)
        return g
    def quiet_batches(*a, **k):
        it = batches(*a, **k)
        while (b := off(next)(it, None)) is not None: yield b
    got, per_step = [], []  # `got`: the recorded warnings, once recording starts
    def counted_step(*a, **k):
        i = len(got[0])
        try: return step(*a, **k)
        finally:
            per_step.append([(Path(w.filename).name, w.lineno) for w in got[0][i:] if 'synchroniz' in str(w.message)])
    monkeypatch.setattr(T, 'batches', quiet_batches)
    monkeypatch.setattr(T, '_write_checkpoint', off(write))
    monkeypatch.setattr(T, 'train_step', counted_step)
    cfg = TrainConfig.preset('tiny', out=str(tmp_path), steps=12, log_every=4, device='cuda', progress=False)
    with warnings.catch_warnings(record=True) as rec:
        got.append(rec)
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try: fit(cfg)
        finally: torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in rec if 'synchroniz' in str(w.message)]
    assert len(per_step) == 12 and all(not s for s in per_step[1:]), per_step  # steps 2..12: not one sync
    ours = [w for w in syncs if w.filename.endswith(str(Path('hnvl', 'train.py')))]
    assert len(ours) == 3, [(w.filename, w.lineno, str(w.message)[:80]) for w in syncs]
    elsewhere = {Path(w.filename).name for w in syncs} - {'train.py'}
    assert elsewhere <= {'model.py', 'losses.py', 'core.py'}, elsewhere  # the first step's value checks


# --- a non-finite step found at a log point -------------------------------------------------------------------------

from test_faults import _nan_at   # a make_loss whose loss turns NaN at its call-th use

@pytest.mark.parametrize('check_every_step', [False, True])
def test_a_nan_step_between_log_points_never_reaches_the_weights(tmp_path, monkeypatch, check_every_step):
    "NaN at step 6 of 8, rows and checkpoints every 4: found at step 8 (or 6 itself), named step 6; weights of step 5."
    import hnvl.train as T
    from hnvl.model import create_model
    from hnvl.core import seed_everything
    from hnvl.train import EpochBatchSampler, NonFiniteLossError
    c = TrainConfig.preset('tiny', steps=8, log_every=4, ckpt_every=4, progress=False,
                           check_every_step=check_every_step)
    fit(c.replace(out=str(tmp_path/'ref'), stop_after=5))  # what 5 good steps give
    want = load_checkpoint(tmp_path/'ref'/'checkpoint.pt')['model']
    monkeypatch.setattr(T, 'make_loss', _nan_at(6))
    seed_everything(0); bundle = create_model('tiny')  # the initial weights `fit` draws itself
    with pytest.raises(NonFiniteLossError) as e: fit(c.replace(out=str(tmp_path/'run')), model=bundle)
    msg = str(e.value)
    assert "non-finite loss (loss=nan, cmr=nan) at step 6" in msg, msg
    assert f"batch caption indices {list(EpochBatchSampler(256, 32, seed=0, total=6))[5]}" in msg, msg
    assert f"the last checkpoint, '{tmp_path/'run'/'checkpoint.pt'}' (step 4), is kept" in msg, msg
    assert math.isnan(e.value.terms['cmr']) and math.isfinite(e.value.terms['itc'])
    assert [x['step'] for x in _rows(tmp_path/'run')] == [4]
    assert load_checkpoint(tmp_path/'run'/'checkpoint.pt')['step'] == 4
    for k, v in bundle.model.state_dict().items(): assert torch.equal(v, want[k]), k  # steps 6, 7 and 8: skipped


def test_overflowing_features_between_log_points_are_named(tmp_path):
    "lr 1e6: step 1 blows the weights up, step 2's features are NaN; found by step 3's read at the latest, named step 2."
    from hnvl.train import NonFiniteLossError
    with pytest.raises(NonFiniteLossError, match=r"non-finite image features .* at step 2; "):
        fit(TrainConfig.preset('tiny', out=str(tmp_path), steps=6, lr=1e6, warmup=0, log_every=3, progress=False))
    assert not (tmp_path/'metrics.jsonl').exists() or _rows(tmp_path) == []

# --- data loading, precision, compilation, weights by name ----------------------------------------------------------

def test_compile_backend_checked_when_compiling():
    with pytest.raises(ValueError, match="TrainConfig.compile_backend must be one of"):
        TrainConfig.preset('tiny', compile=True, compile_backend='nope')

def _compiled_run(tmp_path, backend):
    from hnvl.model import create_model
    r = fit(TrainConfig.preset('tiny', out=str(tmp_path), steps=2, progress=False, compile=True,
                               compile_backend=backend))
    assert r['step'] == 2 and math.isfinite(r['loss'])
    net = r['bundle'].model
    assert '_compiled_call_impl' not in vars(net.visual) and '_compiled_call_impl' not in vars(net.transformer)
    st = load_checkpoint(tmp_path/'checkpoint.pt')['model']
    assert set(st) == set(create_model('tiny').model.state_dict())  # the keys of an uncompiled model
    b = create_model('tiny', checkpoint=tmp_path/'model.pt')
    for k, v in net.state_dict().items(): assert torch.equal(v, b.model.state_dict()[k]), k

def test_compile_trains_and_its_checkpoint_loads(tmp_path):
    "torch.compile (aot_eager backend: no C compiler) on both towers: 2 steps; checkpoint and model load uncompiled."
    _compiled_run(tmp_path, 'aot_eager')

@pytest.mark.skipif(os.environ.get('HNVL_SLOW_TESTS') != '1',
                    reason='inductor on a CPU: minutes to compile (HNVL_SLOW_TESTS=1 runs it)')
def test_compile_inductor_trains_and_its_checkpoint_loads(tmp_path):
    "SLOW: inductor compiles C++ for the CPU: 9 min wall (2.3 min CPU time) on 2 busy shared cores, warm compile cache."
    _compiled_run(tmp_path, 'inductor')

def test_pretrained_goes_to_create_model(tmp_path, monkeypatch):
    import hnvl.train as T
    seen = []
    def spy(*a, **k): seen.append(k); raise RuntimeError('stop here')
    monkeypatch.setattr(T, 'create_model', spy)
    with pytest.raises(RuntimeError, match='stop here'):
        hnvl_train(preset='tiny', out=str(tmp_path/'a'), pretrained='openai')
    with pytest.raises(RuntimeError, match='stop here'): hnvl_train(preset='tiny', out=str(tmp_path/'b'))
    assert seen[0]['pretrained'] == 'openai' and 'pretrained' not in seen[1]  # only when given

def test_export_writes_an_open_clip_folder(tmp_path):
    "`--export DIR`: after training, DIR holds the model in open_clip's format, with the trained weights."
    from hnvl.model import create_model
    r = hnvl_train(preset='tiny', out=str(tmp_path/'run'), steps=2, export=str(tmp_path/'oc'), set='progress=false')
    assert r['export'] == str(tmp_path/'oc') and (tmp_path/'oc').is_dir()
    b = create_model(pretrained=str(tmp_path/'oc'))
    want = load_checkpoint(tmp_path/'run'/'checkpoint.pt')['model']
    for k, v in b.model.state_dict().items(): assert torch.equal(v, want[k]), k
    (tmp_path/'other').mkdir(); (tmp_path/'other'/'notes.txt').write_text('mine')
    with pytest.raises(ValueError, match="refusing to overwrite"):  # before any training
        fit(TrainConfig.preset('tiny', out=str(tmp_path/'run2'), export=str(tmp_path/'other'), progress=False))
    assert not (tmp_path/'run2'/'config.json').exists()
