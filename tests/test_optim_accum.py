"GradAccumCB: accumulated small batches step like big ones (also with one-cycle), and callbacks and checkpoints count optimizer steps."
import pytest, torch
from torch import nn
from slowlearn.learner import Learner, Callback
from slowlearn.metrics import MetricsCB
from slowlearn.data import DataLoaders
from slowlearn.checkpoint import CheckpointCB
from slowlearn.optim import GradAccumCB
from conftest import make_learn, states_equal, crash_then_resume, OneCycle

pytestmark = pytest.mark.usefixtures('one_thread')

def accum_pair(n_acc, bs, n=200, epochs=2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n + 16, 8, generator=g); y = torch.randint(0, 3, (n + 16,), generator=g)
    def make(bs, cbs):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
        dls = DataLoaders.from_tensors(x[:n], y[:n], x[n:], y[n:], bs=bs, seed=2)
        return Learner(model, dls, lr=0.1, opt_func=lambda p, lr: torch.optim.SGD(p, lr, momentum=0.9, weight_decay=1e-3),
                       cbs=[OneCycle(), MetricsCB()] + cbs)
    small, big = make(bs, [GradAccumCB(n_acc)]), make(bs * n_acc, [])
    small.fit(epochs); big.fit(epochs)
    return small, big

def test_grad_accumulation_equals_big_batches_with_a_shorter_last_group():
    small, big = accum_pair(4, 16)      # 200 = 3 x 64 + 8: the last group is one batch of 8
    for p, q in zip(small.model.parameters(), big.model.parameters()): torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    assert small.train_iter == big.train_iter == 2 * 4 and small.n_steps == 4
    assert small.cbs[0].sched.get_last_lr() == pytest.approx(big.cbs[0].sched.get_last_lr(), rel=1e-12)
    assert [r['phase'] for r in small.history] == [r['phase'] for r in big.history]

def test_grad_accumulation_with_a_group_of_several_short_batches():
    small, big = accum_pair(3, 10, n=175)   # 18 batches of 10 (last 5): groups of 3; big batches of 30 (last 25)
    for p, q in zip(small.model.parameters(), big.model.parameters()): torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)

def test_grad_accumulation_steps_counted_by_callbacks_and_checkpoints(tmp_path):
    steps = []
    class Count(Callback):
        def after_step(self, learn): steps.append((learn.epoch, learn.iter))
    make = lambda cbs, seed=0: make_learn([GradAccumCB(3)] + cbs, seed=seed, dropout=0.)
    make([Count(), ck := CheckpointCB(tmp_path/'a', every_n_steps=2, keep_last=10, monitor=None)]).fit(1, valid=False)
    assert steps == [(0, 2), (0, 5), (0, 8), (0, 9)]                      # 10 batches: groups of 3, 3, 3, 1
    assert [(e['step'], e['batch']) for e in ck.checkpoints if not e['end']] == [(2, 6), (4, 10)]
    ref = make([OneCycle()]); ref.fit(2)
    learn, _ = crash_then_resume(tmp_path/'b', 5, n_epochs=2, make=make, every_n_steps=2)
    assert states_equal(learn, ref) and learn.history == ref.history

def test_grad_accumulation_with_fit_one_cycle_equals_big_batches():
    "slowlearn.sched's one-cycle schedules by optimizer steps (learn.train_iter / learn.n_steps): same LRs, same weights."
    import slowlearn.sched   # adds Learner.fit_one_cycle
    g = torch.Generator().manual_seed(1)
    x = torch.randn(216, 8, generator=g); y = torch.randint(0, 3, (216,), generator=g)
    def make(bs):
        torch.manual_seed(0)
        return Learner(nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)),
                       DataLoaders.from_tensors(x[:200], y[:200], x[200:], y[200:], bs=bs, seed=2), opt_func=torch.optim.Adam)
    small, big = make(16), make(64)
    small.fit_one_cycle(2, 0.01, cbs=GradAccumCB(4)); big.fit_one_cycle(2, 0.01)
    for p, q in zip(small.model.parameters(), big.model.parameters()): torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    assert small.opt.param_groups[0]['lr'] == pytest.approx(big.opt.param_groups[0]['lr'], rel=1e-12)
