"""The demo's named worlds (`hnvl.demo.DEMO_WORLDS`): what makes each one hard, checked on the worlds themselves.

`crowded` is built so that attribute binding is harder for a bag of words, as it is for real CLIP on ARO's
VG-Attribution: besides the described pair, the image holds a third object with the subject's shape in the object's
colour, so a colour-swapped caption names a colour-shape pair that the image holds, and no text-only model can tell
a swapped caption from the true one."""
import math
from collections import Counter

import numpy as np
import pytest

from hnvl.data import WorldConfig, make_world, make_task, zero_shot_prompts
from hnvl.demo import DEMO_WORLDS


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv('HNVL_CACHE', str(tmp_path / 'cache'))


CROWDED = WorldConfig(**DEMO_WORLDS['crowded'])


def _combos(scene):
    return {(o['color'], o['shape']) for o in scene['objects']}


def test_crowded_distractor_carries_the_swapped_combination():
    w = make_world(CROWDED, 1000, 'train', cache=False)
    held, carried, placed = set(CROWDED.heldout), 0, 0
    for s in w.scenes:
        a, b = s['objects'][s['subject']], s['objects'][s['object']]
        own = {(a['color'], a['shape']), (b['color'], b['shape'])}
        swapped = (b['color'], a['shape'])   # the subject's shape in the object's colour
        if len(s['objects']) < 3: continue   # 32-pixel images: a distractor is dropped when it does not fit
        placed += 1
        d = s['objects'][2]
        # held-out combinations never occur in training, and a pair sharing a colour has nothing to swap
        if swapped not in own | held:
            assert (d['color'], d['shape']) == swapped, (d, a, b)
            carried += 1
    assert placed > 0.85 * len(w.scenes), placed
    assert carried > 0.5 * len(w.scenes), carried


def _bigram_model(captions):
    "Add-one bigram log-probability of a caption, counted on `captions` (a text-only model of the world)."
    uni, bi = Counter(), Counter()
    for c in captions:
        ws = ['<s>'] + c.split() + ['</s>']
        uni.update(ws[:-1])
        bi.update(zip(ws[:-1], ws[1:]))
    V = len(uni) + 1
    def logp(c):
        ws = ['<s>'] + c.split() + ['</s>']
        return sum(math.log((bi[(x, y)] + 1) / (uni[x] + V)) for x, y in zip(ws[:-1], ws[1:]))
    return logp


def test_crowded_attribute_swap_is_at_chance_for_text_only_models():
    train = make_world(CROWDED, 5000, 'train', cache=False)
    task = make_task(CROWDED, 'attribute_swap', 800, 'test', 1)
    for it in task.items:   # same bag of words: a unigram model (or any bag of words) ties exactly
        assert sorted(it['texts'][0].split()) == sorted(it['texts'][1].split()), it['texts']
    # captions of the world are "A rel B"; attribute_swap asks "A and B": score the pair phrases with a bigram
    # model of the training captions, which knows every colour-shape and size-colour pair the world shows
    logp = _bigram_model(train.captions)
    pick = lambda it: max(range(len(it['texts'])), key=lambda k: logp(it['texts'][k])) == it['label']
    seen = [pick(it) for it in task.items if not it['heldout']]
    held = [pick(it) for it in task.items if it['heldout']]
    # on combinations seen in training the text prior is blind: chance, within 4 binomial sd
    assert len(seen) > 300 and abs(100 * np.mean(seen) - 50) < 4 * 50 / np.sqrt(len(seen)), np.mean(seen)
    # a held-out combination is a bigram training never showed: the prior favours the swapped caption, so a
    # model that leans on the text alone falls below chance there (compositional generalisation must overcome it)
    assert np.mean(held) < 0.4, np.mean(held)
    # colour swaps name colour-shape combinations that the image holds too (distractors); size swaps do not
    assert {it['group'] for it in task.items} == {'color', 'size'}


def test_zero_shot_task_classes_and_heldout():
    task = make_task(CROWDED, 'zero_shot', 200, 'test', 1)
    prompts = zero_shot_prompts(CROWDED)
    assert len(prompts) == len(CROWDED.colors) * len(CROWDED.shapes) == len(set(prompts))
    for it, sc in zip(task.items, task.scenes):
        (o,) = sc['objects']   # one object alone
        assert it['texts'] == prompts and it['texts'][it['label']] == f"a photo of a {o['color']} {o['shape']}"
        assert it['heldout'] == ((o['color'], o['shape']) in set(CROWDED.heldout))
    held = np.mean([it['heldout'] for it in task.items])
    assert 0.3 < held < 0.7, held   # half the test scenes describe a held-out combination
    train = make_world(CROWDED, 2000, 'train', cache=False)   # never seen in training
    assert not any(_combos(s) & set(CROWDED.heldout) for s in train.scenes)
