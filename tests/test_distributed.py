"""Two CPU processes (gloo) each holding half of a global batch, with `distributed=True`, must give the loss and the
gradients of one process holding the whole batch.

Why the gradients compare this way: after `gather_features` every process computes the *same* global loss, but
autograd reaches only its own shard (the other shards arrive through a collective without a graph). So

- the gradient of a process's own features equals the single-process gradient restricted to those rows, and
- the gradient of a shared parameter (here the tiny linear layers producing the features) on one process is only
  its shard's share; the shares *sum* to the single-process gradient. DDP all-reduces by *averaging*, so a DDP run
  sees single-process gradient / world_size (open_clip has the same convention; it is a constant factor absorbed by
  the learning rate). The test checks the sum against the single process, and runs the layers once more inside a
  real `DistributedDataParallel` (gloo, CPU) to check that its averaged gradient × world_size is the single-process one.
"""
import os, warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from hnvl.losses import HardNegativeLoss, gather_features

N, K, DIN, D, WORLD = 8, 3, 6, 5, 2


def make_inputs():
    g = torch.Generator().manual_seed(0)
    x_img, x_txt, x_neg = torch.randn(N, DIN, generator=g), torch.randn(N, DIN, generator=g), torch.randn(N, K, DIN, generator=g)
    mask = torch.rand(N, K, generator=g) < 0.6
    mask[0, 0], mask[N - 1, 1] = True, False
    w_img, w_txt = torch.randn(D, DIN, generator=g), torch.randn(D, DIN, generator=g)
    return x_img, x_txt, x_neg, mask, w_img, w_txt


class Towers(torch.nn.Module):
    "The two linear layers as one module, so that DDP sees a single forward per step."
    def __init__(self, w_img, w_txt):
        super().__init__()
        self.i, self.t = torch.nn.Linear(DIN, D, bias=False), torch.nn.Linear(DIN, D, bias=False)
        with torch.no_grad(): self.i.weight.copy_(w_img); self.t.weight.copy_(w_txt)

    def forward(self, x_img, x_txt, x_neg): return self.i(x_img), self.t(x_txt), self.t(x_neg)


def run_steps(rows, distributed, ddp=False):
    "Two steps of the full loss on `rows` of the global batch; returns what the test compares."
    x_img, x_txt, x_neg, mask, w_img, w_txt = make_inputs()
    towers = Towers(w_img, w_txt)
    lin_i, lin_t = towers.i, towers.t
    net = torch.nn.parallel.DistributedDataParallel(towers) if ddp else towers  # DDP averages grads over processes
    crit = HardNegativeLoss(distributed=distributed)
    scale = torch.tensor(10.)
    for step in range(2):                       # step 2 uses the θ that step 1 measured
        towers.zero_grad()
        img, txt, neg = (F.normalize(t, dim=-1) for t in net(x_img[rows], x_txt[rows], x_neg[rows]))
        for t in (img, txt, neg): t.retain_grad()
        out = crit(img, txt, neg, mask[rows], scale)
        out['loss'].backward()
    return dict(out={k: v.detach() for k, v in out.items()}, theta=crit.threshold.value.clone(),
                history=crit.threshold.history, g_img=img.grad, g_txt=txt.grad, g_neg=neg.grad,
                g_wi=lin_i.weight.grad.clone(), g_wt=lin_t.weight.grad.clone())


def worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world)
    try:
        n = N // world
        res = run_steps(slice(rank * n, (rank + 1) * n), distributed=True)
        # the same run inside a real DistributedDataParallel: its gradient is the average over processes
        ddp = run_steps(slice(rank * n, (rank + 1) * n), distributed=True, ddp=True)
        res['ddp_wi'], res['ddp_wt'] = ddp['g_wi'], ddp['g_wt']
        # gather_features itself returns the global batch in rank order
        x = torch.arange(n * 2.).reshape(n, 2) + 100 * rank
        g = gather_features(x, x, x[:, None], torch.ones(n, 1, dtype=torch.bool))
        res['gathered'] = g[0]
        # unequal shards are refused on every rank (no hang)
        m = 3 if rank else 4
        try: gather_features(torch.zeros(m, 2), torch.zeros(m, 2), torch.zeros(m, 1, 2), torch.ones(m, 1, dtype=torch.bool)); res['unequal'] = ''
        except ValueError as e: res['unequal'] = str(e)
        torch.save(res, os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def spawn(fn, make_args):
    """`mp.spawn(fn, args=make_args(attempt), nprocs=WORLD)`, tried a second time (with fresh paths) if a process dies by SIGABRT.

    Once in about twenty CI runs a gloo process aborted ("terminate called without an active exception", torch
    2.14.1, CPU); 17 reruns of the same spawn on the same machine passed. A second abort fails the test."""
    try: mp.spawn(fn, args=make_args(0), nprocs=WORLD, join=True); return 0
    except mp.ProcessExitedException as e:
        if getattr(e, 'signal_name', None) != 'SIGABRT': raise
        warnings.warn(f"a gloo process aborted ({e}); spawning once more")
    mp.spawn(fn, args=make_args(1), nprocs=WORLD, join=True); return 1


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp('dist')
    def args(i):
        (d / f'try{i}').mkdir()
        return WORLD, str(d / f'init{i}'), str(d / f'try{i}')
    a = spawn(worker, args)
    return [torch.load(d / f'try{a}' / f'rank{r}.pt') for r in range(WORLD)], run_steps(slice(0, N), distributed=False)


def test_same_loss_and_threshold(results):
    ranks, single = results
    for r in ranks:
        for k in ('loss', 'itc', 'imc', 'cmr'): torch.testing.assert_close(r['out'][k], single['out'][k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r['theta'], single['theta'], rtol=1e-5, atol=1e-5)
        assert len(r['history']) == 2
    assert single['out']['cmr'] > 0 and single['out']['imc'] > 0


def test_feature_gradients_are_the_local_rows(results):
    ranks, single = results
    n = N // WORLD
    for rank, r in enumerate(ranks):
        rows = slice(rank * n, (rank + 1) * n)
        for k in ('g_img', 'g_txt', 'g_neg'):
            torch.testing.assert_close(r[k], single[k][rows], rtol=1e-5, atol=1e-7)


def test_parameter_gradients_sum_to_single_process(results):
    ranks, single = results
    for k, ddp in (('g_wi', 'ddp_wi'), ('g_wt', 'ddp_wt')):
        total = sum(r[k] for r in ranks)
        assert single[k].abs().max() > 0
        torch.testing.assert_close(total, single[k], rtol=1e-5, atol=1e-6)
        for r in ranks:                                          # a real DDP run: the average of the shares
            torch.testing.assert_close(r[ddp], total / WORLD, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(r[ddp] * WORLD, single[k], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(ranks[0][k], single[k])       # one shard alone is not the full gradient


def test_gather_and_unequal_shards(results):
    ranks, _ = results
    n = N // WORLD
    want = torch.cat([torch.arange(n * 2.).reshape(n, 2) + 100 * r for r in range(WORLD)])
    for r in ranks:
        assert torch.equal(r['gathered'], want)
        assert 'every process must hold the same (n, K, D)' in r['unequal']


def one_step_grads(shard=(0, 1), distributed=False):
    "Gradients of one `train_step` of the tiny preset on this process's shard of the first global batch (SGD, lr 0)."
    from hnvl.model import create_model
    from hnvl.train import TrainConfig, make_dataset, make_loss, EpochBatchSampler, train_step
    cfg = TrainConfig.preset('tiny', device='cpu')
    torch.manual_seed(0); b = create_model('hnvl-tiny')
    ds, types = make_dataset(cfg, b)
    idx = next(iter(EpochBatchSampler(len(ds), cfg.batch_size, shard=shard)))
    loss = make_loss(cfg, len(types)); loss.distributed = distributed
    train_step(b.model.train(), ds.batch(idx, b.tokenizer), loss, torch.optim.SGD(b.model.parameters(), lr=0.0))
    return dict(idx=idx, grads={n: p.grad.clone() for n, p in b.model.named_parameters() if p.grad is not None})


def fit_worker(rank, world, init_file, out):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world)
    try:
        from hnvl.train import TrainConfig, fit
        torch.save(one_step_grads((rank, world), distributed=True), f'{out}-grads{rank}.pt')
        fit(TrainConfig.preset('tiny', out=out, device='cpu', num_threads=1, progress=False, steps=6, log_every=1))
    finally:
        dist.destroy_process_group()


def test_fit_data_parallel_equals_one_process(tmp_path, monkeypatch):
    "`fit` in a 2-process gloo group (each process half of every global batch, gradients summed) trains the same weights as one process."
    import json
    from hnvl.train import TrainConfig, fit, load_checkpoint
    monkeypatch.setenv('HNVL_CACHE', str(tmp_path / 'cache'))
    a = spawn(fit_worker, lambda i: (WORLD, str(tmp_path / f'init{i}'), str(tmp_path / f'ddp{i}')))
    ddp = tmp_path / f'ddp{a}'
    fit(TrainConfig.preset('tiny', out=str(tmp_path / 'one'), device='cpu', num_threads=1, progress=False, steps=6, log_every=1))
    a, b = load_checkpoint(ddp / 'checkpoint.pt'), load_checkpoint(tmp_path / 'one' / 'checkpoint.pt')
    assert a['step'] == b['step'] == 6
    for n, v in a['model'].items():
        # atol: AdamW turns the float noise of gradients that are exactly 0 in theory (attention key biases) into ~1e-5 steps
        torch.testing.assert_close(v, b['model'][n], rtol=1e-4, atol=1e-4, msg=f'parameter {n} differs')
    torch.testing.assert_close(a['threshold']['value'], b['threshold']['value'], rtol=1e-4, atol=1e-4)
    la = [json.loads(l)['loss'] for l in open(ddp / 'metrics.jsonl')]
    lb = [json.loads(l)['loss'] for l in open(tmp_path / 'one' / 'metrics.jsonl')]
    assert len(la) == len(lb) == 6  # only rank 0 writes
    torch.testing.assert_close(torch.tensor(la), torch.tensor(lb), rtol=1e-4, atol=1e-5)
    assert json.load(open(ddp / 'config.json'))['world_size'] == WORLD
    # AdamW hides a constant gradient factor, so check one step's gradients directly: summed over the two
    # processes (each on its half of the batch) they are the one-process gradients, not half of them
    g = [torch.load(f"{ddp}-grads{r}.pt", weights_only=False) for r in range(WORLD)]
    one = one_step_grads()
    assert g[0]['idx'] + g[1]['idx'] == one['idx'] and not set(g[0]['idx']) & set(g[1]['idx'])
    for n, v in one['grads'].items():
        torch.testing.assert_close(g[0]['grads'][n], v, rtol=1e-4, atol=1e-6, msg=f'gradient of {n}')
        torch.testing.assert_close(g[1]['grads'][n], v, rtol=1e-4, atol=1e-6, msg=f'gradient of {n}')
