"""Solutions to the exercises of lessons 00 to 09, each with a check of what the exercise says the reader should see.

One test per exercise, named after its lesson (without the number, which may change) and the exercise's number.
Exercises that need a long training run or a timing are either marked slow or only described in their lesson."""
import math
import pytest, torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

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

def test_data_ex1_drop_the_last_batch(fashion_arrays):
    xt, yt = fashion_arrays[:2]
    def no_last_batch(x, y, bs):
        for i in range(0, len(x) - bs + 1, bs): yield x[i:i+bs], y[i:i+bs]
    sizes = [len(yb) for _, yb in no_last_batch(xt, yt, 512)]
    assert (len(sizes), set(sizes), 60_000 - sum(sizes)) == (117, {512}, 96)

def test_data_ex2_resume_in_the_middle_of_an_epoch(fashion_arrays):
    from slowlearn.data import TensorLoader
    xt, yt = fashion_arrays[:2]
    dl = TensorLoader(xt, yt, bs=512, shuffle=True, seed=7)
    _ = list(dl)                                   # epoch 0
    ep1 = [yb for _, yb in dl]                     # the second iteration is epoch 1
    dl2 = TensorLoader(xt, yt, bs=512, shuffle=True, seed=7); dl2.set_epoch(1, start=5)
    rest = [yb for _, yb in dl2]
    assert len(rest) == 113 and all(torch.equal(a, b) for a, b in zip(rest, ep1[5:]))

def test_data_ex3_a_random_holdout_is_roughly_balanced(fashion_arrays):
    from slowlearn.data import holdout_split
    yt = fashion_arrays[1]
    for s in range(3):
        _, va = holdout_split(60_000, 6_000, s)
        counts = torch.bincount(yt[va], minlength=10)
        assert 510 <= counts.min() and counts.max() <= 690 and counts.max() > counts.min(), (s, counts)   # 8.5% to 11.5% of 6,000

# ---- 02 learner --------------------------------------------------------------------------------------------------

def _learner_setup(fashion_arrays):
    "The learner lesson's data and model: 10,000 training and 2,000 validation images, a 64-unit MLP, lr 0.1."
    from slowlearn.data import DataLoaders
    xt, yt, xv, yv = fashion_arrays
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

def test_learner_ex1_stop_after_10_batches(fashion_arrays):
    from slowlearn.learner import Learner, Callback, CancelFitException
    dls, model = _learner_setup(fashion_arrays)
    class StopAt10(Callback):
        def after_batch(self, learn):
            if learn.training and learn.iter == 9: raise CancelFitException()
    rec = _loss_recorder(); learn = Learner(model(), dls(), lr=0.1, cbs=[rec, StopAt10()]); learn.fit(1)
    assert (learn.iter, learn.train_iter, len(rec.losses[True]), len(rec.losses[False])) == (9, 10, 10, 0)

def test_learner_ex2_label_smoothing_raises_the_loss_not_the_learning(fashion_arrays):
    from slowlearn.learner import Learner, Callback
    dls, model = _learner_setup(fashion_arrays)
    class Smoothed(Callback):
        def get_loss(self, learn): learn.loss = F.cross_entropy(learn.preds, learn.batch[1], label_smoothing=0.1)
    plain, smoothed = _loss_recorder(), _loss_recorder()
    Learner(model(), dls(), lr=0.1, cbs=[plain]).fit(1)
    learn = Learner(model(), dls(), lr=0.1, cbs=[smoothed, Smoothed()]); learn.fit(1)
    mean = lambda xs: sum(xs) / len(xs)
    with torch.no_grad(): acc = (learn.model(fashion_arrays[2][:2000]).argmax(1) == fashion_arrays[3][:2000]).float().mean().item()
    assert mean(smoothed.losses[True]) > mean(plain.losses[True]) and acc > 0.65

def test_learner_ex3_the_first_loss_is_a_uniform_guess(fashion_arrays):
    from slowlearn.learner import Learner
    dls, model = _learner_setup(fashion_arrays)
    rec = _loss_recorder(); Learner(model(), dls(), lr=0.1, cbs=[rec]).fit(1)
    ls = rec.losses[True]
    assert abs(ls[0] - math.log(10)) < 0.15 and sum(ls[-10:]) / 10 < 1

# ---- 03 resume ---------------------------------------------------------------------------------------------------

def test_resume_ex1_seeds_are_not_enough_to_resume():
    from slowlearn.resume import set_seed, rng_states, set_rng_states
    set_seed(0); _, second = torch.rand(3), torch.rand(3)
    set_seed(0); assert not torch.equal(torch.rand(3), second)
    set_seed(0); _ = torch.rand(3); st = rng_states(); _ = torch.rand(10); set_rng_states(st)
    assert torch.equal(torch.rand(3), second)

# ---- 04 metrics --------------------------------------------------------------------------------------------------

def _metrics_mlp():
    "The metrics lesson's MLP."
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))

def _accuracy_by_hand(model, dl):
    "Accuracy over all of `dl`, and the mean of its batches' accuracies."
    model.eval(); correct, seen, accs = 0, 0, []
    with torch.no_grad():
        for xb, yb in dl:
            c = (model(xb).argmax(1) == yb).sum().item(); correct, seen = correct + c, seen + len(yb); accs.append(c / len(yb))
    return correct / seen, sum(accs) / len(accs)

@pytest.mark.slow
def test_metrics_ex1_macro_f1_and_the_weakest_class(fashion_arrays):
    from torcheval.metrics import MulticlassAccuracy, MulticlassF1Score
    from slowlearn.data import DataLoaders
    from slowlearn.learner import Learner
    from slowlearn.metrics import MetricsCB
    xt, yt, xv, yv = fashion_arrays
    dls = DataLoaders.from_tensors(xt[:10_000], yt[:10_000], xv, yv, bs=256, val_bs=384)
    assert torch.equal(torch.bincount(yv), torch.full((10,), 1000))
    learn = Learner(_metrics_mlp(), dls, lr=3e-3, opt_func=torch.optim.Adam,
                    cbs=MetricsCB(MulticlassAccuracy(), f1=MulticlassF1Score(num_classes=10, average='macro')))
    learn.fit(3)
    for r in learn.history[1::2]: assert abs(r['f1'] - r['accuracy']) < 0.03, r
    learn = Learner(_metrics_mlp(), dls, lr=3e-3, opt_func=torch.optim.Adam, cbs=MetricsCB(f1=MulticlassF1Score(num_classes=10, average=None)))
    learn.fit(3)
    for r in learn.history[1::2]: assert min(range(10), key=lambda i: r['f1'][i]) == 6     # Shirt

@pytest.mark.slow
def test_metrics_ex2_the_mean_of_batch_accuracies(fashion_arrays):
    from slowlearn.data import DataLoaders
    from slowlearn.learner import Learner
    xt, yt, xv, yv = fashion_arrays
    dls = DataLoaders.from_tensors(xt[:10_000], yt[:10_000], xv, yv, bs=256, val_bs=384)
    learn = Learner(_metrics_mlp(), dls, lr=3e-3, opt_func=torch.optim.Adam); learn.fit(3)
    dls_1111 = DataLoaders.from_tensors(xt[:10_000], yt[:10_000], xv, yv, bs=256, val_bs=1111)
    exact, mean_of_batches = _accuracy_by_hand(learn.model, dls_1111.valid)
    assert abs(exact - mean_of_batches) > 0.01 and exact == _accuracy_by_hand(learn.model, dls.valid)[0]

@pytest.mark.slow
def test_metrics_ex3_watch_it_overfit(fashion_arrays):
    from torcheval.metrics import MulticlassAccuracy
    from slowlearn.data import DataLoaders
    from slowlearn.learner import Learner
    from slowlearn.metrics import MetricsCB
    xt, yt, xv, yv = fashion_arrays
    learn = Learner(_metrics_mlp(), DataLoaders.from_tensors(xt[:1000], yt[:1000], xv, yv, bs=64, val_bs=1000), lr=3e-3,
                    opt_func=torch.optim.Adam, cbs=MetricsCB(MulticlassAccuracy()))
    learn.fit(10)
    train_acc, valid_acc = learn.history[-2]['accuracy'], learn.history[-1]['accuracy']
    assert train_acc > 0.9 and 0.7 < valid_acc < 0.88 and train_acc - valid_acc > 0.08, (train_acc, valid_acc)

# ---- 05 predict --------------------------------------------------------------------------------------------------

def _flip_trained(epochs):
    "The predictions lesson's MLP trained with random horizontal flips for `epochs` epochs on all the training images."
    from torcheval.metrics import MulticlassAccuracy
    from slowlearn.data import fashion_mnist
    from slowlearn.learner import Learner, Callback
    from slowlearn.metrics import MetricsCB
    import slowlearn.predict      # noqa: F401  (adds get_preds and tta to Learner)
    class RandomFlipCB(Callback):
        def before_batch(self, learn):
            if not learn.training: return
            x, y = learn.batch
            learn.batch = (torch.where(torch.rand(len(x), 1, 1, 1) < 0.5, x.flip(-1), x), y)
    learn = Learner(_metrics_mlp(), fashion_mnist(bs=512), lr=3e-3, opt_func=torch.optim.Adam, cbs=[MetricsCB(MulticlassAccuracy()), RandomFlipCB()])
    learn.fit(epochs)
    return learn

@pytest.mark.slow
def test_predict_ex1_more_training_leaves_tta_within_a_point():
    learn = _flip_trained(3)
    p, targs = learn.get_preds(); p_tta = learn.tta()[0]
    acc = lambda q: (q.argmax(1) == targs).float().mean().item()
    assert acc(p) > 0.85 and acc(p_tta) > 0.85 and abs(acc(p_tta) - acc(p)) < 0.01, (acc(p), acc(p_tta))

@pytest.mark.slow
def test_predict_ex2_a_random_shift_the_model_never_saw():
    learn = _flip_trained(1)
    p, targs = learn.get_preds()
    acc = lambda q: (q.argmax(1) == targs).float().mean().item()
    def shift(x):
        dy, dx = torch.randint(-1, 2, (2,)).tolist()
        return torch.roll(x, (dy, dx), dims=(-2, -1))
    accs = []
    for seed in (0, 1): torch.manual_seed(seed); accs.append(acc(learn.tta(augment=shift, n=4)[0]))
    assert max(accs) < acc(p) and accs[0] != accs[1], (accs, acc(p))

@pytest.mark.slow
def test_predict_ex3_the_weakest_class_is_shirt():
    from slowlearn.data import FASHION_MNIST_CLASSES
    from slowlearn.predict import ClassificationInterpretation
    interp = ClassificationInterpretation.from_learner(_flip_trained(1), vocab=FASHION_MNIST_CLASSES)
    cm = interp.confusion_matrix()
    recall = cm.diag() / cm.sum(1)
    worst = recall.argmin().item()
    assert FASHION_MNIST_CLASSES[worst] == 'Shirt' and recall[worst] < 0.7
    row = cm[worst].clone(); row[worst] = 0
    assert {FASHION_MNIST_CLASSES[j] for j in row.topk(2).indices.tolist()} == {'T-shirt/top', 'Coat'}
    assert {('Shirt', 'T-shirt/top'), ('Shirt', 'Coat')} <= {(a, q) for a, q, _ in interp.most_confused()}

# ---- 06 optim ----------------------------------------------------------------------------------------------------

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

# ---- 07 init -----------------------------------------------------------------------------------------------------

def _plain_cnn(act=nn.ReLU):
    "The init lesson's eight conv layers without normalisation."
    chans = [(1, 8, 2), (8, 16, 2), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1)]
    return nn.Sequential(*[nn.Sequential(nn.Conv2d(ni, nf, 3, s, 1), act()) for ni, nf, s in chans],
                         nn.Conv2d(64, 10, 3, 2, 1), nn.Flatten())

def test_init_ex1_a_shift_without_leak_leaves_zero_gradients(fashion_arrays):
    from functools import partial
    from slowlearn.init import GeneralReLU, init_weights
    torch.manual_seed(1)
    m = init_weights(_plain_cnn(partial(GeneralReLU, 0., 0.4)))
    x = fashion_arrays[0][:256]
    acts = []
    def keep_grad(mod, inp, out): inp[0].register_hook(acts.append)      # the gradient at the activation's input
    hooks = [mod.register_forward_hook(keep_grad) for mod in m.modules() if isinstance(mod, GeneralReLU)]
    F.cross_entropy(m(x), fashion_arrays[1][:256]).backward()
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

def test_init_ex3_fan_out_shrinks_the_activations(fashion_arrays):
    from functools import partial
    from slowlearn.init import init_weights, kaiming_normal_
    xb = fashion_arrays[0][:256]
    def stds(init):
        torch.manual_seed(1); m = init_weights(_plain_cnn(), init); s, x = [], xb
        with torch.no_grad():
            for layer in m[:-1]: x = layer(x); s.append(x.std().item())
        return s
    assert stds(partial(kaiming_normal_, mode='fan_out'))[6] < stds(kaiming_normal_)[6] / 3

# ---- 08 layers ---------------------------------------------------------------------------------------------------

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

def test_layers_ex1_small_batches_give_noisy_statistics(fashion_arrays):
    c0 = _bn_cnn()[0][0]; xt = fashion_arrays[0]
    def noise(bs, n=50):
        with torch.no_grad(): return torch.stack([c0(xt[k*bs:(k+1)*bs]).mean((0, 2, 3)) for k in range(n)]).std(0).mean()
    assert 2 < noise(8) / noise(64) < 4

def test_layers_ex2_a_bias_before_batchnorm_does_not_move(fashion_arrays):
    xt, yt = fashion_arrays[:2]
    m = _bn_cnn()
    m[0][0] = nn.Conv2d(1, 8, 3, 2, 1, bias=True); nn.init.zeros_(m[0][0].bias)
    w0 = m[0][0].weight.detach().clone()
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    for i in range(5): F.cross_entropy(m(xt[i*64:(i+1)*64]), yt[i*64:(i+1)*64]).backward(); opt.step(); opt.zero_grad()
    assert m[0][0].bias.abs().max() < 1e-5 and (m[0][0].weight - w0).abs().max() > 1e-3

def test_layers_ex3_eval_mode_with_one_image(fashion_arrays):
    xv = fashion_arrays[2]; m = _bn_cnn()
    with torch.no_grad():
        assert (m(xv[:1]) - m(xv[:256])[:1]).abs().max() > 0.1          # train mode: the batch's statistics
        m.eval(); assert_close(m(xv[:1]), m(xv[:256])[:1], rtol=1e-4, atol=1e-4)

# ---- 09 models ---------------------------------------------------------------------------------------------------

def test_models_ex1_without_batchnorm_the_convs_get_a_bias():
    from slowlearn.models import fashion_mnist_cnn
    assert fashion_mnist_cnn(norm=None)[0][0].bias is not None and fashion_mnist_cnn()[0][0].bias is None

@pytest.mark.slow
def test_models_ex1_without_batchnorm_one_epoch_ends_lower(fashion_arrays):
    from torcheval.metrics import MulticlassAccuracy
    from slowlearn.data import DataLoaders
    from slowlearn.learner import Learner
    from slowlearn.metrics import MetricsCB
    from slowlearn.models import fashion_mnist_cnn
    xt, yt, xv, yv = fashion_arrays
    small = DataLoaders.from_tensors(xt[:10_000], yt[:10_000], xv[:2_000], yv[:2_000], bs=128)
    def acc(norm):
        torch.manual_seed(0)
        learn = Learner(fashion_mnist_cnn(norm=norm), small, lr=0.1, cbs=[MetricsCB(MulticlassAccuracy())]); learn.fit(1)
        return learn.history[-1]['accuracy']
    assert acc(None) < acc(nn.BatchNorm2d)

def test_models_ex2_half_the_width_is_about_a_quarter_of_the_weights():
    from slowlearn.models import fashion_mnist_cnn
    n_full, n_half = (sum(p.numel() for p in fashion_mnist_cnn(nfs=f).parameters()) for f in [(16, 32, 64, 128), (8, 16, 32, 64)])
    assert 0.2 < n_half / n_full < 0.3, (n_half, n_full)

def test_models_ex3_another_image_size():
    from slowlearn.models import fashion_mnist_cnn
    assert fashion_mnist_cnn()(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert fashion_mnist_cnn()[:-1](torch.randn(2, 1, 64, 64)).shape == (2, 10, 2, 2)
