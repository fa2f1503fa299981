"""The prepared GPU check (`tools/gpu_check.py`): its CPU `--dry` run goes through every section and records each one
(numbers, or why it was skipped), `--skip` and `--budget` leave sections out with a reason, a bad option is one line,
and its closing lines judge the 3,000 samples/s target from the record without claiming a figure it does not have.
`tools/ship_pretrained.py` writes shipped weights and a record that `hnvl.demo.shipped_pretrained` accepts."""
import importlib.util, json, os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT/'tools'/'gpu_check.py'
SECTIONS = ('env', 'loss_parity', 'paper_step', 'flops', 'compile', 'notebooks', 'reproduce', 'demo')
B, K = 8, 4  # the dry run's batch and negatives per caption


def _run(tmp_path, *args, timeout=600):
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, 'OUT': str(tmp_path), 'PYTHONPATH': str(ROOT)}
    r = subprocess.run([sys.executable, str(SCRIPT), '--dry', *args], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=timeout)
    res = json.loads((tmp_path/'gpu_check.json').read_text()) if (tmp_path/'gpu_check.json').exists() else None
    return r, res


@pytest.fixture(scope='module')
def dry(tmp_path_factory):
    return _run(tmp_path_factory.mktemp('gpu_check'))


def test_every_section_recorded(dry):
    r, res = dry
    assert r.returncode == 0, r.stderr[-3000:]
    assert res['dry'] is True and res['sections'] == list(SECTIONS)
    for name in SECTIONS:
        rec = res[name]
        assert rec['status'] in ('ok', 'skipped'), (name, rec)
        assert rec['seconds'] >= 0 and (rec['status'] == 'ok' or rec['reason']), (name, rec)
    assert res['demo']['status'] == 'skipped' and 'dry run' in res['demo']['reason']
    assert 'gpu' not in res['env'] and res['env']['cuda_available'] is False  # nothing about a GPU is claimed
    assert res['env']['torch'] and res['env']['hnvl']


def test_loss_parity_and_steps(dry):
    _, res = dry
    par = res['loss_parity']
    assert set(par['terms']) == {'loss', 'itc', 'imc', 'cmr'}
    assert all(v['abs_diff'] < 1e-4 for v in par['terms'].values()), par
    steps = res['paper_step']['configs']
    assert set(steps) == {'ce_clip/short', 'ce_clip/padded', 'clip_ft/short', 'clip_ft/padded'}
    for name, c in steps.items():
        assert c['s_per_step'] > 0 and c['finite'] and c['peak_mem_gib'] is None, (name, c)
        assert all(isinstance(v, float) for v in c['last_terms'].values()), c
        assert c['text_rows'] == (B * (1 + K) if name.startswith('ce_clip') else B), c
    assert steps['ce_clip/short']['last_terms']['cmr'] > 0 and steps['clip_ft/short']['last_terms']['cmr'] == 0
    assert res['paper_step']['ratio_ceclip_over_clip'] > 0


def test_flops_and_compile(dry):
    _, res = dry
    f = res['flops']['per_sample']
    assert set(f) == {'ce_clip/short', 'ce_clip/padded', 'clip_ft/short', 'clip_ft/padded'} and min(f.values()) > 0
    assert f['ce_clip/short'] > f['clip_ft/short'] and f['ce_clip/padded'] >= f['ce_clip/short']
    assert res['flops']['linear_in_batch']['rel_diff'] < 1e-2, res['flops']['linear_in_batch']
    assert res['flops']['utilisation'].startswith('dry run')  # no GPU: no utilisation
    comp = res['compile']['configs']
    assert comp['ce_clip/short']['s_per_step'] > 0 and comp['ce_clip/short']['compile_and_warmup_s'] > 0
    assert all('skipped' in c for k, c in comp.items() if k != 'ce_clip/short'), comp


def test_notebooks_reproduce_and_last_lines(dry):
    r, res = dry
    nb = res['notebooks']
    assert nb['flagged']['10_tutorial_ceclip.ipynb'] and nb['cells']['passed'] and nb['cells']['steps'] == 2, nb
    assert 'skipped' in nb['notebook']
    rep = res['reproduce']
    assert rep['passed'] and rep['report_exists'] and rep['finetune_device'] == 'cpu', rep
    lines = r.stdout.strip().splitlines()
    assert 'dry run, no GPU figure' in lines[-2]
    assert lines[-1].startswith('ratio ce_clip/clip step time') and 'dry run' in lines[-1]


def test_skip_and_budget(tmp_path):
    r, res = _run(tmp_path/'skip', '--skip', ','.join(s for s in SECTIONS if s != 'env'))
    assert r.returncode == 0, r.stderr[-2000:]
    assert res['env']['status'] == 'ok'
    assert all(res[s] == dict(status='skipped', reason='--skip', seconds=res[s]['seconds']) for s in SECTIONS[1:])
    assert r.stdout.strip().splitlines()[-1].endswith('not measured')
    r, res = _run(tmp_path/'budget', '--budget', '3')
    assert r.returncode == 0 and all(res[s]['status'] == 'skipped' for s in SECTIONS), res
    assert all(res[s]['reason'].startswith('budget:') for s in SECTIONS)
    r, _ = _run(tmp_path/'bad', '--skip', 'env,nope')
    assert r.returncode == 2 and "--skip: unknown section(s) ['nope']" in r.stderr and 'Traceback' not in r.stderr


@pytest.fixture(scope='module')
def gc():
    spec = importlib.util.spec_from_file_location('gpu_check', SCRIPT)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def test_verdict_from_a_gpu_record(gc, capsys):
    "The closing lines of a GPU run: samples/s against the target, the utilisation, the ratio, from the record only."
    res = dict(env=dict(gpu='NVIDIA H100 80GB HBM3'),
               flops=dict(utilisation={'ce_clip/short': 0.25}, utilisation_compiled={'ce_clip/short': 0.4125}),
               paper_step=dict(batch=256, k=4, configs={'ce_clip/short': dict(samples_per_s=2000.0, s_per_step=0.128),
                                        'clip_ft/short': dict(samples_per_s=4000.0, s_per_step=0.064)}),
               compile=dict(configs={'ce_clip/short': dict(samples_per_s=3300.0)}))
    gc.summary(res, dry=False)
    *_, target, ratio = capsys.readouterr().out.strip().splitlines()
    assert target.startswith('CE-CLIP samples/s (paper step, batch 256, K=4, short text) vs the 3,000 target'), target
    assert '2000 eager, 3300 compiled, utilisation 25% eager / 41% compiled; met (1.10x, compiled)' in target, target
    assert ratio == 'ratio ce_clip/clip step time at paper shapes on NVIDIA H100 80GB HBM3: 2.00x'
    res['compile'] = dict(status='skipped', reason='--skip')
    del res['flops']['utilisation_compiled']
    gc.summary(res, dry=False)
    target = capsys.readouterr().out.strip().splitlines()[-2]
    assert '2000 eager, compiled not measured, utilisation 25% eager; NOT met (0.67x, eager)' in target, target
    assert gc._peak('NVIDIA H100 PCIe') == 756 and gc._peak('NVIDIA H200') == 989 and gc._peak('Tesla T4') is None
    assert gc._peak('NVIDIA H200', override=900.0) == 900.0


def test_section_outcomes(gc, tmp_path, monkeypatch):
    "A section that runs out of time or raises keeps what it had recorded; one whose check fails is 'failed'."
    chk = gc.Check(tmp_path, budget=60, dry=False, skip=set())
    monkeypatch.setitem(gc.CAPS, 'env', 8)
    def slow(cap, part):
        part['done'] = 1
        while True: pass  # stopped by the section's alarm
    part = {}
    monkeypatch.setattr(gc, 'GRACE', -7.5)  # the alarm 0.5 s into the 8 s cap
    rec = chk.run('env', lambda cap: slow(cap, part), part)
    assert rec['status'] == 'error' and rec['error'].startswith('timeout after') and rec['done'] == 1, rec
    def bad(cap, part): part['half'] = True; raise ValueError('no such file: x.json')
    part = {}
    rec = chk.run('env', lambda cap: bad(cap, part), part)
    assert rec['status'] == 'error' and rec['error'] == 'ValueError: no such file: x.json' and rec['half'], rec
    rec = chk.run('env', lambda cap: dict(passed=False, rc=1))
    assert rec['status'] == 'failed' and rec['rc'] == 1
    assert json.loads((tmp_path/'gpu_check.json').read_text())['env'] == rec  # written when the section ends


def test_synthetic_captions_have_cocos_lengths(gc, tmp_path, monkeypatch):
    "Without the Karpathy file (a bare GPU machine) the step's captions are synthetic, of COCO's length, with negatives."
    monkeypatch.setenv('HNVL_BENCHMARKS', str(tmp_path))
    caps, src = gc.captions(2000, seed=1)
    assert src.startswith('synthetic') and len(caps) == 2000
    words = [len(c.split()) for c in caps]
    want = sum(w * p for w, p in gc.WORDS.items()) / sum(gc.WORDS.values())
    assert abs(sum(words) / len(words) - want) < 0.3 and min(words) >= 7 and max(words) > 20, (want, words[:20])
    from hnvl.negatives import make_negatives
    assert make_negatives(caps[:200], recipe='ceclip').mask.mean(0)[0] > 0.9  # relation swaps exist


def test_subprocess_timeout_kills_its_workers(gc, tmp_path):
    "A timed-out command (the notebook run, the demo) is stopped with everything it started."
    pid_file = tmp_path/'pid'
    r = gc._subprocess(['bash', '-c', f'sleep 60 & echo $! > {pid_file}; sleep 60'], dict(os.environ), timeout=1)
    assert r['rc'] == 'timeout' and r['seconds'] < 10, r
    import time
    time.sleep(0.2)
    stat = Path(f'/proc/{pid_file.read_text().strip()}/stat')
    assert not stat.exists() or stat.read_text().split(') ')[1].startswith('Z')  # gone (or a zombie being reaped)
    ok = gc._subprocess([sys.executable, '-c', 'import sys; print("x"); sys.exit(3)'], dict(os.environ), timeout=30)
    assert ok['rc'] == 3 and ok['stdout_tail'] == 'x\n'


def test_ship_pretrained_writes_weights_and_record(tmp_path):
    "`tools/ship_pretrained.py` on a tiny recipe: the weights load, the record's hash and SHA-1 match, `shipped_pretrained` finds them."
    import hashlib
    from hnvl.demo import DemoConfig, config_hash, pretrain_config, shipped_pretrained
    from hnvl.model import create_model
    dest, tiny = tmp_path/'assets'/'tiny.pt', dict(pretrain_steps=4, n_train=256, batch_size=32)
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'HNVL_CACHE': str(tmp_path/'cache')}
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'ship_pretrained.py'), '--dest', str(dest),
                        *[f'--{k}={v}' for k, v in tiny.items()]], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(dest.with_suffix('.json').read_text())
    cfg = pretrain_config(DemoConfig(**tiny))
    assert rec['recipe_hash'] == config_hash(cfg, version=False) and rec['recipe']['steps'] == 4
    assert rec['sha1'] == hashlib.sha1(dest.read_bytes()).hexdigest()
    assert [row['step'] for row in rec['log']] and rec['final']['step'] == 4
    assert shipped_pretrained(cfg, path=dest) == dest
    assert shipped_pretrained(pretrain_config(DemoConfig()), path=dest) is None   # another recipe's weights
    import torch
    assert torch.load(dest, weights_only=False)['meta']['config']['out'] is None   # no cache path shipped
    assert create_model('hnvl-tiny', checkpoint=dest).n_params > 0
