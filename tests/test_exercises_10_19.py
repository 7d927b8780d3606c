"""Solutions to the exercises of lessons 10 to 19, each with a check of what the exercise says the reader should see.

One test per exercise, named after its lesson (without the number, which may change) and the exercise's number.
Exercises that need a long training run or a timing are either marked slow or only described in their lesson."""
import copy, functools, math
import pytest, torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

# ---- 10 sched ----------------------------------------------------------------------------------------------------

def _tiny_dls():
    from slowlearn.data import DataLoaders
    torch.manual_seed(0)
    xr, yr = torch.randn(64, 4), torch.randint(0, 2, (64,))
    return DataLoaders.from_tensors(xr, yr, xr[:32], yr[:32], bs=16)

def _sched_sub(fashion_arrays):
    from slowlearn.data import DataLoaders
    xt, yt, xv, yv = fashion_arrays
    return DataLoaders.from_tensors(xt[:10_000], yt[:10_000], xv[:2000], yv[:2000], bs=128)

def _find_lr(sub, beta):
    from slowlearn.learner import Learner
    from slowlearn.models import fashion_mnist_cnn
    from slowlearn.optim import AdamW
    from slowlearn.sched import LRFinderCB
    torch.manual_seed(0)
    learn = Learner(fashion_mnist_cnn(), sub, opt_func=AdamW)
    cb = LRFinderCB(beta=beta)
    learn.fit(1, valid=False, cbs=cb, lr=cb.start_lr, steps_per_epoch=cb.num_it, reset_opt=True)
    return cb

def _smooth(xs, beta):
    m, out = 0., []
    for i, x in enumerate(xs): m = beta*m + (1 - beta)*x; out.append(m/(1 - beta**(i + 1)))
    return out

@pytest.mark.slow
def test_sched_ex1_a_middle_smoothing_puts_the_minimum_in_between(fashion_arrays):
    sub = _sched_sub(fashion_arrays)
    at_min = {}
    for beta in (0.8, 0.98):
        c = _find_lr(sub, beta); s = [x for x in c.smooth if math.isfinite(x)]
        at_min[beta] = c.lrs[min(range(len(s)), key=s.__getitem__)]
        if beta == 0.8: finder = c
    s9 = _smooth(finder.losses, 0.9)
    lr9 = finder.lrs[min(range(len(s9)), key=s9.__getitem__)]
    assert at_min[0.8] <= lr9 <= at_min[0.98], (lr9, at_min)

def test_sched_ex2_pct_start_moves_the_peak():
    from torch.nn import Linear
    from slowlearn.learner import Learner
    from slowlearn.optim import AdamW
    from slowlearn.sched import RecorderCB
    rec = RecorderCB(lr='lr', mom='momentum')
    Learner(Linear(4, 2), _tiny_dls(), opt_func=AdamW).fit_one_cycle(4, 0.1, pct_start=0.5, cbs=rec)
    assert rec['lr'].index(max(rec['lr'])) == 8 == rec['mom'].index(min(rec['mom']))      # the middle of 16 steps

def test_sched_ex3_a_weight_decay_schedule():
    from torch.nn import Linear
    from slowlearn.learner import Learner
    from slowlearn.optim import AdamW
    from slowlearn.sched import RecorderCB, ParamSchedulerCB, sched_lin
    rec = RecorderCB(wd='weight_decay')
    Learner(Linear(4, 2), _tiny_dls(), opt_func=AdamW, cbs=ParamSchedulerCB({'weight_decay': sched_lin(1e-2, 0)})).fit(2, cbs=rec)
    assert_close(torch.tensor(rec['wd']), torch.tensor([1e-2*(1 - i/8) for i in range(8)]), rtol=1e-9, atol=0)

@pytest.mark.slow
def test_sched_ex4_a_tenth_of_the_steepest_lr_wastes_the_epoch(fashion_arrays):
    from torcheval.metrics import MulticlassAccuracy
    from slowlearn.learner import Learner
    from slowlearn.metrics import MetricsCB
    from slowlearn.models import fashion_mnist_cnn
    from slowlearn.optim import AdamW
    sub = _sched_sub(fashion_arrays)
    steep = _find_lr(sub, 0.8).suggest().steep
    def valid_loss(lr):
        torch.manual_seed(0)
        learn = Learner(fashion_mnist_cnn(), sub, opt_func=AdamW, cbs=MetricsCB(MulticlassAccuracy())); learn.fit(1, lr=lr)
        return learn.history[-1]['loss']
    assert valid_loss(steep / 10) > valid_loss(steep) + 0.1

# ---- 11 checkpoint -----------------------------------------------------------------------------------------------

def _ckpt_mlp(seed=0, dropout=True):
    "The checkpoint lesson's MLP (with its dropout, or an `Identity` in its place)."
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.2) if dropout else nn.Identity(), nn.Linear(64, 10))

@pytest.mark.slow
def test_checkpoint_ex1_without_dropout_the_generators_do_not_matter(fashion_arrays):
    "Resume after epoch 1 with model, optimizer, position and schedule but not the generators' states."
    from slowlearn.data import DataLoaders
    from slowlearn.learner import Learner, Callback
    xt, yt, xv, yv = fashion_arrays
    class OneCycle(Callback):
        def before_fit(self, learn):
            self.sched = torch.optim.lr_scheduler.OneCycleLR(learn.opt, 1e-2, total_steps=learn.n_epochs * learn.n_steps)
        def after_step(self, learn): self.sched.step()
    class Save(Callback):
        order = 100
        def after_epoch(self, learn):
            if not learn.training and learn.epoch == 1:
                self.ck = dict(model={k: v.clone() for k, v in learn.model.state_dict().items()}, opt=copy.deepcopy(learn.opt.state_dict()),
                               sched=learn.cbs.filter(lambda c: isinstance(c, OneCycle))[0].sched.state_dict())
    class Resume(Callback):
        order = 100
        def __init__(self, ck): self.ck = ck
        def before_fit(self, learn):
            learn.model.load_state_dict(self.ck['model']); learn.opt.load_state_dict(self.ck['opt'])
            learn.start_epoch, learn.start_iter = 2, 0
            learn.cbs.filter(lambda c: isinstance(c, OneCycle))[0].sched.load_state_dict(self.ck['sched'])
    def run(dropout, cbs, seed):
        dls = DataLoaders.from_tensors(xt[:6000], yt[:6000], xv[:2000], yv[:2000], bs=128)
        learn = Learner(_ckpt_mlp(seed, dropout), dls, lr=1e-2, opt_func=torch.optim.Adam, cbs=[OneCycle(), *cbs]); learn.fit(4)
        return learn.model.state_dict()
    for dropout in (False, True):
        save = Save(); ref = run(dropout, [save], 0)
        resumed = run(dropout, [Resume(save.ck)], 1)
        same = all(torch.equal(a, b) for a, b in zip(ref.values(), resumed.values()))
        assert same == (not dropout), dropout

@pytest.mark.slow
def test_checkpoint_ex2_a_larger_patience_stops_later(fashion_arrays):
    from slowlearn.checkpoint import EarlyStoppingCB
    from slowlearn.data import DataLoaders
    from slowlearn.learner import Learner
    from slowlearn.metrics import MetricsCB
    xt, yt, xv, yv = fashion_arrays
    def overfit_learn(cbs=()):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        return Learner(model, DataLoaders.from_tensors(xt[:2000], yt[:2000], xv[:2000], yv[:2000], bs=50), lr=2e-3,
                       opt_func=torch.optim.Adam, cbs=[MetricsCB(), *cbs])
    full = overfit_learn(); full.fit(15)
    best = min(r['loss'] for r in full.history if r['phase'] == 'valid')
    ends = []
    for p in (1, 3, 6):
        es = EarlyStoppingCB(patience=p); overfit_learn(cbs=[es]).fit(15)
        ends.append(15 if es.stopped_epoch is None else es.stopped_epoch + 1)
        assert es.best >= best - 1e-6
    assert ends == sorted(ends) and ends[0] < ends[-1]

def test_checkpoint_ex3_a_new_head(fashion_arrays, tmp_path):
    from torcheval.metrics import MulticlassAccuracy
    from slowlearn.checkpoint import load_checkpoint
    from slowlearn.data import DataLoaders
    from slowlearn.learner import Learner
    from slowlearn.metrics import MetricsCB
    xt, yt, xv, yv = fashion_arrays
    saved = Learner(_ckpt_mlp(0), DataLoaders.from_tensors(xt[:6000], yt[:6000], xv[:2000], yv[:2000], bs=128), lr=1e-2,
                    opt_func=torch.optim.Adam)
    saved.fit(1); saved.save(tmp_path/'mlp.pt')
    group = torch.tensor([0, 0, 0, 0, 0, 1, 0, 1, 2, 1])          # 0 clothing, 1 footwear, 2 bag
    m = _ckpt_mlp(1); m[4] = nn.Linear(64, 3)
    dls = DataLoaders.from_tensors(xt[30000:30200], group[yt[30000:30200]], xv[:2000], group[yv[:2000]], bs=50)
    new = Learner(m, dls, lr=3e-3, opt_func=torch.optim.Adam, cbs=MetricsCB(MulticlassAccuracy()))
    with pytest.raises(Exception, match=r'4.weight \(10, 64\) vs \(3, 64\)'): new.load(tmp_path/'mlp.pt')
    sd = {k: v for k, v in load_checkpoint(tmp_path/'mlp.pt')['model'].items() if not k.startswith('4.')}
    assert new.model.load_state_dict(sd, strict=False).missing_keys == ['4.weight', '4.bias']
    new.fit(1, train=False); before = new.history[-1]['accuracy']
    new.fit(5)
    assert before < 0.5 and new.history[-1]['accuracy'] > 0.9

# ---- 12 speed ----------------------------------------------------------------------------------------------------

def test_speed_ex1_how_large_the_loss_scale_must_be():
    g = torch.tensor(1e-8)
    back = {k: (g * 2.**k).half().float().item() / 2.**k for k in range(17)}
    assert back[0] == back[1] == 0. and 0.4 < abs(back[2] - 1e-8) / 1e-8 < 0.6
    assert all(abs(back[k] - 1e-8) / 1e-8 < 1e-3 for k in range(12, 17))
    assert torch.amp.GradScaler('cpu').get_scale() == 2.**16

def test_speed_ex2_watch_the_scale_grow():
    from slowlearn.data import DataLoaders
    from slowlearn.learner import Learner, Callback
    from slowlearn.speed import MixedPrecisionCB
    torch.manual_seed(0)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    tiny = DataLoaders.from_tensors(x, y, x, y, bs=16, shuffle=False)
    class PoisonGrad(Callback):
        order = -4.5
        def after_backward(self, learn):
            if learn.iter == 2: next(learn.model.parameters()).grad[0, 0] = float('inf')
    for cbs, scale in (([], 2.**12), ([PoisonGrad()], 2.**10)):
        torch.manual_seed(0)
        mp = MixedPrecisionCB(torch.float16, init_scale=2.**10, growth_interval=2)
        Learner(nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3)), tiny, lr=0.1, cbs=[mp, *cbs]).fit(1, valid=False)
        assert mp.scaler.get_scale() == scale

def test_speed_ex3_which_op_runs_in_which_dtype():
    xi, wi = torch.randn(2, 1, 8, 8), torch.randn(4, 1, 3, 3)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = F.conv2d(xi, wi)
        dts = [out.dtype, xi.softmax(-1).dtype, out.softmax(-1).dtype, F.cross_entropy(out.flatten(1), torch.tensor([0, 1])).dtype]
    assert dts == [torch.bfloat16, torch.float32, torch.bfloat16, torch.float32]

# ---- 13 callbacks ------------------------------------------------------------------------------------------------

def test_callbacks_ex2_how_much_of_the_average_470_steps_hold():
    assert abs((1 - 0.999**470) - 0.375) < 0.005          # about 37%: the rest is still the first weights

@pytest.mark.slow
def test_callbacks_ex3_clipping_halves_the_loss_spike(fashion_arrays):
    from slowlearn.callbacks import GradClipCB
    from slowlearn.data import DataLoaders
    from slowlearn.learner import Learner
    from slowlearn.models import fashion_mnist_cnn
    from slowlearn.sched import RecorderCB
    xt, yt = fashion_arrays[:2]
    sub = DataLoaders.from_tensors(xt[:8192], yt[:8192], xt[:256], yt[:256], bs=256)
    peak = {}
    for name, cbs in (('no clip', []), ('clip', [GradClipCB(2.)])):
        torch.manual_seed(0); rec = RecorderCB()
        Learner(fashion_mnist_cnn(), sub, lr=1., cbs=[rec, *cbs]).fit(1, valid=False)
        peak[name] = max(rec['loss'][:10])
    assert 7 < peak['no clip'] < 12 and peak['clip'] < 0.6 * peak['no clip'], peak

# ---- 14 distributed ----------------------------------------------------------------------------------------------

def _rel_diff(model, b, weighted, W=2):
    "Relative difference between the average of `W` shard gradients of a batch of `b` and the whole batch's gradient."
    torch.manual_seed(0); x, y = torch.randn(b, 6), torch.randint(0, 3, (b,))
    params = list(model.parameters())
    ref = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    gs = [torch.autograd.grad(F.cross_entropy(model(xs), ys) * (W * len(xs) / b if weighted else 1.), params)
          for xs, ys in zip(x.chunk(W), y.chunk(W))]
    avg = [sum(g) / W for g in zip(*gs)]
    return (torch.cat([(u - v).flatten() for u, v in zip(avg, ref)]).norm() / torch.cat([v.flatten() for v in ref]).norm()).item()

def test_distributed_ex1_unequal_shards_need_the_weights():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    assert _rel_diff(plain, 5, weighted=False) > 0.02 and _rel_diff(plain, 5, weighted=True) < 1e-6

def test_distributed_ex2_batchnorm_per_rank():
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    assert _rel_diff(bn, 12, weighted=True) > 1e-3

# ---- 15 experiments ----------------------------------------------------------------------------------------------

def test_experiments_ex1_same_seed_same_run():
    import dataclasses
    from slowlearn.experiments import TrainConfig, fit_config
    cfg = TrainConfig(model='mlp', widths=(64,), n_train=2000, n_valid=500, epochs=2, checkpoint=False)
    h0, h0b, h1 = [fit_config(c, progress=False).history for c in (cfg, cfg, dataclasses.replace(cfg, seed=1))]
    assert h0 == h0b and h0 != h1

def test_experiments_ex2_extend_a_search(tmp_path):
    from slowlearn.experiments import random_search, draw_configs, log_uniform, load_trials
    space = dict(lr=log_uniform(1e-4, 1), wd=log_uniform(1e-6, 1e-2), bs=[64, 128, 256])
    def f(c): return dict(score=(math.log10(c['lr']) + 2)**2 + (math.log10(c['wd']) + 4)**2)
    res_file = tmp_path/'search.jsonl'
    random_search(space, f, 20, results=res_file, metric='score')
    calls = []
    trials = random_search(space, lambda c: calls.append(c) or f(c), 30, results=res_file, metric='score')
    assert len(calls) == 10 and len(trials) == 30
    assert draw_configs(space, 30)[:20] == [t['config'] for t in load_trials(res_file)[:20]] == draw_configs(space, 20)

def test_experiments_ex3_wide_peak_shrinks_the_gap():
    import numpy as np
    rng = np.random.default_rng(0)
    grid = np.array([(a, b) for a in (1/6, 1/2, 5/6) for b in (1/6, 1/2, 5/6)])
    peaks = rng.uniform(0.1, 0.9, size=(10_000, 1))
    score = lambda xs, w: np.exp(-((xs - peaks) / w)**2).max(1)
    rand = rng.uniform(size=(10_000, 9))
    g, r = score(grid[None, :, 0], 0.3).mean(), score(rand, 0.3).mean()
    assert g > 0.9 and r > 0.9 and abs(r - g) < 0.05, (g, r)
    assert score(rand, 0.3).mean() > score(rand, 0.08).mean() and g > score(grid[None, :, 0], 0.08).mean()   # both rise

# ---- 16 resnet ---------------------------------------------------------------------------------------------------

class StridedResBlock(nn.Module):
    "The ResNet paper's projection shortcut: a 1x1 convolution with stride 2 on the skip path, no pool."
    def __init__(self, ni, nf, stride=1):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(ni, nf, 3, stride=stride, padding=1), nn.Conv2d(nf, nf, 3, padding=1)
        self.idconv = nn.Conv2d(ni, nf, 1, stride=stride) if (ni != nf or stride != 1) else nn.Identity()
    def forward(self, x): return F.relu(self.c2(F.relu(self.c1(x))) + self.idconv(x))

def test_resnet_ex2_strided_shortcut_reads_one_pixel_per_window():
    assert StridedResBlock(16, 32, 2)(torch.randn(8, 16, 28, 28)).shape == (8, 32, 14, 14)
    assert StridedResBlock(32, 64, 2)(torch.randn(8, 32, 7, 7)).shape == (8, 64, 4, 4)
    one = nn.Conv2d(1, 1, 1, stride=2)
    with torch.no_grad(): one.weight.fill_(1); one.bias.zero_()
    img = torch.arange(16.).view(1, 1, 4, 4)
    assert torch.equal(one(img)[0, 0].detach(), img[0, 0, ::2, ::2])             # the top-left pixel of each 2x2 window
    assert_close(nn.AvgPool2d(2)(img)[0, 0], img[0, 0].view(2, 2, 2, 2).mean((1, 3)))   # the pool reads all four

def test_resnet_ex3_batchnorm_under_bfloat16():
    from slowlearn.layers import BatchNorm
    torch.manual_seed(0)
    xb16 = torch.randn(4, 8, 5, 5).bfloat16()
    ours, ref = BatchNorm(8), nn.BatchNorm2d(8)
    with torch.autocast('cpu', torch.bfloat16): yo, yr = ours(xb16), ref(xb16)
    assert (yo.dtype, yr.dtype) == (torch.bfloat16, torch.bfloat16)
    assert ours.running_mean.dtype == ref.running_mean.dtype == torch.float32
    assert (yo.float() - yr.float()).abs().max() < 0.05

# ---- 17 cli ------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_ex1_accumulation_against_the_big_batch_in_whole_runs():
    from slowlearn.experiments import TrainConfig, fit_config
    def run(model, bs, acc):
        cfg = TrainConfig(model=model, epochs=1, bs=bs, accumulate=acc, n_train=2048, n_valid=512, checkpoint=False)
        return [r['loss'] for r in fit_config(cfg, progress=False).history]
    for model, same in (('mlp', True), ('cnn', False)):
        a, b = run(model, 256, 1), run(model, 64, 4)
        assert (max(abs(u - v) for u, v in zip(a, b)) < 1e-4) == same, (model, a, b)

def test_cli_ex2_a_config_file_with_a_typo(tmp_path):
    import subprocess, sys
    from slowlearn.experiments import TrainConfig
    TrainConfig(epochs=1).save(tmp_path/'cfg.json')
    (tmp_path/'cfg.json').write_text((tmp_path/'cfg.json').read_text().replace('"lr"', '"learning_rate"'))
    r = subprocess.run([sys.executable, '-m', 'slowlearn.cli', 'fit', '--config', str(tmp_path/'cfg.json'), '--out', str(tmp_path/'run')],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "unknown settings ['learning_rate']" in r.stderr
    assert not (tmp_path/'run').exists()

# ---- 18 finetune -------------------------------------------------------------------------------------------------

def test_finetune_ex1_freeze_to_a_middle_group():
    from slowlearn.finetune import bn_params
    from slowlearn.learner import Learner
    from slowlearn.models import fashion_mnist_cnn
    def splitter(m): return [m[:2].parameters(), m[2:4].parameters(), m[4:].parameters()]
    learn = Learner(fashion_mnist_cnn(n_out=5), [], splitter=splitter)
    bn = bn_params(learn.model)
    for train_bn in (True, False):
        learn.freeze_to(1, train_bn=train_bn)
        g0 = list(learn.model[:2].parameters())
        assert [p.requires_grad for p in g0] == [train_bn and id(p) in bn for p in g0]
        assert all(p.requires_grad for p in learn.model[2:].parameters())

def test_finetune_ex2_the_rates_of_a_slice():
    from slowlearn.core import group_lrs
    assert_close(torch.tensor(group_lrs(slice(1e-5, 1e-3), 3)), torch.tensor([1e-5, 1e-4, 1e-3]), rtol=1e-9, atol=0)
    assert_close(torch.tensor(group_lrs(slice(1e-3), 3)), torch.tensor([1e-4, 1e-4, 1e-3]), rtol=1e-9, atol=0)

# ---- 19 gpt ------------------------------------------------------------------------------------------------------

def _gpt_dls(ctx=32):
    from slowlearn.data import tiny_shakespeare
    return tiny_shakespeare(ctx=ctx, bs=16)

@functools.lru_cache(maxsize=None)
def _gpt_small(ctx=32, seed=0, **kw):
    "The small model of 'Training it with the Learner' (with `kw` for `GPT`): its learner and last validation loss."
    from slowlearn.gpt import GPT, gpt_learner
    from slowlearn.metrics import MetricsCB
    dls = _gpt_dls(ctx)
    torch.manual_seed(seed)
    model = GPT(len(dls.vocab), ctx=ctx, d=64, n_layers=2, n_heads=4, **kw)
    learn = gpt_learner(model, dls, lr=1e-2, total_steps=400, warmup_steps=40, cbs=[MetricsCB()])
    learn.fit(4, steps_per_epoch=100)
    return learn, [h['loss'] for h in learn.history if h['phase'] == 'valid'][-1]

@pytest.mark.slow
def test_gpt_ex1_eight_characters_of_context_are_not_enough():
    "Same steps and seed: with a context of 8 the validation loss stays clearly above that of a context of 32."
    assert _gpt_small(8)[1] > _gpt_small(32)[1] + 0.1

@pytest.mark.slow
def test_gpt_ex2_untying_adds_a_head_and_matters_for_post_norm():
    "Untying adds 65*d parameters; pre-norm trains well either way, post-norm tied stalls far above post-norm untied."
    from slowlearn.gpt import GPT
    from slowlearn.layers import LayerNorm
    for d in (32, 64):
        n = [sum(p.numel() for p in GPT(65, ctx=32, d=d, n_layers=2, n_heads=4, tie=t).parameters()) for t in (True, False)]
        assert n[1] - n[0] == 65*d
    pre = [_gpt_small(32)[1], _gpt_small(32, tie=False)[1]]
    post = [_gpt_small(32, tie=t, norm=LayerNorm, pre=False)[1] for t in (True, False)]
    assert max(pre) < math.log(65) - 1, pre
    assert post[0] > post[1] + 0.5, post

def _gpt_first_losses(norm, warmup_steps, seed=0, n=50):
    "The first `n` training losses of the norm measurement's model at its higher rate, 3e-2."
    from slowlearn.gpt import GPT, gpt_learner
    from slowlearn.sched import RecorderCB
    torch.manual_seed(seed)
    model = GPT(65, ctx=32, d=64, n_layers=4, n_heads=4, tie=False, norm=norm)
    learn = gpt_learner(model, _gpt_dls(), lr=3e-2, total_steps=200, warmup_steps=warmup_steps, cbs=[rec := RecorderCB()])
    learn.fit(1, steps_per_epoch=n, valid=False)
    return torch.tensor(rec['loss'])

@pytest.mark.slow
def test_gpt_ex3_without_warmup_and_norm_the_first_steps_jump():
    "At 3e-2 without the norm, dropping the warm-up makes the first ten losses jump 100 times higher; pre-norm still comes down."
    from slowlearn.layers import LayerNorm
    bare, warm = _gpt_first_losses(None, 0)[:10], _gpt_first_losses(None, 20)[:10]
    assert bare.nan_to_num(math.inf).max() > 100*warm.max(), (bare, warm)   # NaN: blown up
    ln = _gpt_first_losses(LayerNorm, 0)
    assert ln[-5:].mean() < math.log(65) - 0.6, ln

def _gpt_sample_stats(learn, temperature, known):
    "Share of punctuation and share of words in `known` (the training text's), over two samples of 300 characters."
    import re, string
    from slowlearn.gpt import generate
    txt = ''.join(learn.dls.vocab.decode(generate(learn.model, torch.zeros(1, 1, dtype=torch.long), 300, temperature=temperature,
                                                  generator=torch.Generator().manual_seed(s))[0, 1:]) for s in (0, 1))
    words = re.findall('[a-z]+', txt.lower())
    return sum(c in string.punctuation for c in txt)/len(txt), sum(w in known for w in words)/len(words)

@pytest.mark.slow
def test_gpt_ex4_low_temperature_repeats_words_high_invents_them():
    "At 0.5 samples hold mostly training words and little punctuation; at 1.5 more punctuation, mostly unseen words."
    import re
    learn = _gpt_small(32)[0]
    known = set(re.findall('[a-z]+', learn.dls.vocab.decode(learn.dls.train.data).lower()))   # decoded once, for both temperatures
    (p_lo, w_lo), (p_hi, w_hi) = _gpt_sample_stats(learn, 0.5, known), _gpt_sample_stats(learn, 1.5, known)
    assert p_hi > p_lo + 0.04 and w_lo > w_hi + 0.1, (p_lo, w_lo, p_hi, w_hi)
