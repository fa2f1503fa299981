"""Ship the demo's pretrained tiny CLIP: hnvl/assets/pretrained/hnvl-tiny-relations.pt and its JSON record.

Pretrains the default recipe (`hnvl.demo.pretrain_config(DemoConfig())`, 2,000 plain-CLIP steps on the `relations`
world; ~3.5 min on 2 cores, or reuses the cached run), then writes the weights with the cache path dropped from
their metadata, and a record beside them: the recipe's hash (`config_hash(cfg, version=False)`, which
`hnvl.demo.shipped_pretrained` matches), the file's SHA-1 and the losses of the first 100 steps and the last, which
`tests/test_demo.py` replays. Rerun it whenever that test says the pretraining recipe or code changed.

    python tools/ship_pretrained.py                                     # the default recipe, into hnvl/assets
    python tools/ship_pretrained.py --dest /tmp/x.pt --pretrain_steps 4 --n_train 256 --batch_size 32   # a tiny one
"""
import argparse, hashlib, json, platform, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]   # the checkout whose hnvl/assets receives the weights


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--dest', default=None, help="where the weights go (default: the checkout's hnvl/assets/ + "
                   "hnvl.demo.SHIPPED; the record: same name, .json)")
    for k in ('pretrain_steps', 'n_train', 'batch_size'):
        p.add_argument(f'--{k}', type=int, help='override the DemoConfig default (tests)')
    a = p.parse_args(argv)
    import dataclasses, torch, hnvl
    from hnvl.core import save_json
    from hnvl.demo import SHIPPED, DemoConfig, pretrain, pretrain_config, config_hash
    kw = {k: v for k in ('pretrain_steps', 'n_train', 'batch_size') if (v := getattr(a, k)) is not None}
    dc = DemoConfig(shipped=False, progress=False, **kw)
    cfg = pretrain_config(dc)
    src = pretrain(dc)                     # the cache folder's model.pt (trained now unless cached)
    ck = torch.load(src, map_location='cpu', weights_only=False)
    ck['meta']['config'].update(out=None, progress=False)   # a cache path means nothing elsewhere
    dest = Path(a.dest) if a.dest else ROOT/'hnvl'/'assets'/SHIPPED
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, dest)
    rows = [json.loads(l) for l in open(src.parent/'metrics.jsonl')]
    rec = dict(recipe_hash=config_hash(cfg, version=False), sha1=hashlib.sha1(dest.read_bytes()).hexdigest(),
               recipe={k: v for k, v in dataclasses.asdict(cfg).items()
                       if k in ('world', 'n_train', 'steps', 'lr', 'batch_size', 'warmup', 'seed', 'hard_negatives')},
               log=[dict(step=r['step'], loss=r['loss']) for r in rows if r['step'] <= 100],
               final=dict(step=rows[-1]['step'], loss=rows[-1]['loss']),
               made_with=dict(hnvl=hnvl.__version__, torch=torch.__version__, python=platform.python_version(),
                              threads=cfg.num_threads))
    save_json(rec, dest.with_suffix('.json'))
    print(f"{dest} ({dest.stat().st_size / 1e6:.1f} MB), recipe {rec['recipe_hash']}, final loss {rec['final']['loss']:.4f}")


if __name__ == '__main__':
    sys.exit(main())
