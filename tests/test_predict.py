"`get_preds`, `predict_batch`, `tta` and `ClassificationInterpretation` against plain PyTorch, on any loader and under torchrun."
import dataclasses, importlib.util, io
from contextlib import redirect_stdout
from functools import partial
from pathlib import Path
import pytest, torch, torch.nn.functional as F
from torch import nn
from torch.testing import assert_close
from torch.utils.data import DataLoader, IterableDataset, TensorDataset, get_worker_info
from fastcore.basics import noop
from torcheval.metrics import MulticlassAccuracy
from slowlearn.learner import Learner, Callback, DeviceCB
from slowlearn.data import DataLoaders
from slowlearn.metrics import MetricsCB
from slowlearn.speed import MixedPrecisionCB
from slowlearn.predict import ClassificationInterpretation, GatherPredsCB, per_item_loss, loss_activation, hflip

HERE = Path(__file__).parent
def _load(name):
    spec = importlib.util.spec_from_file_location(name, HERE/f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod
ddp_preds = _load('ddp_preds')
torchrun = _load('test_distributed').torchrun     # the same launcher as the training tests

def data(n=90, seed=0):
    "Images `(n, 1, 3, 4)` whose class (of 3) depends on the pixels, so a model learns something in one epoch."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 3, 4, generator=g)
    y = (x[:, 0, 0, :2].sum(1) > 0).long() + (x[:, 0, 2, 3] > 0.5).long()
    return x, y

def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))

def learner(cbs=(), loss_func=F.cross_entropy, n_valid=50, bs=16):
    "Trained for one epoch on 200 items; validation: `n_valid` items in batches of `bs` (the last one partial)."
    xt, yt = data(200, seed=1)
    xv, yv = data(n_valid)
    dls = DataLoaders.from_tensors(xt, yt, xv, yv, bs=bs, seed=0)
    learn = Learner(model(), dls, lr=0.1, loss_func=loss_func, cbs=[DeviceCB('cpu'), MetricsCB(MulticlassAccuracy()), *cbs])
    learn.fit(1)
    return learn

def softmax_of(learn, x):
    learn.model.eval()
    with torch.no_grad(): return learn.model(x).softmax(1)

@pytest.fixture(scope='module')
def learn(): return learner()

def test_get_preds_accuracy_and_loss_equal_metricscb_of_the_same_epoch(learn):
    probs, targs, losses = learn.get_preds(with_loss=True)
    rec = learn.history[-1]
    assert rec['phase'] == 'valid'
    assert (probs.argmax(1) == targs).float().mean().item() == pytest.approx(rec['accuracy'], abs=1e-7)
    assert losses.mean().item() == pytest.approx(rec['loss'], abs=1e-6)

def test_predictions_and_targets_come_in_the_loaders_order(learn):
    x, y = learn.dls.valid.tensors
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    batches = [(x[i], y[i]) for i in perm.split(7)]
    probs, targs = learn.get_preds(batches)
    assert torch.equal(targs, y[perm])
    assert_close(probs, softmax_of(learn, x[perm]), rtol=0, atol=1e-6)

def test_with_loss_is_per_item_cross_entropy(learn):
    x, y = learn.dls.valid.tensors
    learn.model.eval()
    with torch.no_grad(): logits = learn.model(x)
    _, _, losses = learn.get_preds(with_loss=True)
    want = torch.stack([-logits[i].log_softmax(0)[y[i]] for i in range(len(y))])   # the definition, item by item
    assert_close(losses, want, rtol=0, atol=1e-6)

def test_with_loss_uses_a_loss_modules_settings():
    learn = learner(loss_func=nn.CrossEntropyLoss(label_smoothing=0.1))
    x, y = learn.dls.valid.tensors
    _, _, losses = learn.get_preds(with_loss=True)
    logp = torch.log(softmax_of(learn, x))
    assert_close(losses, -(0.9 * logp.gather(1, y[:, None])[:, 0] + 0.1 * logp.mean(1)), rtol=0, atol=1e-5)
    assert learn.loss_func.reduction == 'mean'           # the learner's loss module is left as it was

def test_with_input_returns_the_inputs_first_and_act_applies_to_the_predictions(learn):
    x, y = learn.dls.valid.tensors
    inp, logits, targs, losses = learn.get_preds(with_input=True, with_loss=True, act=noop)
    assert torch.equal(inp, x) and torch.equal(targs, y) and losses.shape == (len(x),)
    learn.model.eval()
    with torch.no_grad(): assert_close(logits, learn.model(x), rtol=0, atol=1e-6)

def test_default_activation_follows_the_loss():
    assert loss_activation(F.cross_entropy)(torch.zeros(2, 4)).sum(1).tolist() == [1., 1.]
    assert loss_activation(nn.CrossEntropyLoss()) is not None and loss_activation(partial(F.cross_entropy, label_smoothing=.1)) is not None
    assert loss_activation(F.binary_cross_entropy_with_logits) is torch.sigmoid
    assert loss_activation(F.mse_loss) is None

def test_batches_of_inputs_only_have_no_targets(learn):
    x, _ = learn.dls.valid.tensors
    probs, targs = learn.get_preds([(x[:20],), (x[20:],)])
    assert targs is None
    assert_close(probs, softmax_of(learn, x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match='with_loss=True needs batches with targets'): learn.get_preds([(x,)], with_loss=True)

class Stream(IterableDataset):
    "Batches of 7 of `x, y`, dealt out to the DataLoader's workers in turn; no `__len__`."
    def __init__(self, x, y): self.x, self.y = x, y
    def __iter__(self):
        w = get_worker_info()
        for k, s in enumerate(range(0, len(self.x), 7)):
            if w is None or k % w.num_workers == w.id: yield self.x[s:s+7], self.y[s:s+7]

@pytest.mark.parametrize('num_workers', [0, 2])
def test_a_dataloader_over_an_iterable_dataset_without_length(learn, num_workers):
    x, y = learn.dls.valid.tensors
    dl = DataLoader(Stream(x, y), batch_size=None, num_workers=num_workers)
    with pytest.raises(TypeError): len(dl)
    probs, targs = learn.get_preds(dl)
    xs, ys = map(torch.cat, zip(*dl))      # the order this loader yields
    assert torch.equal(targs, ys) and sorted(ys.tolist()) == sorted(y.tolist())
    assert_close(probs, softmax_of(learn, xs), rtol=0, atol=1e-6)

class Count(Callback):
    def __init__(self, inference): self.inference, self.n = inference, 0
    def before_batch(self, learn): self.n += 1

def test_only_callbacks_marked_inference_run_and_the_learner_is_left_as_it_was():
    marked, unmarked, extra = Count(True), Count(False), Count(False)
    learn = learner(cbs=[marked, unmarked])
    marked.n = unmarked.n = 0
    before, history, cbs = dict(vars(learn)), list(learn.history), list(learn.cbs)
    learn.model.train()
    learn.get_preds(cbs=extra)
    assert (marked.n, unmarked.n, extra.n) == (4, 0, 4)    # 50 items in batches of 16
    assert vars(learn).keys() == before.keys() and all(vars(learn)[k] is v for k, v in before.items())
    assert learn.history == history and list(learn.cbs) == cbs and learn.model.training
    learn.fit(1)                                            # and it still trains
    assert len(learn.history) == 2

class Twice(Callback):
    "Replaces the forward step (the model's outputs, doubled): it is how this model predicts."
    def __init__(self, inference=None):
        if inference is not None: self.inference = inference
    def predict(self, learn): learn.preds = learn.model(learn.xb[0]) * 2

@pytest.mark.parametrize('inference', [None, True, False])
def test_a_callback_replacing_a_step_runs_in_get_preds_unless_it_opts_out(learn, inference):
    learn.cbs.append(cb := Twice(inference))
    try: probs, _ = learn.get_preds(act=noop)
    finally: learn.cbs.remove(cb)
    with torch.no_grad(): ref = learn.model(learn.dls.valid.tensors[0])
    assert_close(probs, ref * (1 if inference is False else 2))

@dataclasses.dataclass
class Out:
    logits: torch.Tensor
    loss: torch.Tensor = None
    extra: object = None

@pytest.mark.parametrize('kind', ['dict', 'dataclass'])
def test_structured_outputs_come_back_collated_field_by_field(kind):
    "A model on dict batches returning a dict or a dataclass with its own loss: each field concatenated over the batches, the per-batch loss stacked."
    x, y = data(50)
    class Net(nn.Module):
        def __init__(self): super().__init__(); self.m = model()
        def forward(self, x, labels):
            o = self.m(x); l = F.cross_entropy(o, labels)
            return dict(logits=o, loss=l, parts=(o[:, :1], o[:, 1:])) if kind == 'dict' else Out(o, l)
    class Step(Callback):
        def predict(self, learn): learn.preds = learn.model(**learn.batch)
        def get_loss(self, learn): learn.loss = learn.preds['loss'] if kind == 'dict' else learn.preds.loss
    batches = [dict(x=x[i:i+16], labels=y[i:i+16]) for i in range(0, 50, 16)]
    learn = Learner(net := Net(), DataLoaders(batches, batches), cbs=Step())
    out, targs = learn.get_preds()
    net.eval()
    with torch.no_grad(): ref = net.m(x)
    logits, loss = (out['logits'], out['loss']) if kind == 'dict' else (out.logits, out.loss)
    assert type(out) is (dict if kind == 'dict' else Out) and torch.equal(targs, y)
    assert_close(logits, ref)                                                       # not through an activation
    assert_close(loss, torch.stack([F.cross_entropy(ref[i:i+16], y[i:i+16]) for i in range(0, 50, 16)]))
    if kind == 'dict': assert_close(torch.cat(out['parts'], 1), ref)
    else: assert out.extra is None
    with pytest.raises(ValueError, match='Step replaces the loss step'): learn.get_preds(with_loss=True)
    with pytest.raises(TypeError, match='tta averages tensor predictions'): learn.tta(augment=lambda t: t)
    x2, _, _ = learn.get_preds(with_input=True)
    assert list(x2) == ['x'] and torch.equal(x2['x'], x)                             # a dict batch's inputs

def test_dict_batches_with_the_default_steps():
    "The default steps pass a dict batch's inputs by name and its `labels` to the loss."
    x, y = data(50)
    class Net(nn.Module):
        def __init__(self): super().__init__(); self.m = model()
        def forward(self, pixels): return self.m(pixels)
    batches = [dict(pixels=x[i:i+16], labels=y[i:i+16]) for i in range(0, 50, 16)]
    learn = Learner(net := Net(), DataLoaders(batches, batches), cbs=MetricsCB(MulticlassAccuracy()))
    learn.fit(1)
    probs, targs, losses = learn.get_preds(with_loss=True)
    assert torch.equal(targs, y) and losses.mean().item() == pytest.approx(learn.history[-1]['loss'], abs=1e-6)
    assert_close(probs, softmax_of(learn, x))
    assert_close(learn.tta(augment=lambda t: t)[0], probs)

def test_get_preds_runs_under_mixed_precision_and_returns_float32():
    learn = learner(cbs=[MixedPrecisionCB()])
    x, _ = learn.dls.valid.tensors
    logits, targs = learn.get_preds(act=noop)
    assert logits.dtype == torch.float32
    learn.model.eval()
    with torch.no_grad(), torch.autocast('cpu', torch.bfloat16): ref = learn.model(x)
    assert ref.dtype == torch.bfloat16 and torch.equal(logits, ref.float())
    assert (logits.argmax(1) == targs).float().mean().item() == pytest.approx(learn.history[-1]['accuracy'], abs=1e-7)

def test_tta_with_an_identity_augment_is_get_preds(learn):
    probs, targs = learn.get_preds()
    p1, t1 = learn.tta(augment=lambda x: x)
    assert torch.equal(p1, probs) and torch.equal(t1, targs)
    p3, _ = learn.tta(augment=lambda x: x, n=3)
    assert_close(p3, probs, rtol=0, atol=1e-6)

def test_tta_averages_over_the_augmented_copies(learn):
    x, _ = learn.dls.valid.tensors
    p, _ = learn.tta()
    assert_close(p, (softmax_of(learn, x) + softmax_of(learn, x.flip(-1))) / 2, rtol=0, atol=1e-6)
    def noisy(xb): return xb + torch.randn(xb.shape)      # a random augmentation: each pass draws its own
    torch.manual_seed(5)
    p, _ = learn.tta(augment=noisy, n=3, act=noop)
    torch.manual_seed(5)                                  # the same draws, in the same order: pass by pass, batch by batch
    learn.model.eval()
    with torch.no_grad():
        want = learn.model(x) + sum(torch.cat([learn.model(noisy(xb)) for xb in x.split(16)]) for _ in range(3))
    want = want / 4
    assert_close(p, want, rtol=0, atol=1e-5)

def test_predict_batch_on_a_batch_and_on_one_item(learn):
    x, _ = learn.dls.valid.tensors
    acts, cls = learn.predict_batch(x[:5])
    assert_close(acts, softmax_of(learn, x[:5]), rtol=0, atol=1e-6)
    assert torch.equal(cls, acts.argmax(1))
    a0, c0 = learn.predict_batch(x[3])
    assert a0.shape == (3,) and c0.ndim == 0
    assert_close(a0, acts[3], rtol=0, atol=1e-6) and c0 == cls[3]

def test_predict_batch_tells_an_item_from_a_batch_with_any_loader(learn):
    x, y = learn.dls.valid.tensors
    dls = DataLoaders(learn.dls.train, DataLoader(TensorDataset(x, y), batch_size=8))   # it peeks at a batch
    other = Learner(learn.model, dls)
    acts, cls = other.predict_batch(x[:3])
    a2, c2 = other.predict_batch(x[2])
    assert acts.shape == (3, 3) and a2.shape == (3,) and c2 == cls[2]
    assert_close(acts, softmax_of(learn, x[:3]), rtol=0, atol=1e-6)

def test_predict_batch_returns_no_classes_for_a_regression():
    learn = learner(loss_func=lambda p, y: F.mse_loss(p[:, 0], y.float()))
    x, _ = learn.dls.valid.tensors
    out, cls = learn.predict_batch(x[:4])
    assert cls is None
    learn.model.eval()
    with torch.no_grad(): assert_close(out, learn.model(x[:4]), rtol=0, atol=1e-6)

class GetPredsInFit(Callback):
    def after_epoch(self, learn): learn.get_preds()

def test_get_preds_from_a_callback_during_fit_is_an_error():
    with pytest.raises(RuntimeError, match="can't run while fit is running"): learner().fit(1, cbs=GetPredsInFit())

def test_bad_arguments_are_clear_errors(learn):
    x, _ = learn.dls.valid.tensors
    with pytest.raises(TypeError, match='dl must be an iterable'): learn.get_preds(dl=3)
    with pytest.raises(TypeError, match='with_input must be True or False'): learn.get_preds(with_input='yes')
    with pytest.raises(TypeError, match='with_loss must be True or False'): learn.get_preds(with_loss=1)
    with pytest.raises(TypeError, match='act must be None or a callable'): learn.get_preds(act='softmax')
    with pytest.raises(ValueError, match='dl yielded no batches'): learn.get_preds([])
    with pytest.raises(TypeError, match='augment must be a callable'): learn.tta(augment=2)
    for n,exc in ((0, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(exc, match='n must be an integer >= 1'): learn.tta(n=n)
    with pytest.raises(ValueError, match=r'hflip flips image batches \(N, C, H, W\)'): learn.tta([(x[:, 0],)])
    with pytest.raises(TypeError, match='x must be a tensor'): learn.predict_batch([1, 2])
    with pytest.raises(ValueError, match=r'x must be a batch of 4 dimensions or one item of 3.*got shape \(3, 4\)'): learn.predict_batch(x[0, 0])
    with pytest.raises(ValueError, match="needs a loss_func that takes reduction='none'"): per_item_loss(lambda p, y: (p - y).abs().mean())
    lf = Learner(model(), learn.dls, loss_func=lambda p, y: F.cross_entropy(p, y))
    with pytest.raises(ValueError, match="needs a loss_func that takes reduction='none'"): lf.get_preds(with_loss=True)
    bad = Learner(model(), learn.dls, loss_func=partial(lambda p, y, reduction='mean': p.sum()))
    with pytest.raises(ValueError, match='not one loss per item'): bad.get_preds(with_loss=True)

# --- ClassificationInterpretation

@pytest.fixture(scope='module')
def interp(learn): return ClassificationInterpretation.from_learner(learn, vocab=['a', 'b', 'c'])

def test_confusion_matrix_counts_actual_against_predicted(learn, interp):
    probs, targs = learn.get_preds()
    cm = torch.zeros(3, 3, dtype=torch.long)
    for t, p in zip(targs.tolist(), probs.argmax(1).tolist()): cm[t, p] += 1
    assert torch.equal(interp.confusion_matrix(), cm)
    assert cm.diag().sum().item() / cm.sum().item() == pytest.approx(learn.history[-1]['accuracy'], abs=1e-7)
    off = [(['a', 'b', 'c'][i], ['a', 'b', 'c'][j], cm[i, j].item()) for i in range(3) for j in range(3) if i != j and cm[i, j]]
    assert sorted(interp.most_confused()) == sorted(off)
    assert [c for *_, c in interp.most_confused()] == sorted([c for *_, c in off], reverse=True)

def test_top_losses_are_the_largest_cross_entropies(learn, interp):
    x, y = learn.dls.valid.tensors
    learn.model.eval()
    with torch.no_grad(): ce = F.cross_entropy(learn.model(x), y, reduction='none')
    vals, idxs = interp.top_losses(5)
    assert_close(vals, ce.sort(descending=True).values[:5], rtol=0, atol=1e-6)
    assert_close(ce[idxs], vals, rtol=0, atol=1e-6)

def test_plots_draw_class_names_and_the_worst_items(learn, interp):
    import matplotlib; matplotlib.use('agg')
    import matplotlib.pyplot as plt
    ax = interp.plot_confusion_matrix(normalize=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ['a', 'b', 'c']
    fig = interp.plot_top_losses(4, ncols=2)
    vals, idxs = interp.top_losses(4)
    x, y = learn.dls.valid.tensors
    for ax, l, i in zip(fig.axes, vals.tolist(), idxs.tolist()):
        p = interp.preds[i].item()
        assert ax.get_title() == f"{'abc'[p]} / {'abc'[y[i]]}\n{l:.2f} / {interp.probs[i, p]:.2f}"
        assert_close(torch.tensor(ax.images[0].get_array()), x[i, 0], rtol=0, atol=0)   # the right image
    plt.close('all')

def test_interpretation_rejects_bad_arguments(learn, interp):
    p, t, l = interp.probs, interp.targs, interp.losses
    with pytest.raises(ValueError, match='vocab must name the 3 classes'): ClassificationInterpretation(p, t, l, vocab=['a'])
    with pytest.raises(ValueError, match='probs must be'): ClassificationInterpretation(p[:, 0], t, l)
    with pytest.raises(ValueError, match='one value per item'): ClassificationInterpretation(p, t[:3], l)
    with pytest.raises(ValueError, match=r'k must be an integer in \[1, 50\]'): interp.top_losses(51)
    with pytest.raises(ValueError, match='needs the loader'): ClassificationInterpretation(p, t, l).plot_top_losses()
    with pytest.raises(ValueError, match='dl yielded 0 items, fewer than predicted'): ClassificationInterpretation(p, t, l, dl=[]).plot_top_losses()
    x, _ = learn.dls.valid.tensors
    with pytest.raises(ValueError, match='needs batches with targets'): ClassificationInterpretation.from_learner(learn, [(x,)])

# --- two processes under torchrun

@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('ddp_preds')
    res = torchrun(HERE/'ddp_preds.py', out)
    assert res.returncode == 0, res.stderr[-4000:]
    return {name: [torch.load(out/f'{name}_rank{r}.pt', weights_only=False) for r in range(2)] for name in ddp_preds.CASES}

def _close(a, b):
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for u, v in zip(a, b): _close(u, v)
    elif isinstance(a, dict): assert a.keys() == b.keys(); _close(list(a.values()), list(b.values()))
    elif isinstance(a, torch.Tensor): assert a.dtype == b.dtype; assert_close(a, b, rtol=0, atol=1e-5)
    else: assert a == b

@pytest.mark.parametrize('case', list(ddp_preds.CASES))
def test_two_processes_each_return_what_one_process_returns(two_ranks, case):
    with redirect_stdout(io.StringIO()): ref = ddp_preds.results(*ddp_preds.CASES[case], ddp=False)
    for r in two_ranks[case]:
        for k in ('preds', 'listed', 'dicts', 'tta', 'batch', 'item'): _close(r[k], ref[k])
        assert torch.equal(r['preds'][2], ref['preds'][2])     # targets: exactly the loader's, in its order
