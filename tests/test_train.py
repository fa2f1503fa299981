"""hnvl.train: fit end to end on the tiny preset, the CLI, checkpoint/resume round trip."""
import json, math, subprocess, sys
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
    with pytest.raises(ValueError, match="data='coco' needs negatives_path"): fit(TrainConfig.preset('tiny', out=str(tmp_path/'run1'), **coco))
    (tmp_path/'img'/'3.jpg').unlink()
    with pytest.raises(FileNotFoundError, match='3.jpg'):
        fit(TrainConfig.preset('tiny', out=str(tmp_path/'run2'), data='coco', coco_ann=str(tmp_path/'captions.json'),
                               coco_images=str(tmp_path/'img'), negatives_path=str(tmp_path/'negs.jsonl.gz'), batch_size=4, steps=1, progress=False))
