#!/usr/bin/env python3
"""Render the teaching notebooks in place: run them on the CPU, seeded, keep their outputs, clean them as
`nbdev_clean` does, and record a hash of each one's code cells in `nbs/rendered.json`.

    python tools/render_notebooks.py                        # every teaching notebook that exists
    python tools/render_notebooks.py 10_tutorial_ceclip     # one (with or without nbs/ and .ipynb)
    python tools/render_notebooks.py --check                # no execution: exit 1 when outputs are stale

Library notebooks stay clean (no outputs); only `TEACHING` notebooks are committed executed. Each notebook runs in a
fresh interpreter (PYTHONHASHSEED=0, no GPU visible, Agg, an empty hnvl cache) with python, numpy and torch seeded
before its first cell, and the same cells as `nbdev_test` (cells flagged with settings.ini's `tst_flags` or
`#| eval: false` are skipped and keep no outputs). Figures are PNGs at the figure's own dpi (no retina doubling).
The render (and only it: HNVL_WRITE_FIGURES=1) also writes
the small PNGs in nbs/figures/ that README.md links. A render prints its time and size, and compares its outputs
with the ones it replaces (text, then figure bytes); a notebook over `MAX_BYTES` is left unchanged and the command
fails. tests/test_notebooks.py checks the result."""
import hashlib, json, os, subprocess, sys, tempfile, time
from pathlib import Path
from fastcore.script import Param

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
SIDECAR = NBS/'rendered.json'
# committed executed, in this order
TEACHING = ['index', '08_viz', '10_tutorial_ceclip', '11_separation', '12_results', '13_retrain']
MAX_BYTES = 1_500_000  # per rendered notebook
SEED = 0
COMMAND = 'python tools/render_notebooks.py'

def nb_path(name:str) -> Path:
    "The teaching notebook `name` ('10_tutorial_ceclip', '10_tutorial_ceclip.ipynb' or 'nbs/10_tutorial_ceclip.ipynb')."
    stem = Path(name).name.removesuffix('.ipynb')
    if stem not in TEACHING:
        raise ValueError(f"{name!r} is not a teaching notebook (one of {', '.join(TEACHING)}); library notebooks stay clean")
    p = NBS/f'{stem}.ipynb'
    if not p.exists(): raise ValueError(f"{name!r}: {p.relative_to(ROOT)} does not exist")
    return p

def existing() -> list:
    "The teaching notebooks that exist, as paths."
    return [NBS/f'{s}.ipynb' for s in TEACHING if (NBS/f'{s}.ipynb').exists()]

def _src(cell) -> str:
    s = cell.get('source', '')
    return ''.join(s) if isinstance(s, list) else s

def code_hash(nb:dict) -> str:
    "sha256 of a notebook's code cells (sources only: line ends and trailing spaces normalised, empty cells dropped)."
    codes = []
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        s = '\n'.join(l.rstrip() for l in _src(c).replace('\r\n', '\n').split('\n')).strip('\n')
        if s: codes.append(s)
    return hashlib.sha256(json.dumps(codes, ensure_ascii=False).encode()).hexdigest()

def read_nb(p:Path) -> dict: return json.loads(Path(p).read_text(encoding='utf-8'))

def read_sidecar() -> dict:
    "{notebook file name: code hash at its last render}."
    if not SIDECAR.exists(): return {}
    return {k: v['code_sha256'] for k, v in json.loads(SIDECAR.read_text(encoding='utf-8'))['notebooks'].items()}

def write_sidecar(hashes:dict):
    d = dict(about=f"Code-cell hashes of the teaching notebooks when their outputs were rendered (written by {COMMAND}; "
                   "tests/test_notebooks.py compares them with the notebooks' code now).", seed=SEED,
             notebooks={k: dict(code_sha256=hashes[k]) for k in sorted(hashes)})
    tmp = SIDECAR.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(d, indent=1, ensure_ascii=False) + '\n', encoding='utf-8'); os.replace(tmp, SIDECAR)

def unrendered() -> list:
    "The teaching notebooks that exist but have never been rendered."
    known = read_sidecar()
    return [p for p in existing() if p.name not in known]

def stale(paths=None) -> list:
    "One line per rendered notebook (of `paths`, default all) whose code cells changed since its outputs were rendered."
    known, out = read_sidecar(), []
    for p in paths or [NBS/k for k in known]:
        if p.name not in known: continue
        if not p.exists(): out.append(f"{p.name} is in {SIDECAR.relative_to(ROOT)} but does not exist: remove its entry")
        elif code_hash(read_nb(p)) != known[p.name]:
            out.append(f"{p.name}: code cells changed after its outputs were rendered: run {COMMAND} {p.stem}")
    return out

def _skipped(cell, flags) -> bool:
    "Whether `nbdev_test` skips this code cell (a test flag or `#| eval: false`)."
    from fastcore.basics import AttrDict
    from nbdev.process import extract_directives
    d = extract_directives(AttrDict(source=_src(cell)), remove=False)
    return bool(flags & d.keys()) or d.get('eval:', [''])[0].lower() == 'false'

def _worker(src:str, dst:str):
    "In a fresh interpreter: run `src`'s cells and write the notebook with their outputs to `dst` (exit 1 on an error)."
    from execnb.shell import CaptureShell
    from nbdev.config import get_config
    flags = set(get_config(path=ROOT).tst_flags.split())
    nb = read_nb(src)
    sh = CaptureShell(Path(src), mpl_format='png')
    sh.run(f"from hnvl.core import seed_everything as _s; _s({SEED}); del _s")
    for i, c in enumerate(nb['cells']):  # the working directory is the notebook's folder, as under nbdev_test
        if c['cell_type'] != 'code': continue
        c['outputs'] = [] if _skipped(c, flags) else [dict(o) for o in sh.run(_src(c))]
        if sh.exc is not None:
            import traceback
            sys.stderr.write(f"{src}, cell {i}:\n" + ''.join(traceback.format_exception(type(sh.exc), sh.exc, sh.exc.__traceback__)))
            msg = str(sh.exc).strip().splitlines()
            print(f"cell {i} raised {type(sh.exc).__name__}" + (f": {msg[0]}" if msg else ''), file=sys.stderr); sys.exit(1)
    Path(dst).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')

def _clean(p:Path):
    "Clean `p` in place exactly as `nbdev_clean --fname p` does (settings.ini's clean options)."
    from nbdev.clean import nbdev_clean
    nbdev_clean.__wrapped__(fname=str(p))

def _outputs(nb:dict):
    "Per code cell: its text outputs; and every figure as (cell index, its base64 bytes)."
    text, figs = [], []
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code': continue
        t = []
        for o in c.get('outputs', []):
            if o['output_type'] == 'stream': t.append(''.join(o['text']))
            for k, v in o.get('data', {}).items():
                v = ''.join(v) if isinstance(v, list) else v
                if k.startswith('image/'): figs.append((i, v))
                elif k.startswith('text/'): t.append(v)
            if o['output_type'] == 'error': t.append(o['ename'] + ': ' + o['evalue'])
        text.append('\n'.join(t))
    return text, figs

def compare(old:dict, new:dict) -> str:
    "What changed between two renders of a notebook: text outputs (cells) and figures (bytes)."
    (t0, f0), (t1, f1) = _outputs(old), _outputs(new)
    if not any(t0) and not f0: return 'first render'
    if len(t0) != len(t1): return 'code cells added or removed'
    diff = [i for i, (a, b) in enumerate(zip(t0, t1)) if a != b]
    text = 'text outputs unchanged' if not diff else f"text outputs changed in {len(diff)} of {len(t1)} code cells"
    if len(f0) != len(f1): return f"{text}; {len(f0)} -> {len(f1)} figures"
    if not f1: return f"{text}; no figures"
    nd = [i for (i, a), (_, b) in zip(f0, f1) if a != b]
    return f"{text}; figures: " + (f"all {len(f1)} byte-identical" if not nd else
                                   f"{len(nd)} of {len(f1)} differ in bytes (cells {', '.join(map(str, nd))})")

def render(p:Path, debug:bool=False) -> str:
    "Render the notebook `p` in place and record its code hash; returns the line printed for it."
    old = read_nb(p)
    env = dict(os.environ, PYTHONHASHSEED='0', CUDA_VISIBLE_DEVICES='', MPLBACKEND='Agg',
               HNVL_WRITE_FIGURES='1')   # the PNGs README links (nbs/figures/) are written by the render only
    with tempfile.TemporaryDirectory(prefix='hnvl-render-') as tmp:
        env['HNVL_CACHE'] = str(Path(tmp)/'cache')
        out = Path(tmp)/p.name
        code = f"import sys; sys.path.insert(0, {str(ROOT/'tools')!r}); import render_notebooks as r; r._worker({str(p)!r}, {str(out)!r})"
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, '-c', code], env=env, cwd=str(p.parent), capture_output=True, text=True)
        secs = time.perf_counter() - t0
        if r.returncode:
            if debug: sys.stderr.write(r.stderr)
            last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f'exit status {r.returncode}'
            raise RuntimeError(f"{p.name}: {last} (not rendered; --debug shows the traceback)")
        _clean(out)
        size = out.stat().st_size
        if size > MAX_BYTES:
            raise RuntimeError(f"{p.name}: rendered {size/1e6:.2f} MB, over the {MAX_BYTES/1e6:.1f} MB limit: "
                               "fewer or smaller figures (left unchanged)")
        new = read_nb(out)
        tmp_p = p.with_name(p.name + '.tmp'); tmp_p.write_bytes(out.read_bytes()); os.replace(tmp_p, p)
    hashes = read_sidecar(); hashes[p.name] = code_hash(new); write_sidecar(hashes)
    return f"{p.name}: rendered in {secs:.0f} s, {size/1e3:.0f} kB; {compare(old, new)}"

def render_notebooks(nbs:Param("teaching notebooks to render (default: every one that exists)", str, opt=False, nargs='*')=None,
                     check:bool=False, # no execution: list the rendered notebooks whose code changed since, exit 1 if any
                     debug:bool=False, # on an error, show the full traceback
                    ):
    "Render the teaching notebooks in place (CPU, seeded), clean them as nbdev_clean does and record their code hashes."
    paths = [nb_path(n) for n in nbs] if nbs else existing()
    if check:
        bad = stale(paths)
        for p in unrendered():
            if p in paths: print(f"note: {p.name} has never been rendered: run {COMMAND} {p.stem}", file=sys.stderr)
        for l in bad: print(l, file=sys.stderr)
        sys.exit(1 if bad else 0)
    for p in paths:
        try: print(render(p, debug), flush=True)
        except RuntimeError as e:
            if debug: raise
            print(f"render_notebooks: error: {e}", file=sys.stderr); sys.exit(1)

def _cli():
    from hnvl.core import call_cli
    call_cli(render_notebooks, prog='render_notebooks')

if __name__ == '__main__': _cli()
