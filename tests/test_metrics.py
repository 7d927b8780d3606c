"`MetricsCB` against torcheval over a whole epoch, and `ProgressCB`'s plain output."
from types import SimpleNamespace
import dataclasses
import pytest, torch
import torch.nn.functional as F
from torch import nn
from torcheval.metrics import MulticlassAccuracy, MulticlassF1Score, Mean
from torcheval.metrics.functional import multiclass_accuracy, multiclass_f1_score
from torcheval.metrics.metric import Metric
from slowlearn.learner import Learner, Callback
from slowlearn.metrics import MetricsCB, ProgressCB, metric_name, AvgMetric, logits_of

def uneven_batches(x, y, sizes):
    out, i = [], 0
    for s in sizes: out.append((x[i:i+s], y[i:i+s])); i += s
    return out

@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 5, generator=g), torch.randint(0, 4, (100,), generator=g)
    return x, y

def test_metrics_equal_torcheval_over_whole_epoch(data):
    x, y = data
    dls = SimpleNamespace(train=uneven_batches(x, y, [32, 32, 32, 4]), valid=uneven_batches(x, y, [7, 50, 43]))
    torch.manual_seed(0); model = nn.Linear(5, 4)
    learn = Learner(model, dls, lr=0., cbs=MetricsCB(MulticlassAccuracy(), f1=MulticlassF1Score(num_classes=4, average='macro')))
    learn.fit(2)
    with torch.no_grad(): preds = model(x)
    assert [(r['epoch'], r['phase']) for r in learn.history] == [(0, 'train'), (0, 'valid'), (1, 'train'), (1, 'valid')]
    for r in learn.history:
        assert r['loss'] == pytest.approx(F.cross_entropy(preds, y).item(), rel=1e-6)
        assert r['accuracy'] == pytest.approx(multiclass_accuracy(preds, y).item(), rel=1e-6)
        assert r['f1'] == pytest.approx(multiclass_f1_score(preds, y, num_classes=4, average='macro').item(), rel=1e-6)

def test_training_metrics_use_the_predictions_made_during_training(data):
    x, y = data
    batches = uneven_batches(x, y, [50, 50])
    torch.manual_seed(0); model = nn.Linear(5, 4)
    ref = nn.Linear(5, 4); ref.load_state_dict(model.state_dict())
    learn = Learner(model, SimpleNamespace(train=batches, valid=[]), lr=0.5, cbs=MetricsCB(MulticlassAccuracy()))
    learn.fit(1)
    opt, preds, losses = torch.optim.SGD(ref.parameters(), 0.5), [], []
    for xb, yb in batches:
        p = ref(xb); loss = F.cross_entropy(p, yb); preds.append(p.detach()); losses.append(loss.item() * len(xb))
        loss.backward(); opt.step(); opt.zero_grad()
    (rec,) = learn.history
    assert rec['loss'] == pytest.approx(sum(losses) / 100, rel=1e-6)
    assert rec['accuracy'] == pytest.approx(multiclass_accuracy(torch.cat(preds), y).item(), rel=1e-6)

def test_history_is_reset_at_each_fit(data):
    x, y = data
    learn = Learner(nn.Linear(5, 4), SimpleNamespace(train=[(x, y)], valid=[(x, y)]), cbs=MetricsCB())
    learn.fit(2); assert len(learn.history) == 4
    learn.fit(1); assert [r['epoch'] for r in learn.history] == [0, 0]

def test_metric_names():
    assert metric_name(MulticlassAccuracy()) == 'accuracy' and metric_name(MulticlassF1Score()) == 'f1_score'
    assert list(MetricsCB(Mean(), acc=MulticlassAccuracy()).metrics) == ['acc', 'mean']

def test_bad_metrics_are_rejected():
    with pytest.raises(TypeError, match="metric 'acc' must be a torcheval metric"): MetricsCB(acc=3)
    with pytest.raises(TypeError, match='preds_func must be callable'): MetricsCB(preds_func=1)
    with pytest.raises(ValueError, match="'loss' is reserved"): MetricsCB(loss=Mean())

def test_progress_prints_plain_lines_outside_a_notebook(data, capsys):
    x, y = data
    dls = SimpleNamespace(train=uneven_batches(x, y, [50, 50]), valid=uneven_batches(x, y, [100]))
    Learner(nn.Linear(5, 4), dls, cbs=[MetricsCB(MulticlassAccuracy()), ProgressCB(notebook=False)]).fit(2)
    out = capsys.readouterr().out
    assert '\r' not in out and '\x1b' not in out
    lines = out.strip().splitlines()
    assert lines[0].split() == ['accuracy', 'loss', 'epoch', 'train', 'time'] and len(lines) == 5
    assert [l.split()[2:4] for l in lines[1:]] == [['0', 'train'], ['0', 'eval'], ['1', 'train'], ['1', 'eval']]

def test_progress_reads_loss_without_per_batch_sync(data, monkeypatch):
    "Without a notebook and without `plot`, ProgressCB never calls `.item()` on the loss during the epoch."
    x, y = data
    calls = []
    class CountItem(Callback):
        order = ProgressCB.order + 1
        def after_loss(self, learn):
            loss = learn.loss
            class Spy(type(loss)): pass
            learn.loss = loss.as_subclass(Spy)
            Spy.item = lambda self: calls.append(1) or torch.Tensor.item(self)
    dls = SimpleNamespace(train=uneven_batches(x, y, [10] * 10), valid=[])
    Learner(nn.Linear(5, 4), dls, cbs=[ProgressCB(notebook=False), CountItem()]).fit(1)
    assert calls == []

def test_metrics_read_mid_epoch_include_every_batch_so_far(data):
    "Checkpoints and distributed syncs read `metrics`, `loss_sum` and `n` mid-epoch: the buffered batches must be in them."
    x, y = data
    cb, seen = MetricsCB(MulticlassAccuracy()), []
    class Peek(Callback):
        order = MetricsCB.order + 1
        def after_batch(self, learn):
            if learn.iter == 1: seen.append((cb.metrics['accuracy'].compute().item(), (cb.loss_sum / cb.n).item(), cb.n))
    torch.manual_seed(0); model = nn.Linear(5, 4)
    dls = SimpleNamespace(train=uneven_batches(x, y, [30, 30, 40]), valid=[])
    Learner(model, dls, lr=0., cbs=[cb, Peek()]).fit(1)
    with torch.no_grad(): preds = model(x[:60])
    acc, loss, n = seen[0]
    assert n == 60
    assert acc == pytest.approx(multiclass_accuracy(preds, y[:60]).item(), rel=1e-6)
    assert loss == pytest.approx(F.cross_entropy(preds, y[:60]).item(), rel=1e-6)

def test_state_dict_carries_an_epoch_in_progress(data):
    "Half an epoch into one MetricsCB, the state moved into a fresh one, the rest of the epoch: same record as one pass."
    x, y = data
    torch.manual_seed(0); model = nn.Linear(5, 4)
    batches = uneven_batches(x, y, [30, 30, 40])
    learn = SimpleNamespace(model=model, training=False, epoch=0, history=[])
    def feed(cb, bs):
        for learn.batch in bs:
            with torch.no_grad(): learn.preds = model(learn.batch[0])
            learn.yb = learn.batch[1:]
            learn.loss = F.cross_entropy(learn.preds, learn.batch[1]); cb.after_batch(learn)
    whole = MetricsCB(MulticlassAccuracy()); whole.before_fit(learn); whole.before_epoch(learn)
    feed(whole, batches); whole.after_epoch(learn)
    first = MetricsCB(MulticlassAccuracy()); first.before_fit(learn); first.before_epoch(learn); feed(first, batches[:2])
    second = MetricsCB(MulticlassAccuracy()); second.before_fit(learn); second.before_epoch(learn)
    second.load_state_dict(first.state_dict()); feed(second, batches[2:]); second.after_epoch(learn)
    assert learn.history[0] == pytest.approx(learn.history[1])
    assert learn.history[1]['loss'] == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-6)

def test_epoch_record_is_the_record_metricscb_just_made():
    "`epoch_record` finds this epoch's record of the running phase (or the one asked for), as the loggers and checkpoints use it."
    from slowlearn.metrics import epoch_record
    seen = []
    class Look(Callback):
        order = MetricsCB.order + 1
        def after_epoch(self, learn): seen.append((epoch_record(learn), epoch_record(learn, 'train'), epoch_record(learn, 'valid')))
    g = torch.Generator().manual_seed(0)
    dl = [(torch.randn(4, 3, generator=g), torch.randn(4, 1, generator=g))]
    learn = Learner(nn.Linear(3, 1), SimpleNamespace(train=dl, valid=dl), F.mse_loss, cbs=[MetricsCB(), Look()])
    learn.fit(2)
    h = learn.history
    assert [r['phase'] for r in h] == ['train', 'valid'] * 2
    assert [tuple(map(id, s)) for s in seen] == [(id(h[0]), id(h[0]), id(None)), (id(h[1]), id(h[0]), id(h[1])),
                                                 (id(h[2]), id(h[2]), id(None)), (id(h[3]), id(h[2]), id(h[3]))]

def acc(preds, y): return (preds.argmax(1) == y).float().mean()

def test_a_plain_function_metric_equals_torcheval_accuracy_on_the_same_run(data):
    "Training at lr 0.5 over uneven batches: the function sees the same predictions as torcheval's metric."
    x, y = data
    dls = SimpleNamespace(train=uneven_batches(x, y, [32, 32, 32, 4]), valid=uneven_batches(x, y, [7, 50, 43]))
    torch.manual_seed(0)
    learn = Learner(nn.Linear(5, 4), dls, lr=0.5, cbs=MetricsCB(MulticlassAccuracy(), acc=acc))
    learn.fit(3)
    for r in learn.history: assert r['acc'] == pytest.approx(r['accuracy'], abs=1e-6)
    assert metric_name(acc) == 'acc' and list(MetricsCB(acc).metrics) == ['acc']

def test_a_function_metric_is_the_batch_size_weighted_mean_of_its_batch_values(data):
    "A value that is no per-item mean (the batch size itself) shows the weighting: sum(n_b * n_b) / sum(n_b), exactly."
    x, y = data
    sizes = [7, 50, 43]
    learn = Learner(nn.Linear(5, 4), SimpleNamespace(train=[], valid=uneven_batches(x, y, sizes)),
                    cbs=MetricsCB(size=lambda p, t: float(len(t))))
    learn.fit(1)
    assert learn.history[0]['size'] == sum(n * n for n in sizes) / sum(sizes)

def test_avg_metric_state_round_trips_and_merges():
    "Checkpoints save the state and distributed training merges copies: both give the value of one metric over all batches."
    x, y = torch.randn(30, 4), torch.randint(0, 4, (30,))
    whole, a, b = AvgMetric(acc), AvgMetric(acc), AvgMetric(acc)
    for s in (slice(0, 8), slice(8, 30)): whole.update(x[s], y[s])
    a.update(x[:8], y[:8]); b.update(x[8:], y[8:])
    assert torch.equal(AvgMetric(acc).merge_state([a, b]).compute(), whole.compute())
    c = AvgMetric(acc); c.load_state_dict(a.state_dict()); c.update(x[8:], y[8:])
    assert torch.equal(c.compute(), whole.compute())
    assert whole.compute().item() == pytest.approx(acc(x, y).item(), abs=1e-6)
    with pytest.raises(ValueError, match='must return one number per batch'): AvgMetric(lambda p, t: p).update(x, y)

@dataclasses.dataclass
class Out:
    loss: torch.Tensor
    logits: torch.Tensor

@pytest.mark.parametrize('wrap', [lambda l, o: dict(loss=l, logits=o), lambda l, o: Out(l, o)])
def test_dict_and_dataclass_outputs_with_their_own_loss_record_the_plain_models_figures(data, wrap):
    x, y = data
    class Net(nn.Module):
        def __init__(self): super().__init__(); self.lin = nn.Linear(5, 4)
        def forward(self, x, labels): o = self.lin(x); return wrap(F.cross_entropy(o, labels), o)
    class OwnLoss(Callback):
        def predict(self, learn): learn.preds = learn.model(**learn.batch)
        def get_loss(self, learn): learn.loss = learn.preds['loss'] if isinstance(learn.preds, dict) else learn.preds.loss
    dicts = [dict(x=xb, labels=yb) for xb, yb in uneven_batches(x, y, [32, 32, 32, 4])]
    torch.manual_seed(0)
    learn = Learner(Net(), SimpleNamespace(train=dicts, valid=dicts), lr=0.5, cbs=[OwnLoss(), MetricsCB(MulticlassAccuracy(), acc=acc)])
    learn.fit(2)
    torch.manual_seed(0)
    ref = Learner(nn.Linear(5, 4), SimpleNamespace(train=uneven_batches(x, y, [32, 32, 32, 4]), valid=uneven_batches(x, y, [32, 32, 32, 4])),
                  lr=0.5, cbs=MetricsCB(MulticlassAccuracy(), acc=acc))
    ref.fit(2)
    assert learn.history == pytest.approx(ref.history)

def test_preds_func_picks_another_head(data):
    x, y = data
    class TwoHeads(nn.Module):
        def __init__(self): super().__init__(); self.a, self.b = nn.Linear(5, 4), nn.Linear(5, 4)
        def forward(self, x): return dict(a=self.a(x), b=self.b(x))
    model = TwoHeads()
    learn = Learner(model, SimpleNamespace(train=[], valid=[(x, y)]), loss_func=lambda o, y: F.cross_entropy(o['a'], y),
                    cbs=MetricsCB(MulticlassAccuracy(), preds_func=lambda o: o['b']))
    learn.fit(1)
    with torch.no_grad(): assert learn.history[0]['accuracy'] == pytest.approx(multiclass_accuracy(model.b(x), y).item())
    with pytest.raises(TypeError, match='pass MetricsCB\\(preds_func=...\\)'):
        Learner(model, SimpleNamespace(train=[], valid=[(x, y)]), loss_func=lambda o, y: F.cross_entropy(o['a'], y),
                cbs=MetricsCB(MulticlassAccuracy())).fit(1)

def test_metrics_without_targets_say_so(data):
    x, _ = data
    learn = Learner(nn.Linear(5, 4), SimpleNamespace(train=[], valid=[(x,)]), loss_func=lambda p: p.sum(), cbs=MetricsCB(acc=acc))
    with pytest.raises(ValueError, match='metrics need targets'): learn.fit(1)

class HitRate(Metric[torch.Tensor]):
    "Test metric: the (weighted) share of positions whose argmax over dim 1 is the target, for predictions of any trailing shape; targets `y` or `(y, w)`."
    def __init__(self):
        super().__init__()
        self._add_state('hit', torch.tensor(0., dtype=torch.float64)); self._add_state('total', torch.tensor(0., dtype=torch.float64))
    def update(self, p, y):
        y, w = y if isinstance(y, tuple) else (y, torch.ones(len(y)))
        w = w.reshape(-1, *[1] * (y.ndim - 1)).expand_as(y).double()
        self.hit += ((p.argmax(1) == y) * w).sum(); self.total += w.sum()
        return self
    def compute(self): return self.hit / self.total
    def merge_state(self, metrics): return self

@pytest.mark.parametrize('weighted', [False, True], ids=['tensor_targets', 'tuple_targets'])
def test_batches_of_other_shapes_or_tuple_targets_are_all_counted(weighted):
    "Predictions whose shape changes between batches can't be concatenated, tuple targets can't either: every batch still counts once."
    torch.manual_seed(0); model = nn.Conv1d(5, 3, 1)
    batches = [(torch.randn(n, 5, L), torch.randint(0, 3, (n, L))) + ((torch.rand(n),) if weighted else ())
               for n, L in [(4, 7), (4, 7), (3, 9), (4, 7), (2, 9), (2, 9)]]
    learn = Learner(model, SimpleNamespace(train=[], valid=batches), loss_func=lambda p, y, *w: F.cross_entropy(p, y), cbs=MetricsCB(hits=HitRate()))
    learn.fit(1)
    hit = total = loss = 0.
    with torch.no_grad():
        for x, y, *w in batches:
            w = (w[0] if w else torch.ones(len(y)))[:, None].expand_as(y).double()
            hit += ((model(x).argmax(1) == y) * w).sum().item(); total += w.sum().item()
            loss += F.cross_entropy(model(x), y).item() * len(x)
    rec = learn.history[0]
    assert rec['hits'] == pytest.approx(hit / total, rel=1e-12)
    assert rec['loss'] == pytest.approx(loss / sum(len(b[0]) for b in batches), rel=1e-6)
