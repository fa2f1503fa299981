#!/usr/bin/env python3
"""README.md is rendered from nbs/index.ipynb (Quarto's `nbdev_readme` is not available on our build machines).

Markdown cells are copied; code cells become ```python blocks (cells marked `#| hide` are left out, nbdev
directives are stripped), followed by their text outputs (stdout and plain-text results; index.ipynb is committed
executed by tools/render_notebooks.py) in a plain ``` block. Figures, stderr and errors are left out: README.md never
inlines images; index.ipynb links committed PNGs in nbs/figures/ from its markdown instead. `--check` exits 1 when README.md differs from what index.ipynb
renders."""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
HEADER = '<!-- Rendered from nbs/index.ipynb by .ci/make_readme.py: edit the notebook, not this file. -->\n\n'

def _text(o):
    "An output's text for README.md: stdout, or a result's plain text when it is no figure; else ''."
    if o['output_type'] == 'stream': return ''.join(o['text']) if o['name'] == 'stdout' else ''
    data = o.get('data', {})
    if o['output_type'] not in ('execute_result', 'display_data') or any(k.startswith('image/') for k in data): return ''
    t = ''.join(data.get('text/plain', ''))
    return t + '\n' if t else ''

def render(nb_path=root/'nbs'/'index.ipynb'):
    parts = []
    for c in json.loads(nb_path.read_text(encoding='utf-8'))['cells']:
        src = ''.join(c['source'])
        lines = src.split('\n')
        if c['cell_type'] == 'markdown':   # committed figures are linked, never inlined: nbs/figures/ seen from the root
            parts.append(src.strip().replace('](figures/', '](nbs/figures/')); continue
        directives = [l for l in lines if l.startswith('#|')]
        if any(d.replace(' ', '') in ('#|hide', '#|exporti') for d in directives): continue
        code = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
        if code: parts.append('```python\n' + code + '\n```')
        out = ''.join(_text(o) for o in c.get('outputs', [])).strip('\n')
        if code and out: parts.append('```\n' + out + '\n```')
    return HEADER + '\n\n'.join(p for p in parts if p) + '\n'

if __name__ == '__main__':
    text, readme = render(), root/'README.md'
    if '--check' in sys.argv:
        ok = readme.exists() and readme.read_text(encoding='utf-8') == text
        if not ok: print('README.md differs from the rendering of nbs/index.ipynb', file=sys.stderr)
        sys.exit(0 if ok else 1)
    readme.write_text(text, encoding='utf-8'); print(f'wrote {readme}')
