"""hnvl.train under faults: a killed run resumes exactly, a torn checkpoint falls back to the previous one, a
non-finite loss stops with a diagnostic, an unwritable folder or a full disk fails clearly and loses nothing,
config mistakes fail before any work, and one run folder has one writer."""
import errno, json, math, os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
import torch

import hnvl
import hnvl.train as T
from hnvl.train import (TrainConfig, fit, hnvl_train, load_checkpoint, RunLock, RunFolderInUse, NonFiniteLossError,
                        EpochBatchSampler)

torch.set_num_threads(1)
ROOT = str(Path(hnvl.__file__).parent.parent)

def _rows(d): return [json.loads(l) for l in open(Path(d)/'metrics.jsonl')]

def _same(a, b, where=''):
    "Assert two nested states (dicts, lists, tensors, arrays, numbers) are exactly equal."
    if torch.is_tensor(a): assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where; return
    if isinstance(a, np.ndarray): assert isinstance(b, np.ndarray) and np.array_equal(a, b), where; return
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, set(a) ^ set(b))
        for k in a: _same(a[k], b[k], f'{where}.{k}')
        return
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)): _same(x, y, f'{where}[{i}]')
        return
    assert a == b, (where, a, b)

def _cli(*args):
    "The `hnvl_train` console script as a subprocess command (what the installed entry point runs)."
    return [sys.executable, '-c', 'from hnvl.train import _cli; _cli()', *map(str, args)]

def _env(): return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))

def _tiny(out, **kw): return TrainConfig.preset('tiny', out=str(out), progress=False, num_threads=1, **kw)

def test_sigkill_after_third_checkpoint_then_resume_is_exact(tmp_path, capfd):
    steps, opts = 30, 'ckpt_every=2,num_threads=1,progress=false'
    fit(_tiny(tmp_path/'a', steps=steps, ckpt_every=2))  # the uninterrupted run
    b = tmp_path/'b'
    p = subprocess.Popen(_cli('--preset', 'tiny', '--out', b, '--steps', steps, '--set', opts), env=_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while True:  # row 7 is written after the checkpoint of step 6, the third one, is complete
            text = (b/'metrics.jsonl').read_text() if (b/'metrics.jsonl').exists() else ''
            rows = [json.loads(l) for l in text.split('\n')[:-1]]  # complete lines only
            if rows and rows[-1]['step'] >= 7: break
            assert p.poll() is None, f"the run ended before it could be killed: {p.stderr.read()[-2000:]}"
            assert time.time() - t0 < 300, "no third checkpoint after 300 s"
            time.sleep(0.01)
        with pytest.raises(RunFolderInUse, match=f"is in use by pid {p.pid} "):  # a second run on the same folder
            fit(_tiny(b, steps=steps, ckpt_every=2, resume=True))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        if p.poll() is None: p.kill(); p.wait()
    assert p.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(b/'checkpoint.pt')['step']
    assert 6 <= killed_at < steps and load_checkpoint(b/'checkpoint.prev.pt')['step'] == killed_at - 2
    assert not (b/'model.pt').exists() and (b/RunLock.name).exists()  # SIGKILL: no clean-up ran
    capfd.readouterr()
    r = hnvl_train(preset='tiny', out=str(b), steps=steps, set=opts, resume=True)
    err = capfd.readouterr().err
    assert f"left by pid {p.pid} on" in err and "no longer running" in err, err  # the stale lock: taken over, said
    assert f"resuming from '{b/'checkpoint.pt'}' (step {killed_at})" in err, err
    assert r['step'] == steps and not (b/RunLock.name).exists() and not list(b.glob('.*.tmp'))
    sa, sb = load_checkpoint(tmp_path/'a'/'checkpoint.pt'), load_checkpoint(b/'checkpoint.pt')
    for key in ('model', 'optimizer', 'scheduler', 'threshold', 'rng', 'step', 'types'): _same(sa[key], sb[key], key)
    ra, rb = _rows(tmp_path/'a'), _rows(b)
    assert [x['step'] for x in rb] == [x['step'] for x in ra] == list(range(1, steps + 1))  # none lost, none twice
    for x, y in zip(ra, rb):
        x.pop('samples_per_s'); y.pop('samples_per_s')
        assert x == y, (x, y)
    ma, mb = torch.load(tmp_path/'a'/'model.pt'), torch.load(b/'model.pt')
    _same(ma['state_dict'], mb['state_dict'], 'model.pt')

def test_torn_checkpoint_falls_back_to_the_previous_one(tmp_path, capfd):
    c = _tiny(tmp_path, steps=6, ckpt_every=2)
    a = fit(c.replace(out=str(tmp_path/'a')))['bundle'].model.state_dict()
    b = tmp_path/'b'
    fit(c.replace(out=str(b), stop_after=4))
    ck = b/'checkpoint.pt'
    ck.write_bytes(ck.read_bytes()[:len(ck.read_bytes()) // 2])  # truncated
    capfd.readouterr()
    fit(c.replace(out=str(b), resume=True, stop_after=4))
    err = capfd.readouterr().err
    assert f"resuming from '{b/'checkpoint.prev.pt'}' (step 2) because checkpoint '{ck}' is unreadable" in err, err
    assert f"moved the unusable '{ck}' to '{b/'checkpoint.unusable.pt'}'" in err, err
    # the torn file was set aside, not rotated in: the good step-2 checkpoint is still the previous one
    assert load_checkpoint(ck)['step'] == 4 and load_checkpoint(b/'checkpoint.prev.pt')['step'] == 2
    got = fit(c.replace(out=str(b), resume=True))['bundle'].model.state_dict()
    for k in a: assert torch.equal(a[k], got[k]), k
    assert [x['step'] for x in _rows(b)] == list(range(1, 7))
    # a crash between the rotation and the rename leaves only checkpoint.prev.pt: that is used
    fit(c.replace(out=str(b), stop_after=4)); ck.unlink()
    assert fit(c.replace(out=str(b), resume=True))['step'] == 6
    assert "(step 2)" in capfd.readouterr().err
    # nothing usable: one error naming both files; the folder is left as it was
    ck.write_text('not a checkpoint'); (b/'checkpoint.prev.pt').write_bytes(b'')
    with pytest.raises(ValueError, match="no usable checkpoint to resume from") as e:
        fit(c.replace(out=str(b), resume=True))
    assert str(ck) in str(e.value) and str(b/'checkpoint.prev.pt') in str(e.value)
    assert ck.read_text() == 'not a checkpoint' and not (b/RunLock.name).exists()

def test_checkpoint_of_another_run_is_refused_before_any_work(tmp_path, monkeypatch):
    fit(_tiny(tmp_path, steps=2))
    def no_work(*a, **k): raise AssertionError("a model was built")
    monkeypatch.setattr(T, 'create_model', no_work)
    with pytest.raises(ValueError, match=r"'.*checkpoint.pt' belongs to another run \(batch_size=32 there, 16 here\)"):
        fit(_tiny(tmp_path, steps=2, batch_size=16, resume=True))
    with pytest.raises(ValueError, match=r"belongs to another run \(hard_negatives=True there, False here\)"):
        fit(_tiny(tmp_path, steps=2, hard_negatives=False, resume=True))

def _nan_at(call):
    "A `make_loss` whose loss makes the CMR term (and so the total) NaN at its `call`-th use."
    orig, n = T.make_loss, [0]
    def make(cfg, k):
        fn = orig(cfg, k); base = type(fn)
        class Bad(base):
            def __call__(self, *a, **kw):
                out = base.__call__(self, *a, **kw); n[0] += 1
                if n[0] == call: out = dict(out, cmr=out['cmr'] * float('nan'), loss=out['loss'] * float('nan'))
                return out
        fn.__class__ = Bad
        return fn
    return make

def test_non_finite_loss_stops_with_a_diagnostic(tmp_path, monkeypatch):
    from hnvl.model import create_model
    monkeypatch.setattr(T, 'make_loss', _nan_at(5))
    bundle = create_model('tiny')
    with pytest.raises(NonFiniteLossError) as e: fit(_tiny(tmp_path, steps=8, ckpt_every=2), model=bundle)
    msg, idx = str(e.value), list(EpochBatchSampler(256, 32, seed=0, total=5))[4]  # the fifth batch
    assert isinstance(e.value, RuntimeError) and "non-finite loss (loss=nan, cmr=nan) at step 5" in msg, msg
    assert f"batch caption indices {idx}" in msg, msg
    assert f"the last checkpoint, '{tmp_path/'checkpoint.pt'}' (step 4), is kept" in msg, msg
    assert math.isfinite(e.value.terms['imc']) and math.isnan(e.value.terms['cmr'])  # finite, NaN
    st = load_checkpoint(tmp_path/'checkpoint.pt')
    assert st['step'] == 4 and [x['step'] for x in _rows(tmp_path)] == [1, 2, 3, 4]
    assert not (tmp_path/'model.pt').exists() and not (tmp_path/RunLock.name).exists()
    for k, v in bundle.model.state_dict().items():  # step 5 was not taken: the weights are those of step 4
        assert torch.equal(v, st['model'][k]), k

def test_cli_exits_non_zero_when_training_diverges(tmp_path):
    p = subprocess.run(_cli('--preset', 'tiny', '--out', tmp_path, '--steps', 6, '--lr', 1e6,
                            '--set', 'warmup=0,ckpt_every=1,num_threads=1,progress=false'),
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "non-finite image features" in p.stderr and "at step 2;" in p.stderr, p.stderr[-3000:]
    assert "the last checkpoint, " in p.stderr and load_checkpoint(tmp_path/'checkpoint.pt')['step'] == 1

def test_unwritable_output_folder_fails_before_any_work(tmp_path, monkeypatch):
    (tmp_path/'file').write_text('x')
    with pytest.raises(OSError, match=r"output folder '.*file/run' is not writable"): fit(_tiny(tmp_path/'file'/'run'))
    orig = Path.write_bytes
    def full(self, data):
        if self.name.startswith('.hnvl_write_probe'): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return orig(self, data)
    monkeypatch.setattr(Path, 'write_bytes', full)
    with pytest.raises(OSError, match=r"output folder '.*full' is not writable \(No space left on device\)") as e:
        fit(_tiny(tmp_path/'full'))
    assert e.value.errno == errno.ENOSPC and os.listdir(tmp_path/'full') == []
    monkeypatch.setattr(Path, 'write_bytes', orig)
    if os.geteuid() != 0:  # permissions do not stop root
        (tmp_path/'ro').mkdir(); (tmp_path/'ro').chmod(0o555)
        try:
            with pytest.raises(OSError, match="is not writable"): fit(_tiny(tmp_path/'ro'))
        finally: (tmp_path/'ro').chmod(0o755)

def test_disk_full_at_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    c = _tiny(tmp_path, steps=6, ckpt_every=2)
    a = fit(c.replace(out=str(tmp_path/'a')))['bundle'].model.state_dict()
    b, orig, calls = tmp_path/'b', torch.save, []
    def save(obj, f, *args, **kw):
        calls.append(f)
        if len(calls) == 3:  # the third checkpoint: half written, then the disk is full
            Path(f).write_bytes(b'\x80' * 1000); raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return orig(obj, f, *args, **kw)
    monkeypatch.setattr(torch, 'save', save)
    with pytest.raises(OSError) as e: fit(c.replace(out=str(b)))
    monkeypatch.setattr(torch, 'save', orig)
    assert e.value.errno == errno.ENOSPC
    assert (f"could not write checkpoint '{b/'checkpoint.pt'}' at step 6 (No space left on device); "
            f"the last checkpoint, '{b/'checkpoint.pt'}' (step 4), is intact") in str(e.value), str(e.value)
    assert load_checkpoint(b/'checkpoint.pt')['step'] == 4 and load_checkpoint(b/'checkpoint.prev.pt')['step'] == 2
    assert not list(b.glob('.*.tmp')) and not (b/RunLock.name).exists() and not (b/'model.pt').exists()
    got = fit(c.replace(out=str(b), resume=True))['bundle'].model.state_dict()  # space again: nothing was lost
    for k in a: assert torch.equal(a[k], got[k]), k

def test_config_mistakes_fail_before_any_work(tmp_path):
    from hnvl.model import create_model
    txt = tmp_path/'weights.txt'; txt.write_text('these are not weights\n')
    with pytest.raises(ValueError, match=f"could not read checkpoint '{txt}'"):
        fit(_tiny(tmp_path/'r1', checkpoint=str(txt)))
    sd = create_model('tiny').model.state_dict()
    sd['text_projection'] = torch.zeros(64, 128)  # another architecture's projection
    other = tmp_path/'other.pt'
    torch.save({'state_dict': sd, 'meta': {'model': 'ViT-B-32', 'quick_gelu': False}}, other)
    with pytest.raises(ValueError, match=f"checkpoint '{other}' does not fit this architecture .*'ViT-B-32'"):
        fit(_tiny(tmp_path/'r2', checkpoint=str(other)))
    with pytest.raises(ValueError, match=r"ckpt_every \(5\) is larger than the run's 2 steps"):  # steps from epochs
        fit(_tiny(tmp_path/'r3', steps=None, epochs=1, n_train=64, ckpt_every=5))
    for d in ('r1', 'r2', 'r3'): assert sorted(os.listdir(tmp_path/d)) == [], d  # no config, metrics or lock left

def test_one_writer_per_run_folder(tmp_path, capfd):
    with RunLock(tmp_path):
        with pytest.raises(RunFolderInUse, match=f"is in use by pid {os.getpid()} on"): fit(_tiny(tmp_path, steps=1))
    assert os.listdir(tmp_path) == []
    dead = subprocess.Popen([sys.executable, '-c', 'pass']); dead.wait()
    (tmp_path/RunLock.name).write_text(f'pid {dead.pid} on elsewhere\n')
    capfd.readouterr()
    assert fit(_tiny(tmp_path, steps=1))['step'] == 1
    err = capfd.readouterr().err
    assert f"taking over the lock '{tmp_path/RunLock.name}' left by pid {dead.pid} on elsewhere" in err, err
    assert not (tmp_path/RunLock.name).exists()
