"Training on loaders without a length: a torch `DataLoader` over an `IterableDataset` (in-process and with 2 workers), generators."
import copy, pytest, torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torcheval.metrics import MulticlassAccuracy
from slowlearn.learner import Learner, Callback
from slowlearn.metrics import MetricsCB, ProgressCB
from slowlearn.data import DataLoaders
from slowlearn.sched import RecorderCB
from slowlearn.checkpoint import CheckpointCB
from slowlearn.optim import GradAccumCB
from crash import Crash, CrashAt
from conftest import sign_data, batches_of as batches

pytestmark = pytest.mark.usefixtures('one_thread')

class Streamed(IterableDataset):
    "The samples of `x`, `y` in order, no `__len__`; with workers, worker w yields batches w, w+W, ... so the loader's order is unchanged."
    def __init__(self, x, y, bs): self.x,self.y,self.bs = x,y,bs
    def __iter__(self):
        info = get_worker_info()
        w, nw = (info.id, info.num_workers) if info else (0, 1)
        for i in range(w*self.bs, len(self.x), nw*self.bs):
            yield from zip(self.x[i:i+self.bs], self.y[i:i+self.bs])

def data(n=192, nv=64, seed=0): return sign_data(n, nv, seed, ni=6, sign=-1)

def streamed_dls(workers, bs=32, n=192):
    x, y, xv, yv = data(n)
    kw = dict(batch_size=bs, num_workers=workers)
    return DataLoaders(DataLoader(Streamed(x, y, bs), **kw), DataLoader(Streamed(xv, yv, bs), **kw))

def model(seed=0): torch.manual_seed(seed); return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))

class Seen(Callback):
    "The first column of every training batch, and the number of training batches per epoch."
    order = 10
    def before_fit(self, learn): self.items,self.per_epoch = [],[]
    def before_epoch(self, learn):
        if learn.training: self.per_epoch.append(0)
    def before_batch(self, learn):
        if learn.training: self.items.append(learn.batch[0][:, 0].clone()); self.per_epoch[-1] += 1

workers = pytest.mark.parametrize('nw', [0, 2])

@workers
def test_fit_equals_the_plain_loop_and_metrics_are_exact(nw):
    x, y, xv, yv = data()
    dls = streamed_dls(nw)
    with pytest.raises(TypeError): len(dls.train)
    learn = Learner(model(), dls, lr=0.1, cbs=MetricsCB(MulticlassAccuracy()))
    learn.fit(2)
    ref = model(); opt = torch.optim.SGD(ref.parameters(), 0.1)
    for _ in range(2):
        for xb, yb in batches(x, y): F.cross_entropy(ref(xb), yb).backward(); opt.step(); opt.zero_grad()
    for a, b in zip(learn.model.parameters(), ref.parameters()): torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert learn.n_iter is None and [r['phase'] for r in learn.history] == ['train', 'valid'] * 2
    with torch.no_grad(): preds = ref(xv)
    assert learn.history[-1]['loss'] == pytest.approx(F.cross_entropy(preds, yv).item(), rel=1e-6)
    assert learn.history[-1]['accuracy'] == pytest.approx((preds.argmax(1) == yv).float().mean().item(), rel=1e-6)

def test_a_generator_trains_its_batches():
    x, y, xv, yv = data()
    dls = DataLoaders((b for b in batches(x, y)), batches(xv, yv))
    seen = Seen(); Learner(model(), dls, cbs=seen).fit(1)
    assert seen.per_epoch == [6]

@workers
def test_progress_bar_has_no_total_then_the_count_it_learned(capsys, nw):
    totals = []
    class Total(Callback):
        order = ProgressCB.order + 1
        def before_epoch(self, learn): totals.append((learn.training, learn.dl.total))
    Learner(model(), streamed_dls(nw), cbs=[MetricsCB(), ProgressCB(notebook=True), Total()]).fit(3)
    assert totals == [(True, None), (False, None), (True, 6), (False, 2), (True, 6), (False, 2)]

def test_progress_bar_never_cuts_an_epoch_longer_than_the_last(capsys):
    class Growing:
        "Pass k has 3 + k batches; no len."
        def __init__(self): self.k = 0
        def __iter__(self):
            x, y, _, _ = data(); self.k += 1
            return iter(batches(x, y, 16)[:2 + self.k])
    seen = Seen()
    Learner(model(), DataLoaders(Growing(), []), cbs=[ProgressCB(notebook=True), seen]).fit(3)
    assert seen.per_epoch == [3, 4, 5]

@workers
def test_virtual_epochs_read_one_stream_of_passes(nw):
    x, y, _, _ = data()
    seen = Seen()
    learn = Learner(model(), streamed_dls(nw), lr=0., cbs=seen); learn.fit(3, steps_per_epoch=4)
    passes = [xb[:, 0] for xb, _ in batches(x, y)] * 2
    assert seen.per_epoch == [4, 4, 4] and all(torch.equal(a, b) for a, b in zip(seen.items, passes[:12]))
    assert learn.n_iter == 4 and learn.train_iter == 12

@workers
def test_end_of_epoch_checkpoint_resume_equals_an_uninterrupted_fit(tmp_path, nw):
    def make(cbs, seed=0): return Learner(model(seed), streamed_dls(nw), lr=0.05, opt_func=torch.optim.Adam,
                                          cbs=[MetricsCB(MulticlassAccuracy())] + cbs)
    ref = make([]); ref.fit(4)
    with pytest.raises(Crash): make([CheckpointCB(tmp_path), CrashAt(14)]).fit(4)   # in epoch 2 (6 batches per epoch)
    learn = make([ck := CheckpointCB(tmp_path)], seed=5); learn.fit(4, resume=True)
    assert ck.resumed['epoch'] == 2 and ck.resumed['iter'] == 0
    assert all(torch.equal(a, b) for a, b in zip(learn.model.parameters(), ref.model.parameters()))
    assert learn.history == ref.history

def test_mid_epoch_resume_skips_the_batches_done(tmp_path):
    def make(cbs, seed=0): return Learner(model(seed), streamed_dls(0), lr=0.05, opt_func=torch.optim.Adam, cbs=[MetricsCB()] + cbs)
    ref = make([]); ref.fit(2)
    with pytest.raises(Crash): make([CheckpointCB(tmp_path, every_n_steps=4), CrashAt(9)]).fit(2)
    learn = make([ck := CheckpointCB(tmp_path, every_n_steps=4)], seed=5); learn.fit(2, resume=True)
    assert (ck.resumed['epoch'], ck.resumed['iter']) == (1, 2)
    assert all(torch.equal(a, b) for a, b in zip(learn.model.parameters(), ref.model.parameters()))
    assert learn.history == ref.history

def test_one_cycle_without_a_length_fails_at_once_saying_what_it_needs():
    import slowlearn.sched   # Learner.fit_one_cycle
    learn = Learner(model(), streamed_dls(0))
    w0 = copy.deepcopy(learn.model.state_dict())
    with pytest.raises(ValueError, match='steps_per_epoch.*total_steps'): learn.fit_one_cycle(2, 0.01)
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in w0.items())   # not a single batch ran

def one_cycle_lr(lr_max, t, total, pct=0.25, div=25., div_final=1e5):
    "fastai's one-cycle LR at step `t` of `total`, written out."
    import math
    p = t/total
    cos = lambda a, b, q: a + (1 - math.cos(math.pi*q))*(b - a)/2
    return cos(lr_max/div, lr_max, p/pct) if p < pct else cos(lr_max, lr_max/div_final, (p - pct)/(1 - pct))

@workers
def test_one_cycle_with_total_steps_follows_the_formula(nw):
    import slowlearn.sched
    rec = RecorderCB(lr='lr')
    learn = Learner(model(), streamed_dls(nw), opt_func=torch.optim.Adam); learn.fit_one_cycle(2, 0.01, cbs=rec, total_steps=12)
    assert rec['lr'] == pytest.approx([one_cycle_lr(0.01, t, 12) for t in range(12)], rel=1e-12)

@workers
def test_one_cycle_with_steps_per_epoch_follows_the_formula(nw):
    import slowlearn.sched
    rec = RecorderCB(lr='lr')
    learn = Learner(model(), streamed_dls(nw), opt_func=torch.optim.Adam); learn.fit_one_cycle(3, 0.01, cbs=rec, steps_per_epoch=5)
    assert rec['lr'] == pytest.approx([one_cycle_lr(0.01, t, 15) for t in range(15)], rel=1e-12)

@workers
def test_lr_find_runs_num_it_batches_and_restores_model_and_optimizer(nw):
    import slowlearn.sched
    seen = Seen()
    learn = Learner(model(), streamed_dls(nw), opt_func=torch.optim.Adam, cbs=seen)
    learn.fit(1, valid=False)
    sd, opt, osd = copy.deepcopy(learn.model.state_dict()), learn.opt, copy.deepcopy(learn.opt.state_dict())
    learn.lr_find(num_it=10, stop_div=False, show_plot=False)
    assert seen.per_epoch == [10]
    assert learn.opt is opt and int(opt.state[learn.model[0].weight]['step']) == 6
    assert opt.state_dict()['param_groups'] == osd['param_groups']
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in sd.items())

def test_gradient_accumulation_without_a_length_fails_at_once():
    with pytest.raises(ValueError, match='GradAccumCB needs a training loader with a length'):
        Learner(model(), streamed_dls(0), cbs=GradAccumCB(2)).fit(1)

def test_virtual_epochs_is_a_loader_of_its_own():
    from slowlearn.data import VirtualEpochs
    x, y, _, _ = data()
    ve = VirtualEpochs(streamed_dls(0).train, 4)
    first = [xb[:, 0] for xb, _ in batches(x, y)] * 2
    got = [[xb[:, 0] for xb, _ in ve] for _ in range(3)]                        # successive iterations: epochs 0, 1, 2
    assert len(ve) == 4 and all(torch.equal(a, b) for a, b in zip(sum(got, []), first[:12]))
    ve.set_epoch(1, start=3)                                                   # a jump: a new stream at position 7
    rest = [xb[:, 0] for xb, _ in ve]
    assert len(rest) == 1 and torch.equal(rest[0], first[7])
    for bad,exc in ((0, ValueError), (1.5, TypeError), (None, TypeError)):
        with pytest.raises(exc, match='n must be an integer >= 1'): VirtualEpochs([], bad)
