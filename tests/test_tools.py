"The prepared GPU check (`tools/gpu_check.py`) in its CPU `--dry` mode: it runs end to end and writes its record."
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run(tmp_path):
    env = {**os.environ, 'OUT': str(tmp_path), 'PYTHONPATH': str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'gpu_check.py'), '--dry'], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path/'gpu_check.json').read_text())
    # float64 CPU vs float32 on the (here: CPU) device, at the paper's shapes
    assert set(res['loss_parity']) == {'loss', 'itc', 'imc', 'cmr'}
    assert all(v['abs_diff'] < 1e-4 for v in res['loss_parity'].values()), res['loss_parity']
    for name in ('clip_ft', 'ce_clip'):   # one step of the paper's step timing ran, its loss terms are numbers
        step = res[f'paper_step_{name}']
        assert step['s_per_step'] > 0 and all(isinstance(v, float) for v in step['last_terms'].values()), step
    assert r.stdout.strip().splitlines()[-1].startswith('ratio ce_clip/clip step time')
