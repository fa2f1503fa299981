"""Bad input: every user mistake in a console script is one line `<script>: error: ...` on stderr (exit 2, no traceback;
`--debug` / HNVL_DEBUG=1 show it); bad annotation files and images fail naming the culprit. The in-process error
messages a reader should see are checked in the notebooks (nbs/00_core, 01a_negatives_io, 05_data, 05a_coco,
07_benchmarks)."""
import json, os, subprocess, sys, warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hnvl.core import console_entry, open_image

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {'hnvl_train': 'hnvl.train', 'hnvl_eval': 'hnvl.benchmarks', 'hnvl_negatives': 'hnvl.negatives_io',
           'hnvl_demo': 'hnvl.demo', 'hnvl_image_cache': 'hnvl.coco', 'hnvl_reproduce': 'hnvl.reproduce',
           'hnvl_context': 'hnvl.filter'}


def _run(script, *args, debug_env=False, timeout=600):
    "Run the console script `script` the way its entry point does (sys.argv[0] = the script's name)."
    code = f"import sys; sys.argv[0] = {script!r}; from {SCRIPTS[script]} import _cli; _cli()"
    env = {k: v for k, v in os.environ.items() if k != 'HNVL_DEBUG'}
    env['PYTHONPATH'] = str(ROOT) + os.pathsep + env.get('PYTHONPATH', '')
    if debug_env: env['HNVL_DEBUG'] = '1'
    return subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def _one_line(r, script, *names):
    "Exit status 2, stderr one line `<script>: error: ...` naming every string in `names`, no traceback."
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith(f'{script}: error: '), r.stderr[-2000:]
    assert 'Traceback' not in r.stderr
    for n in names: assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('bad')
    (d/'empty').mkdir()
    (d/'bad.json').write_text('{"annotations": [\n  {"id": 1, "caption": "a dog"},\n]}\n')
    (d/'notes.txt').write_text('these are my notes, not a checkpoint\n')
    (d/'caps.txt').write_text('a dog on a red sofa\na cat under a wooden table\n')
    return d


CASES = [('hnvl_train', ['--lr', '-1'], ['lr', '-1']),
         ('hnvl_train', ['--preset', 'nope'], ['preset', "'nope'"]),
         ('hnvl_train', ['--set', 'bogus=1'], ['bogus']),
         ('hnvl_train', ['--steps', 'x'], ['--steps', "'x'"]),
         ('hnvl_eval', ['--benchmarks', 'sugarcrepe', '--data-root', '{d}/empty'], ['add_att.json', '{d}/empty']),
         ('hnvl_eval', ['--benchmarks', 'aro'], ["'aro'"]),
         ('hnvl_negatives', ['{d}/bad.json', '{d}/out.jsonl.gz'], ['{d}/bad.json', 'line 3 column 1']),
         ('hnvl_negatives', ['{d}/missing.txt', '{d}/out.jsonl.gz'], ['{d}/missing.txt', 'No such file']),
         ('hnvl_negatives', ['{d}/caps.txt', '{d}/out.jsonl.gz', '--context', '{d}/none.npz'], ['--context', '{d}/none.npz']),
         ('hnvl_context', ['{d}/missing.txt', '{d}/ctx.npz'], ['{d}/missing.txt', 'No such file']),
         ('hnvl_context', ['{d}/notes.txt', '{d}/ctx.npz', '--bogus'], ['--bogus']),
         ('hnvl_demo', ['--world', 'nope', '--bogus'], ['--bogus'])]


@pytest.mark.parametrize('script,args,names', CASES, ids=[f"{s}:{' '.join(a)}" for s, a, _ in CASES])
def test_user_mistake_is_one_line(files, script, args, names):
    f = lambda s: s.format(d=files)
    _one_line(_run(script, *map(f, args)), script, *map(f, names))


def test_text_file_as_checkpoint(files):
    _one_line(_run('hnvl_train', '--checkpoint', files/'notes.txt', '--steps', '1', '--out', files/'run',
                   '--set', 'progress=false'), 'hnvl_train', 'notes.txt')


def test_debug_shows_the_traceback(files):
    args = [files/'bad.json', files/'out.jsonl.gz']
    for r in (_run('hnvl_negatives', *args, '--debug'), _run('hnvl_negatives', *args, debug_env=True)):
        assert r.returncode != 0 and 'Traceback' in r.stderr and 'JSONDecodeError' in r.stderr, r.stderr[-2000:]


def test_interrupt_is_one_line_exit_130(tmp_path):
    script = tmp_path/'tool'  # a file: the parser reads the function's source for its docments
    script.write_text("from hnvl.core import console_entry\n"
                      "def f(n:int=1):\n    raise KeyboardInterrupt\nconsole_entry(f)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert (r.returncode, r.stderr) == (130, 'tool: error: interrupted\n')


OWN = {'hnvl_train': ['--preset', '--lr', '--set', 'peak learning rate'],
       'hnvl_eval': ['--benchmarks', '--data_root', '--skip_missing', 'comma-separated benchmark names'],
       'hnvl_negatives': ['src', '--recipe', '--trust_pickle', 'output cache', '--filter', '--context'],
       'hnvl_context': ['src', 'out', '--quiet', 'count table'],
       'hnvl_demo': ['--quick', '--no_progress', '--configs', 'fine-tuning seeds', '--interpolate'],
       'hnvl_image_cache': ['ann_file', '--image_size', '--overwrite', 'longest stored side'],
       'hnvl_reproduce': ['--coco_images', '--coco_ann', '--pretrained', '--benchmarks_root']}


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_help_lists_the_scripts_own_options(script, monkeypatch, capsys):
    import importlib
    monkeypatch.setattr(sys, 'argv', [f'/usr/local/bin/{script}', '--help'])
    with pytest.raises(SystemExit) as e: importlib.import_module(SCRIPTS[script])._cli()
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith(f'usage: {script} ') and '--debug' in out
    for o in OWN[script]: assert o in out, (script, o)


@pytest.mark.parametrize('flag', ['--spacy-model', '--spacy_model'])
def test_dashed_and_underscored_flags(files, flag, tmp_path):
    from hnvl.negatives_io import hnvl_negatives, load_negatives
    out = tmp_path/'n.jsonl.gz'
    argv = [str(files/'caps.txt'), str(out), flag, 'none', '--quiet', '--chunk', '1']
    console_entry(hnvl_negatives, argv)  # exits only on an error
    assert load_negatives(out)[0] == ['a dog on a red sofa', 'a cat under a wooden table']


# ---- images -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp('img')
    Image.new('CMYK', (20, 10), (0, 255, 0, 0)).save(d/'cmyk.jpg')
    Image.new('L', (20, 10), 100).save(d/'grey.png')
    Image.fromarray(np.full((10, 20), 65535, np.uint16)).save(d/'deep.png')  # 16-bit greyscale PNG
    Image.new('RGB', (64, 64), (10, 20, 30)).save(d/'ok.jpg')
    (d/'cut.jpg').write_bytes((d/'ok.jpg').read_bytes()[:400])
    Image.new('1', (10_000, 10_000)).save(d/'huge.png')  # 100 M pixels, a few KB on disk
    return d


@pytest.mark.parametrize('name,rgb', [('cmyk.jpg', None), ('grey.png', (100, 100, 100)), ('deep.png', (255, 255, 255))])
def test_image_modes_become_rgb(images, name, rgb):
    from hnvl.benchmarks import FolderImages
    im = FolderImages(images).load(name)
    assert im.mode == 'RGB' and im.size == (20, 10)
    if rgb: assert im.getpixel((0, 0)) == rgb


@pytest.mark.parametrize('name,msg', [('cut.jpg', 'truncated or corrupt image'),
                                      ('huge.png', 'image is 10000x10000 = 100,000,000 pixels, over the limit')])
def test_bad_image_names_the_file(images, name, msg):
    from hnvl.benchmarks import FolderImages
    with pytest.raises(ValueError, match=msg) as e: FolderImages(images).load(name)
    assert str(images/name) in str(e.value)


def test_huge_image_allowed_when_asked(images, monkeypatch):
    monkeypatch.setenv('HNVL_MAX_IMAGE_PIXELS', str(10**8))
    assert open_image(images/'huge.png').size == (10_000, 10_000)


def test_hnvl_limit_replaces_pillows(images, monkeypatch):
    "HNVL_MAX_IMAGE_PIXELS=0 lifts the limit even past twice Pillow's own, where Pillow alone refuses to open the file."
    from PIL import Image
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 10**7)  # Pillow alone: an error over 2e7 pixels
    monkeypatch.setenv('HNVL_MAX_IMAGE_PIXELS', '0')
    assert open_image(images/'huge.png').size == (10_000, 10_000)
    assert Image.MAX_IMAGE_PIXELS == 10**7  # Pillow's setting is restored


def test_coco_dataset_bad_image_names_it(tmp_path, images):
    from hnvl.core import save_json
    from hnvl.data import CocoHardNegatives
    save_json({'images': [{'id': 1, 'file_name': 'huge.png'}],
               'annotations': [{'id': 5, 'image_id': 1, 'caption': 'x'}]}, tmp_path/'c.json')
    ds = CocoHardNegatives(tmp_path/'c.json', images, None, lambda im: im)
    with pytest.raises(ValueError, match=r'cannot read COCO image: .*huge\.png: image is 10000x10000'): ds.load_image(0)


# ---- annotation files and captions ------------------------------------------------------------------------------------

def test_benchmark_json_malformed_names_file_and_position(tmp_path):
    from hnvl.benchmarks import load
    (tmp_path/'add_att.json').write_text('{"0": {"filename": "a.jpg", "caption": "x"\n "negative_caption": "y"}}')
    with pytest.raises(json.JSONDecodeError, match=r"add_att\.json: Expecting ',' delimiter: line 2 column 2"):
        load('sugarcrepe', tmp_path)


def test_benchmark_record_missing_key_names_file_record_and_key(tmp_path):
    from hnvl.benchmarks import load, SUGARCREPE_SUBSETS
    for s in SUGARCREPE_SUBSETS:
        rec = {'filename': 'a.jpg', 'caption': 'x', 'negative_caption': 'y'}
        (tmp_path/f'{s}.json').write_text(json.dumps({'7': rec}))
    (tmp_path/'swap_obj.json').write_text(json.dumps({'12': {'filename': 'a.jpg', 'caption': 'x'}}))
    with pytest.raises(ValueError, match=r"swap_obj\.json: record '12': missing key 'negative_caption'"):
        load('sugarcrepe', tmp_path)
    ok = '{"image_0": "a", "image_1": "b", "caption_0": "x", "caption_1": "y"}'
    (tmp_path/'examples.jsonl').write_text(ok + '\n{"id": 1,\n')
    with pytest.raises(ValueError, match=r'examples\.jsonl: line 2 column 10'): load('winoground', tmp_path)


def test_captions_that_just_fit_the_context_do_not_warn():
    import open_clip, torch
    from hnvl.data import collate_hard_negatives
    tok = open_clip.get_tokenizer('ViT-B-32')
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # exactly 75 BPE tokens + start/end fill the context without truncation
        out = collate_hard_negatives([(torch.zeros(3, 2, 2), 'dog ' * 75, ['cat'], [True])], tok)
    assert out['texts'].shape == (2, 77)
