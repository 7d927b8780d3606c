"""Solutions to the lessons' exercises, each with a check of what the exercise says the reader should see.

One test per exercise, named after its lesson (without the number, which may change) and the exercise's number.
Exercises that need a long training run or a timing are either marked slow or only described in their lesson."""
import math
import pytest, torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

@pytest.fixture(scope='module')
def fmnist():
    "Fashion-MNIST as `(x_train, y_train, x_valid, y_valid)`, standardised (needs SLOWLEARN_DATA, as the notebooks do)."
    from slowlearn.data import load_fashion_mnist
    return load_fashion_mnist()

# ---- 00 core -----------------------------------------------------------------------------------------------------

def test_core_ex1_bool_is_not_a_count():
    from slowlearn.core import _check_int
    with pytest.raises(TypeError): _check_int('n_epochs', True, 0)

def test_core_ex2_a_writer_that_fails_after_writing_everything_is_not_published(tmp_path):
    from slowlearn.core import atomic_write
    good = tmp_path/'result.bin'; good.write_bytes(b'x'*1000)
    def late_crash(f): f.write(b'y'*1000); raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): atomic_write(good, late_crash)
    assert good.read_bytes() == b'x'*1000 and [q.name for q in tmp_path.iterdir()] == ['result.bin']

# ---- 01 data -----------------------------------------------------------------------------------------------------

def test_data_ex1_drop_the_last_batch(fmnist):
    xt, yt = fmnist[:2]
    def no_last_batch(x, y, bs):
        for i in range(0, len(x) - bs + 1, bs): yield x[i:i+bs], y[i:i+bs]
    sizes = [len(yb) for _, yb in no_last_batch(xt, yt, 512)]
    assert (len(sizes), set(sizes), 60_000 - sum(sizes)) == (117, {512}, 96)

def test_data_ex2_resume_in_the_middle_of_an_epoch(fmnist):
    from slowlearn.data import TensorLoader
    xt, yt = fmnist[:2]
    dl = TensorLoader(xt, yt, bs=512, shuffle=True, seed=7)
    _ = list(dl)                                   # epoch 0
    ep1 = [yb for _, yb in dl]                     # the second iteration is epoch 1
    dl2 = TensorLoader(xt, yt, bs=512, shuffle=True, seed=7); dl2.set_epoch(1, start=5)
    rest = [yb for _, yb in dl2]
    assert len(rest) == 113 and all(torch.equal(a, b) for a, b in zip(rest, ep1[5:]))

def test_data_ex3_a_random_holdout_is_roughly_balanced(fmnist):
    from slowlearn.data import holdout_split
    yt = fmnist[1]
    for s in range(3):
        _, va = holdout_split(60_000, 6_000, s)
        counts = torch.bincount(yt[va], minlength=10)
        assert 510 <= counts.min() and counts.max() <= 690 and counts.max() > counts.min(), (s, counts)   # 8.5% to 11.5% of 6,000

# ---- 02 learner --------------------------------------------------------------------------------------------------

def _learner_setup(fmnist):
    "The learner lesson's data and model: 10,000 training and 2,000 validation images, a 64-unit MLP, lr 0.1."
    from slowlearn.data import DataLoaders
    xt, yt, xv, yv = fmnist
    dls = lambda: DataLoaders.from_tensors(xt[:10_000], yt[:10_000], xv[:2_000], yv[:2_000], bs=64, seed=0)
    def model():
        torch.manual_seed(1)
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    return dls, model

def _loss_recorder():
    from slowlearn.learner import Callback
    class LossRecorder(Callback):
        def before_fit(self, learn): self.losses = {True: [], False: []}
        def after_batch(self, learn): self.losses[learn.training].append(learn.loss.item())
    return LossRecorder()

def test_learner_ex1_stop_after_10_batches(fmnist):
    from slowlearn.learner import Learner, Callback, CancelFitException
    dls, model = _learner_setup(fmnist)
    class StopAt10(Callback):
        def after_batch(self, learn):
            if learn.training and learn.iter == 9: raise CancelFitException()
    rec = _loss_recorder(); learn = Learner(model(), dls(), lr=0.1, cbs=[rec, StopAt10()]); learn.fit(1)
    assert (learn.iter, learn.train_iter, len(rec.losses[True]), len(rec.losses[False])) == (9, 10, 10, 0)

def test_learner_ex2_label_smoothing_raises_the_loss_not_the_learning(fmnist):
    from slowlearn.learner import Learner, Callback
    dls, model = _learner_setup(fmnist)
    class Smoothed(Callback):
        def get_loss(self, learn): learn.loss = F.cross_entropy(learn.preds, learn.batch[1], label_smoothing=0.1)
    plain, smoothed = _loss_recorder(), _loss_recorder()
    Learner(model(), dls(), lr=0.1, cbs=[plain]).fit(1)
    learn = Learner(model(), dls(), lr=0.1, cbs=[smoothed, Smoothed()]); learn.fit(1)
    mean = lambda xs: sum(xs) / len(xs)
    with torch.no_grad(): acc = (learn.model(fmnist[2][:2000]).argmax(1) == fmnist[3][:2000]).float().mean().item()
    assert mean(smoothed.losses[True]) > mean(plain.losses[True]) and acc > 0.65

def test_learner_ex3_the_first_loss_is_a_uniform_guess(fmnist):
    from slowlearn.learner import Learner
    dls, model = _learner_setup(fmnist)
    rec = _loss_recorder(); Learner(model(), dls(), lr=0.1, cbs=[rec]).fit(1)
    ls = rec.losses[True]
    assert abs(ls[0] - math.log(10)) < 0.15 and sum(ls[-10:]) / 10 < 1

# ---- 02a resume --------------------------------------------------------------------------------------------------

def test_resume_ex1_seeds_are_not_enough_to_resume():
    from slowlearn.resume import set_seed, rng_states, set_rng_states
    set_seed(0); _, second = torch.rand(3), torch.rand(3)
    set_seed(0); assert not torch.equal(torch.rand(3), second)
    set_seed(0); _ = torch.rand(3); st = rng_states(); _ = torch.rand(10); set_rng_states(st)
    assert torch.equal(torch.rand(3), second)

# ---- 05 optim ----------------------------------------------------------------------------------------------------

def _step_sizes(opt_func, n_steps=20, lr=1e-3):
    "The size of each of `n_steps` steps on one weight whose gradient is always 1, in units of `lr`."
    w = nn.Parameter(torch.zeros(1)); opt = opt_func([w], lr=lr); sizes = []
    for _ in range(n_steps):
        before = w.item(); w.grad = torch.ones(1); opt.step(); sizes.append(abs(w.item() - before) / lr)
    return sizes

def test_optim_ex1_rmsprop_first_steps():
    from functools import partial
    from slowlearn.optim import RMSProp
    s0, s1 = _step_sizes(RMSProp), _step_sizes(partial(RMSProp, init_from_grad=True))
    assert abs(s0[0] - 10) < 0.01 and abs(s0[1] - 7.1) < 0.02 and s0 == sorted(s0, reverse=True)   # 10 x lr, then about 7.1 x lr
    assert_close(torch.tensor(s1), torch.ones(20), rtol=0, atol=1e-3)

class _Adam(torch.optim.Optimizer):
    "The lesson's loop Adam, with or without the bias correction."
    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, correct=True):
        super().__init__(params, dict(lr=lr)); self.betas, self.eps, self.correct = betas, eps, correct
    @torch.no_grad()
    def step(self):
        b1, b2 = self.betas
        for g in self.param_groups:
            for p in g['params']:
                st = self.state[p]
                if not st: st.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                st['t'] += 1
                st['m'].mul_(b1).add_((1 - b1) * p.grad); st['v'].mul_(b2).add_((1 - b2) * p.grad * p.grad)
                m, v = st['m'], st['v']
                if self.correct: m, v = m / (1 - b1**st['t']), v / (1 - b2**st['t'])
                p.sub_(g['lr'] * m / (v.sqrt() + self.eps))

def test_optim_ex2_adam_without_bias_correction():
    from functools import partial
    assert_close(torch.tensor(_step_sizes(_Adam)), torch.ones(20), rtol=0, atol=1e-3)
    s = _step_sizes(partial(_Adam, correct=False))
    assert abs(s[0] - 3.2) < 0.05 and abs(s[0] - 0.1 / math.sqrt(0.001)) < 1e-3     # about 3.2 x lr at first
    assert s.index(max(s)) + 1 == 12 and abs(max(s) - 6.6) < 0.05                   # about 6.6 x lr at step 12

def test_optim_ex3_accumulation_with_layernorm_is_the_big_batch():
    torch.manual_seed(0)
    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    def grad_in(model, k):
        model.zero_grad()
        for xb, yb in zip(x.chunk(k), y.chunk(k)): (F.cross_entropy(model(xb), yb) * len(xb) / len(x)).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.manual_seed(1); with_ln = nn.Sequential(nn.Linear(20, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3))
    assert (grad_in(with_ln, 4) - grad_in(with_ln, 1)).abs().max() < 1e-6

# ---- 06 init -----------------------------------------------------------------------------------------------------

def _plain_cnn(act=nn.ReLU):
    "The init lesson's eight conv layers without normalisation."
    chans = [(1, 8, 2), (8, 16, 2), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1)]
    return nn.Sequential(*[nn.Sequential(nn.Conv2d(ni, nf, 3, s, 1), act()) for ni, nf, s in chans],
                         nn.Conv2d(64, 10, 3, 2, 1), nn.Flatten())

def test_init_ex1_a_shift_without_leak_leaves_zero_gradients(fmnist):
    from functools import partial
    from slowlearn.init import GeneralReLU, init_weights
    torch.manual_seed(1)
    m = init_weights(_plain_cnn(partial(GeneralReLU, 0., 0.4)))
    x = fmnist[0][:256]
    acts = []
    def keep_grad(mod, inp, out): inp[0].register_hook(acts.append)      # the gradient at the activation's input
    hooks = [mod.register_forward_hook(keep_grad) for mod in m.modules() if isinstance(mod, GeneralReLU)]
    F.cross_entropy(m(x), fmnist[1][:256]).backward()
    for h in hooks: h.remove()
    assert max((g != 0).any(0).logical_not().float().mean().item() for g in acts) > 0

def test_init_ex2_the_tanh_gain():
    from functools import partial
    from slowlearn.init import xavier_normal_
    def act_stds(init, act, n_layers=30, width=256):
        torch.manual_seed(0)
        x, stds = torch.randn(1024, width), []
        for _ in range(n_layers): x = act(x @ init(torch.empty(width, width)).T); stds.append(x.std().item())
        return stds
    gs = [act_stds(partial(xavier_normal_, gain=g), torch.tanh)[-1] for g in (1, 1.2, 1.4, 5/3, 2)]
    assert gs == sorted(gs) and 0.1 < gs[0] < 0.2 and 0.6 < gs[-1] < 0.8      # about 0.13 at 1, about 0.7 at 2

def test_init_ex3_fan_out_shrinks_the_activations(fmnist):
    from functools import partial
    from slowlearn.init import init_weights, kaiming_normal_
    xb = fmnist[0][:256]
    def stds(init):
        torch.manual_seed(1); m = init_weights(_plain_cnn(), init); s, x = [], xb
        with torch.no_grad():
            for layer in m[:-1]: x = layer(x); s.append(x.std().item())
        return s
    assert stds(partial(kaiming_normal_, mode='fan_out'))[6] < stds(kaiming_normal_)[6] / 3

# ---- 07 layers ---------------------------------------------------------------------------------------------------

def _bn_cnn():
    "The layers lesson's `cnn('BatchNorm')`."
    from functools import partial
    from slowlearn.init import GeneralReLU, init_weights
    from slowlearn.layers import conv, BatchNorm
    act = partial(GeneralReLU, 0.1, 0.4)
    torch.manual_seed(1)
    chans = [1, 8, 16, 32, 64]
    blocks = [conv(ni, nf, act=act, norm=BatchNorm) for ni, nf in zip(chans, chans[1:])]
    return init_weights(nn.Sequential(*blocks, conv(64, 10, act=None, norm=None), nn.Flatten()), leak=0.1)

def test_layers_ex1_small_batches_give_noisy_statistics(fmnist):
    c0 = _bn_cnn()[0][0]; xt = fmnist[0]
    def noise(bs, n=50):
        with torch.no_grad(): return torch.stack([c0(xt[k*bs:(k+1)*bs]).mean((0, 2, 3)) for k in range(n)]).std(0).mean()
    assert 2 < noise(8) / noise(64) < 4

def test_layers_ex2_a_bias_before_batchnorm_does_not_move(fmnist):
    xt, yt = fmnist[:2]
    m = _bn_cnn()
    m[0][0] = nn.Conv2d(1, 8, 3, 2, 1, bias=True); nn.init.zeros_(m[0][0].bias)
    w0 = m[0][0].weight.detach().clone()
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    for i in range(5): F.cross_entropy(m(xt[i*64:(i+1)*64]), yt[i*64:(i+1)*64]).backward(); opt.step(); opt.zero_grad()
    assert m[0][0].bias.abs().max() < 1e-5 and (m[0][0].weight - w0).abs().max() > 1e-3

def test_layers_ex3_eval_mode_with_one_image(fmnist):
    xv = fmnist[2]; m = _bn_cnn()
    with torch.no_grad():
        assert (m(xv[:1]) - m(xv[:256])[:1]).abs().max() > 0.1          # train mode: the batch's statistics
        m.eval(); assert_close(m(xv[:1]), m(xv[:256])[:1], rtol=1e-4, atol=1e-4)

# ---- 07a models --------------------------------------------------------------------------------------------------

def test_models_ex1_without_batchnorm_the_convs_get_a_bias():
    from slowlearn.models import fmnist_cnn
    assert fmnist_cnn(norm=None)[0][0].bias is not None and fmnist_cnn()[0][0].bias is None

@pytest.mark.slow
def test_models_ex1_without_batchnorm_one_epoch_ends_lower(fmnist):
    from torcheval.metrics import MulticlassAccuracy
    from slowlearn.data import DataLoaders
    from slowlearn.learner import Learner
    from slowlearn.metrics import MetricsCB
    from slowlearn.models import fmnist_cnn
    xt, yt, xv, yv = fmnist
    small = DataLoaders.from_tensors(xt[:10_000], yt[:10_000], xv[:2_000], yv[:2_000], bs=128)
    def acc(norm):
        torch.manual_seed(0)
        learn = Learner(fmnist_cnn(norm=norm), small, lr=0.1, cbs=[MetricsCB(MulticlassAccuracy())]); learn.fit(1)
        return learn.history[-1]['accuracy']
    assert acc(None) < acc(nn.BatchNorm2d)

def test_models_ex2_half_the_width_is_about_a_quarter_of_the_weights():
    from slowlearn.models import fmnist_cnn
    n_full, n_half = (sum(p.numel() for p in fmnist_cnn(nfs=f).parameters()) for f in [(16, 32, 64, 128), (8, 16, 32, 64)])
    assert 0.2 < n_half / n_full < 0.3, (n_half, n_full)

def test_models_ex3_another_image_size():
    from slowlearn.models import fmnist_cnn
    assert fmnist_cnn()(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert fmnist_cnn()[:-1](torch.randn(2, 1, 64, 64)).shape == (2, 10, 2, 2)

# ---- 10 speed ----------------------------------------------------------------------------------------------------

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

# ---- 10a callbacks -----------------------------------------------------------------------------------------------

def test_callbacks_ex2_how_much_of_the_average_470_steps_hold():
    assert abs((1 - 0.999**470) - 0.375) < 0.005          # about 37%: the rest is still the first weights

@pytest.mark.slow
def test_callbacks_ex3_clipping_halves_the_loss_spike(fmnist):
    from slowlearn.callbacks import GradClipCB
    from slowlearn.data import DataLoaders
    from slowlearn.learner import Learner
    from slowlearn.models import fmnist_cnn
    from slowlearn.sched import RecorderCB
    xt, yt = fmnist[:2]
    sub = DataLoaders.from_tensors(xt[:8192], yt[:8192], xt[:256], yt[:256], bs=256)
    peak = {}
    for name, cbs in (('no clip', []), ('clip', [GradClipCB(2.)])):
        torch.manual_seed(0); rec = RecorderCB()
        Learner(fmnist_cnn(), sub, lr=1., cbs=[rec, *cbs]).fit(1, valid=False)
        peak[name] = max(rec['loss'][:10])
    assert 7 < peak['no clip'] < 12 and peak['clip'] < 0.6 * peak['no clip'], peak

# ---- 11 distributed ----------------------------------------------------------------------------------------------

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

# ---- 14 cli ------------------------------------------------------------------------------------------------------

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

# ---- 15 finetune -------------------------------------------------------------------------------------------------

def test_finetune_ex1_freeze_to_a_middle_group():
    from slowlearn.finetune import bn_params
    from slowlearn.learner import Learner
    from slowlearn.models import fmnist_cnn
    def splitter(m): return [m[:2].parameters(), m[2:4].parameters(), m[4:].parameters()]
    learn = Learner(fmnist_cnn(n_out=5), [], splitter=splitter)
    bn = bn_params(learn.model)
    for train_bn in (True, False):
        learn.freeze_to(1, train_bn=train_bn)
        g0 = list(learn.model[:2].parameters())
        assert [p.requires_grad for p in g0] == [train_bn and id(p) in bn for p in g0]
        assert all(p.requires_grad for p in learn.model[2:].parameters())

def test_finetune_ex2_the_rates_of_a_slice():
    from slowlearn.learner import group_lrs
    assert_close(torch.tensor(group_lrs(slice(1e-5, 1e-3), 3)), torch.tensor([1e-5, 1e-4, 1e-3]), rtol=1e-9, atol=0)
    assert_close(torch.tensor(group_lrs(slice(1e-3), 3)), torch.tensor([1e-4, 1e-4, 1e-3]), rtol=1e-9, atol=0)


# ---- 13 resnet ---------------------------------------------------------------------------------------------------

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

# ---- 12 experiments ----------------------------------------------------------------------------------------------

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
