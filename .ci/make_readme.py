#!/usr/bin/env python3
"""README.md is rendered from nbs/index.ipynb (Quarto's `nbdev_readme` is not available on our build machines).

Markdown cells are copied; code cells become ```python blocks (cells marked `#| hide` are left out, nbdev
directives are stripped). `--check` exits 1 when README.md differs from what index.ipynb renders."""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
HEADER = '<!-- Rendered from nbs/index.ipynb by .ci/make_readme.py: edit the notebook, not this file. -->\n\n'

def render(nb_path=root/'nbs'/'index.ipynb'):
    parts = []
    for c in json.loads(nb_path.read_text(encoding='utf-8'))['cells']:
        src = ''.join(c['source'])
        lines = src.split('\n')
        if c['cell_type'] == 'markdown': parts.append(src.strip()); continue
        directives = [l for l in lines if l.startswith('#|')]
        if any(d.replace(' ', '') in ('#|hide', '#|exporti') for d in directives): continue
        code = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
        if code: parts.append('```python\n' + code + '\n```')
    return HEADER + '\n\n'.join(p for p in parts if p) + '\n'

if __name__ == '__main__':
    text, readme = render(), root/'README.md'
    if '--check' in sys.argv:
        ok = readme.exists() and readme.read_text(encoding='utf-8') == text
        if not ok: print('README.md differs from the rendering of nbs/index.ipynb', file=sys.stderr)
        sys.exit(0 if ok else 1)
    readme.write_text(text, encoding='utf-8'); print(f'wrote {readme}')
