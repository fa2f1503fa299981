"""The teaching notebooks are committed executed by tools/render_notebooks.py: their outputs belong to their code
now, hold no errors, stay small and survive `nbdev_clean`; the library notebooks stay clean. Nothing is executed here."""
import importlib.util, json, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location('render_notebooks', ROOT/'tools'/'render_notebooks.py')
rn = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(rn)

TEACHING = [p.name for p in rn.existing()]
RENDERED = [n for n in TEACHING if n in rn.read_sidecar()]

def _rendered(name):
    if name not in rn.read_sidecar(): pytest.fail(f"{name} is not rendered: run {rn.COMMAND} {Path(name).stem}")
    return rn.read_nb(rn.NBS/name)

@pytest.mark.parametrize('name', TEACHING)
def test_outputs_are_current(name):
    "A rendered notebook's code cells are the ones its outputs came from (the sidecar's hash is the code's hash now)."
    _rendered(name)
    assert not rn.stale([rn.NBS/name]), rn.stale([rn.NBS/name])[0]

def test_sidecar_names_teaching_notebooks():
    "Every notebook in the sidecar is a teaching notebook that exists."
    for name in rn.read_sidecar(): assert name in TEACHING, f"{rn.SIDECAR.name} lists {name}, not an existing teaching notebook"

@pytest.mark.parametrize('name', TEACHING)
def test_rendered_outputs(name):
    "A rendered notebook has outputs, no error output, and is at most 1.5 MB."
    nb, p = _rendered(name), rn.NBS/name
    outs = [o for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', [])]
    assert outs, f"{name} has no outputs: run {rn.COMMAND} {p.stem}"
    errors = [o['ename'] + ': ' + o['evalue'] for o in outs if o['output_type'] == 'error']
    assert not errors, f"{name} holds error outputs ({errors[0]}): fix it and run {rn.COMMAND} {p.stem}"
    assert p.stat().st_size <= rn.MAX_BYTES, f"{name} is {p.stat().st_size/1e6:.2f} MB, over {rn.MAX_BYTES/1e6:.1f} MB"

def test_index_is_text_only():
    "README.md is rendered from index.ipynb and inlines no images, so index holds no figure."
    nb = rn.read_nb(rn.NBS/'index.ipynb')
    figs = [k for c in nb['cells'] for o in c.get('outputs', []) for k in o.get('data', {}) if k.startswith('image/')]
    assert not figs, f"index.ipynb has figure outputs ({figs[0]}), which README.md would drop"

@pytest.mark.parametrize('name', TEACHING)
def test_nbdev_clean_keeps_rendered(name, tmp_path):
    "`nbdev_clean` (settings.ini: clear_all = False) leaves a rendered notebook byte for byte as committed."
    _rendered(name)
    copy = tmp_path/name; shutil.copy(rn.NBS/name, copy)
    exe = shutil.which('nbdev_clean', path=str(Path(sys.executable).parent)) or shutil.which('nbdev_clean')
    r = subprocess.run([exe, '--fname', str(copy)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert copy.read_bytes() == (rn.NBS/name).read_bytes(), f"nbdev_clean changes {name}: run {rn.COMMAND} {Path(name).stem}"

def test_library_notebooks_stay_clean():
    "Only the teaching notebooks are committed with outputs."
    for p in sorted(rn.NBS.glob('*.ipynb')):
        if p.stem in rn.TEACHING: continue
        n = sum(len(c.get('outputs', [])) for c in rn.read_nb(p)['cells'])
        assert n == 0, f"{p.name} is a library notebook with {n} outputs: nbdev_clean --clear_all --fname nbs/{p.name}"

def test_stale_detected(tmp_path):
    "Editing a code cell of a copy makes it stale; markdown and trailing spaces do not."
    if not RENDERED: pytest.skip("no rendered notebook")
    name = RENDERED[0]; nb = rn.read_nb(rn.NBS/name); copy = tmp_path/name
    def write(nb): copy.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
    md = next(c for c in nb['cells'] if c['cell_type'] == 'markdown')
    code = next(c for c in nb['cells'] if c['cell_type'] == 'code')
    md['source'] = rn._src(md) + '\nMore prose.'
    code['source'] = [l.rstrip('\n') + '  \n' for l in rn._src(code).splitlines()]
    write(nb)
    assert rn.stale([copy]) == []
    code['source'] = rn._src(code) + '\nx = 1'
    write(nb)
    msg = rn.stale([copy])
    assert len(msg) == 1 and name in msg[0] and f"{rn.COMMAND} {Path(name).stem}" in msg[0], msg
    assert rn.code_hash(nb) != rn.read_sidecar()[name]
