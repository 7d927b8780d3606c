"Parameter groups through one-cycle against a torch param-group loop, freezing, `fine_tune` and its exact resume, checkpoints keeping the groups."
import math
import pytest, torch
import torch.nn.functional as F
from slowlearn.learner import Learner, Callback
from slowlearn.optim import AdamW
from slowlearn.checkpoint import CheckpointCB
from slowlearn.callbacks import MixUpCB
from slowlearn.finetune import FreezeCB   # also adds Learner.freeze, freeze_to, unfreeze, fine_tune
from crash import Crash, CrashAt
from conftest import linear_dls as data, bn_mlp as model

pytestmark = pytest.mark.usefixtures('one_thread')

def two_groups(m): return [m[:3].parameters(), m[3:].parameters()]

def weights(m): return [p.detach().clone() for p in m.parameters()]

def cycle(pos, a, b, c, pct=0.25):
    "fastai's one-cycle, written out: cosine from a to b over `pct` of the positions, then from b to c."
    if pos < pct: p, lo, hi = pos/pct, a, b
    else: p, lo, hi = (pos - pct)/(1 - pct), b, c
    return lo + (1 - math.cos(math.pi*p))*(hi - lo)/2

def test_one_cycle_per_group_rates_equal_a_torch_param_group_loop_bit_for_bit():
    learn = Learner(model(bn=False), data(), splitter=two_groups)
    learn.fit_one_cycle(2, lr_max=slice(1e-3, 1e-1))
    m, dls = model(bn=False), data()
    opt = torch.optim.SGD([dict(params=m[:3].parameters()), dict(params=m[3:].parameters())], lr=0.)
    total, step = 2*len(dls.train), 0
    for epoch in range(2):
        dls.train.set_epoch(epoch)
        for xb, yb in dls.train:
            for g, hi in zip(opt.param_groups, (1e-3, 1e-1)):
                g['lr'], g['momentum'] = cycle(step/total, hi/25, hi, hi/1e5), cycle(step/total, 0.95, 0.85, 0.95)
            F.cross_entropy(m(xb), yb).backward(); opt.step(); opt.zero_grad(); step += 1
    assert all(torch.equal(a, b) for a, b in zip(learn.model.parameters(), m.parameters()))
    assert [g['lr'] for g in learn.opt.param_groups] == [g['lr'] for g in opt.param_groups]

@pytest.mark.parametrize('train_bn', [True, False])
def test_frozen_weights_stay_bit_identical_while_the_head_trains(train_bn):
    learn = Learner(model(), data(), opt_func=AdamW, lr=1e-2, splitter=two_groups)   # AdamW: weight decay 0.01
    for p in learn.model.parameters(): p.grad = torch.ones_like(p)   # a stale gradient must not be stepped
    learn.freeze(train_bn=train_bn)
    before = weights(learn.model)
    learn.fit(2)
    m = learn.model
    same = [torch.equal(a, p) for a, p in zip(before, m.parameters())]
    assert same == [True, True, not train_bn, not train_bn, False, False]       # linear, BatchNorm (w, b), head
    frozen = [m[0].weight, m[0].bias] + ([] if train_bn else [m[1].weight, m[1].bias])
    assert all(p not in learn.opt.state for p in frozen) and all(not p.requires_grad for p in frozen)
    learn.unfreeze()
    assert all(p.requires_grad for p in m.parameters())

def test_freeze_to_counts_groups_from_either_end():
    three = lambda m: [m[0].parameters(), m[1].parameters(), m[3].parameters()]
    learn = Learner(model(), data(), splitter=three)
    learn.freeze_to(2, train_bn=False)
    assert [p.requires_grad for p in learn.model.parameters()] == [False]*4 + [True]*2
    learn.freeze_to(-2, train_bn=False)
    assert [p.requires_grad for p in learn.model.parameters()] == [False]*2 + [True]*4
    with pytest.raises(ValueError, match='n must be'): learn.freeze_to(3)
    with pytest.raises(ValueError, match='n must be'): learn.freeze_to(-4)

class Spy(Callback):
    order = 50
    def before_fit(self, learn): self.recs = []
    def after_backward(self, learn):
        self.recs.append(([g['lr'] for g in learn.opt.param_groups], learn.model[0].weight.requires_grad))

def test_fine_tune_is_a_frozen_cycle_then_an_unfrozen_discriminative_cycle():
    learn = Learner(model(), data(), opt_func=AdamW, splitter=two_groups, cbs=[spy := Spy()])
    learn.fine_tune(3, base_lr=1e-2, freeze_epochs=1, lr_mult=100)
    n = len(learn.dls.train)
    assert len(spy.recs) == 4*n and [r[1] for r in spy.recs] == [False]*n + [True]*3*n
    # first step of each cycle: lr_max/div, per group; fastai's slice(base_lr) gives base_lr/10 to all but the last
    assert spy.recs[0][0] == pytest.approx([1e-3/25, 1e-2/25])
    assert spy.recs[n][0] == pytest.approx([5e-5/5, 5e-3/5])
    assert max(r[0][1] for r in spy.recs[n:]) == pytest.approx(5e-3, rel=0.05)
    assert max(r[0][0] for r in spy.recs[n:]) == pytest.approx(5e-5, rel=0.05)
    assert all(p.requires_grad for p in learn.model.parameters())

@pytest.mark.parametrize('at', [3, 10])   # mid-epoch in the frozen phase, mid-epoch in the unfrozen one
def test_fine_tune_killed_mid_epoch_and_resumed_equals_the_uninterrupted_one(tmp_path, at):
    def make(cbs=(), seed=0): return Learner(model(seed), data(), opt_func=AdamW, splitter=two_groups, cbs=[MixUpCB(0.4), *cbs])
    torch.manual_seed(0); ref = make(); ref.fine_tune(3, 1e-2)
    torch.manual_seed(0)
    with pytest.raises(Crash): make([CheckpointCB(tmp_path, every_n_steps=2), CrashAt(at)]).fine_tune(3, 1e-2)
    torch.manual_seed(5)   # other weights and random state: everything must come from the checkpoint
    learn = make([ck := CheckpointCB(tmp_path, every_n_steps=2)], seed=1); learn.fine_tune(3, 1e-2, resume=True)
    assert ck.resumed['step'] == at//2*2 and learn.history == ref.history
    assert all(torch.equal(a, b) for a, b in zip(learn.model.state_dict().values(), ref.model.state_dict().values()))

def test_save_and_load_keep_the_param_groups(tmp_path):
    learn = Learner(model(), data(), opt_func=AdamW, splitter=two_groups)
    learn.fit_one_cycle(1, slice(1e-4, 1e-2)); learn.save(tmp_path/'m.pt')
    other = Learner(model(1), data(), opt_func=AdamW, splitter=two_groups).load(tmp_path/'m.pt')
    assert [g['lr'] for g in other.opt.param_groups] == [g['lr'] for g in learn.opt.param_groups]
    assert [len(g['params']) for g in other.opt.param_groups] == [4, 2]
    assert all(torch.equal(other.opt.state[p]['exp_avg'], learn.opt.state[q]['exp_avg'])
               for p, q in zip(other.model.parameters(), learn.model.parameters()))

def test_fine_tune_bad_input():
    learn = Learner(model(), data(), splitter=two_groups)
    with pytest.raises(ValueError, match='epochs must be'): learn.fine_tune(0)
    with pytest.raises(ValueError, match='freeze_epochs must be'): learn.fine_tune(1, freeze_epochs=-1)
    with pytest.raises(ValueError, match='lr_mult must be'): learn.fine_tune(1, lr_mult=0)
