"""`hnvl_reproduce` end to end through the installed console script, on a generated COCO-shaped folder with the tiny
profile (CPU): a run stopped after the fine-tune's first checkpoint, the run that continues it (report, numbers,
skipped benchmarks), a third run that reuses every stage, and one-line errors for missing or wrong inputs.
The stages' own behaviour (plans, reuse keys, the report's tables) is checked in nbs/09a_reproduce.ipynb."""
import json, os, re, shutil, subprocess, sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from hnvl.core import console_entry, load_json
from hnvl.reproduce import make_coco_like, hnvl_reproduce

ROOT = Path(__file__).resolve().parents[1]
STAGES = ('negatives', 'finetune', 'eval_pretrained', 'eval_finetuned', 'report')
KEPT = ('negatives.jsonl.gz', 'finetune/model.pt', 'finetune/checkpoint.pt', 'eval/pretrained.json',
        'eval/finetuned.json', 'report.md', 'results.json', 'benchmarks.png')


def _script() -> list:
    "The installed `hnvl_reproduce` (settings.ini console_scripts); else its entry point run by this Python."
    exe = shutil.which('hnvl_reproduce', path=str(Path(sys.executable).parent))
    if exe: return [exe]
    return [sys.executable, '-c', "import sys; sys.argv[0] = 'hnvl_reproduce'; from hnvl.reproduce import _cli; _cli()"]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    import torch
    from hnvl.model import create_model, save_model
    d = tmp_path_factory.mktemp('reproduce')
    fake = make_coco_like(d/'data')
    torch.manual_seed(1)
    start = save_model(create_model('hnvl-tiny'), d/'start.pt')  # a local checkpoint as the "pretrained" weights
    out = d/'out'
    args = ['--coco_images', fake['coco_images'], '--coco_ann', fake['coco_ann'], '--pretrained', start,
            '--benchmarks_root', fake['benchmarks_root'], '--out', out, '--profile', 'tiny', '--no_progress']
    env = dict(os.environ, HNVL_CACHE=str(d/'cache'), PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1')
    env.pop('HNVL_DEBUG', None)
    run = lambda *extra: subprocess.run(_script() + [str(a) for a in args + list(extra)], capture_output=True,
                                        text=True, env=env, timeout=900, cwd=d)
    first = run('--stop_after', '2')
    after_first = dict(state=load_json(out/'state.json'), report=(out/'report.md').exists(),
                       metrics=(out/'finetune'/'metrics.jsonl').read_text().splitlines())
    second = run()
    mtimes = {f: (out/f).stat().st_mtime_ns for f in KEPT}
    after_second = load_json(out/'state.json')
    third = run()
    return SimpleNamespace(d=d, out=out, fake=fake, start=start, args=args, first=first, second=second, third=third,
                           after_first=after_first, after_second=after_second, mtimes=mtimes,
                           state=load_json(out/'state.json'))


def _ok(r):
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'Traceback' not in r.stderr, r.stderr[-3000:]


def test_stopped_run_continues(runs):
    "`--stop_after 2` ends after the first checkpoint with no evaluation; the next run resumes from it, not from 0."
    _ok(runs.first)
    assert 'stopped at step 2 of 6' in runs.first.stderr, runs.first.stderr
    st = runs.after_first['state']
    assert st['runs'][-1]['stages'].keys() == {'negatives', 'finetune'}
    assert st['runs'][-1]['stages']['finetune']['action'] == 'stopped' and not st['stages']['finetune']['done']
    assert not runs.after_first['report']
    assert [json.loads(l)['step'] for l in runs.after_first['metrics']] == [1, 2]
    _ok(runs.second)
    assert "resuming from" in runs.second.stderr and "(step 2)" in runs.second.stderr, runs.second.stderr
    actions = {k: v['action'] for k, v in runs.state['runs'][1]['stages'].items()}
    assert actions == dict(negatives='reused', finetune='continued', eval_pretrained='ran', eval_finetuned='ran',
                           report='ran'), actions
    rows = (runs.out/'finetune'/'metrics.jsonl').read_text().splitlines()
    assert [json.loads(l)['step'] for l in rows] == list(range(1, 7))
    assert rows[:2] == runs.after_first['metrics']  # the first run's rows are kept, not retrained
    assert load_json(runs.out/'finetune'/'config.json')['checkpoint'] == str(runs.start)


def test_report_numbers_and_skipped(runs):
    "report.md holds both models' numbers beside the published ones, and names every skipped benchmark's missing file."
    md = (runs.out/'report.md').read_text()
    assert runs.second.stdout.strip().splitlines()[-1] == str(runs.out/'report.md')
    res = load_json(runs.out/'results.json')['models']
    assert set(res['pretrained']) == set(res['finetuned']) == {'sugarcrepe', 'coco_retrieval', 'coco_order'}
    for key in ('replace', 'swap', 'add'):
        pre, ft = (res[m]['sugarcrepe']['metrics'][key] for m in ('pretrained', 'finetuned'))
        pub = {'replace': '80.2 | 85.0 | 87.0', 'swap': '62.7 | 75.3 | 74.9', 'add': '72.7 | 85.8 | 92.9'}[key]
        assert f"| sugarcrepe/{key} | {pre:.1f} | {ft:.1f} | {pub} |" in md, md
    for m in ('i2t_R@1', 't2i_R@1'):
        assert re.search(rf"\| coco_retrieval \| {re.escape(m)} \| \d+\.\d \| \d+\.\d \| [+-]\d+\.\d \|", md), m
    assert re.search(r"\| coco_order \| p_at_1 \| \d+\.\d \| \d+\.\d \|", md)
    assert '| vg_relation/macro_acc | – | – | 59.3 | 80.2 | 83.0 |' in md
    skipped = dict(re.findall(r"^- `(\w+)`: (.+)$", md, flags=re.M))
    assert set(skipped) == {'vg_relation', 'vg_attribution', 'flickr30k_order', 'valse', 'vl_checklist', 'winoground',
                            'flickr30k_retrieval', 'imagenet'}, skipped
    for name, file in (('vg_relation', 'visual_genome_relation.json'), ('valse', 'existence.json'),
                       ('winoground', 'examples.jsonl'), ('flickr30k_retrieval', 'flickr30k_test.json')):
        assert f"{file} not found" in skipped[name], (name, skipped[name])
    for png in re.findall(r"!\[\w+\]\((\w+\.png)\)", md):
        assert (runs.out/png).stat().st_size > 1000, png
    assert {'benchmarks.png', 'losses.png', 'theta.png', 'separation.png'} <= set(re.findall(r"\((\w+\.png)\)", md))


def test_pretrained_row_is_the_given_checkpoint(runs):
    "The report's 'pretrained' numbers are those of the checkpoint given as --pretrained, scored here directly."
    import torch
    from hnvl.benchmarks import load, score
    from hnvl.model import create_model
    torch.set_num_threads(1)
    b = load('sugarcrepe', runs.fake['benchmarks_root'], runs.fake['coco_images'].parent)
    want = score(create_model('hnvl-tiny', checkpoint=runs.start), b).metrics
    got = load_json(runs.out/'eval'/'pretrained.json')['benchmarks']['sugarcrepe']['metrics']
    assert got == pytest.approx(want)
    ft = load_json(runs.out/'eval'/'finetuned.json')['benchmarks']['sugarcrepe']['metrics']
    assert ft == pytest.approx(score(create_model('hnvl-tiny', checkpoint=runs.out/'finetune'/'model.pt'), b).metrics)


def test_rerun_reuses_every_stage(runs):
    "A third run of the same command retrains nothing, rescores nothing and rewrites nothing."
    _ok(runs.third)
    changed = {s: (runs.after_second['stages'][s]['key'], runs.state['stages'][s]['key']) for s in STAGES
               if json.dumps(runs.after_second['stages'][s]['key'], sort_keys=True)
               != json.dumps(runs.state['stages'][s]['key'], sort_keys=True)}
    actions = {k: v['action'] for k, v in runs.state['runs'][-1]['stages'].items()}
    assert actions == {s: 'reused' for s in STAGES}, (actions, changed)
    assert runs.third.stderr.count(': reused') == len(STAGES), runs.third.stderr
    assert {f: (runs.out/f).stat().st_mtime_ns for f in KEPT} == runs.mtimes


def _cli_error(capsys, argv):
    "Run the console entry in-process: exit status 2 and one stderr line `hnvl_reproduce: error: ...`; that line."
    with pytest.raises(SystemExit) as e: console_entry(hnvl_reproduce, [str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith('hnvl_reproduce: error: '), err
    return err[0]


def test_missing_inputs_are_one_line(runs, capsys, tmp_path):
    fake, out = runs.fake, tmp_path/'out'
    assert '--coco_ann is required' in _cli_error(capsys, ['--coco_images', fake['coco_images'], '--out', out])
    assert '--coco_images is required' in _cli_error(capsys, ['--coco_ann', fake['coco_ann'], '--out', out])
    line = _cli_error(capsys, ['--coco_images', fake['coco_images'], '--coco_ann', tmp_path/'nope.json', '--out', out])
    assert f"coco_ann file not found: '{tmp_path/'nope.json'}'" in line
    line = _cli_error(capsys, ['--coco_images', tmp_path/'nowhere', '--coco_ann', fake['coco_ann'], '--out', out])
    assert f"coco_images folder not found: '{tmp_path/'nowhere'}'" in line
    line = _cli_error(capsys, ['--coco_images', tmp_path, '--coco_ann', fake['coco_ann'], '--out', out])
    assert 'does not hold the images of coco_ann' in line and 'COCO_train2014_000000000001.jpg' in line
    assert not out.exists()  # nothing was started


def test_other_settings_refused(runs, capsys):
    "The finished run folder is not overwritten by a run with another learning rate: one line names the setting."
    line = _cli_error(capsys, runs.args + ['--lr', '0.01'])
    assert 'holds a fine-tune with other settings (lr=0.0001 there, 0.01 here)' in line, line
    assert (runs.out/'finetune'/'model.pt').stat().st_mtime_ns == runs.mtimes['finetune/model.pt']
