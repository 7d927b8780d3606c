"Behaviour of the `Learner` loop: event order, cancellation, callback lifetime, step replacement."
from types import SimpleNamespace
import pytest, torch
import torch.nn.functional as F
from torch import nn
from slowlearn.learner import (Learner, Callback, with_cbs, DeviceCB, default_device, to_device,
                               CancelFitException, CancelEpochException, CancelBatchException, _events)

def batches(n, bs=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, 3, generator=g), torch.randn(bs, 1, generator=g)) for _ in range(n)]

def tiny_dls(n_train=2, n_valid=1): return SimpleNamespace(train=batches(n_train), valid=batches(n_valid, seed=1))

class Spy(Callback):
    "Record `(event, epoch, iter, training)` for every event."
    def __init__(self, order=0): self.order,self.log = order,[]
for _e in _events:
    setattr(Spy, _e, (lambda e: lambda self, learn: self.log.append(e))(_e))

def fit(cbs, n_epochs=1, dls=None, **kw):
    learn = Learner(nn.Linear(3, 1), dls or tiny_dls(), F.mse_loss, lr=0.01, cbs=cbs)
    learn.fit(n_epochs, **kw)
    return learn

train_batch = ['before_batch', 'after_predict', 'after_loss', 'after_backward', 'after_step', 'after_batch', 'cleanup_batch']
valid_batch = ['before_batch', 'after_predict', 'after_loss', 'after_batch', 'cleanup_batch']

def test_event_order_for_a_tiny_fit():
    spy = Spy(); fit(spy)
    assert spy.log == (['before_fit', 'before_epoch'] + train_batch * 2 + ['after_epoch', 'cleanup_epoch', 'before_epoch']
                       + valid_batch + ['after_epoch', 'cleanup_epoch', 'after_fit', 'cleanup_fit'])

def test_cancel_batch_skips_rest_of_that_batch_only():
    class Cancel(Callback):
        def after_predict(self, learn):
            if learn.training and learn.iter == 0: raise CancelBatchException()
    spy = Spy(order=1); learn = Learner(nn.Linear(3, 1), tiny_dls(), F.mse_loss, cbs=[Cancel(), spy])
    w0 = learn.model.weight.detach().clone()
    learn.fit(1, valid=False)
    assert spy.log[:6] == ['before_fit', 'before_epoch', 'before_batch', 'cleanup_batch', 'before_batch', 'after_predict']
    assert spy.log.count('after_step') == 1 and spy.log[-4:] == ['after_epoch', 'cleanup_epoch', 'after_fit', 'cleanup_fit']
    assert not torch.equal(w0, learn.model.weight)  # the second batch still trained

def test_cancel_epoch_skips_rest_of_epoch_and_continues_with_next():
    class Cancel(Callback):
        def after_batch(self, learn):
            if learn.training: raise CancelEpochException()
    spy = Spy(order=1); fit([Cancel(), spy], n_epochs=2, valid=False)
    assert spy.log.count('before_batch') == 2       # one batch in each of the two epochs
    assert spy.log.count('after_epoch') == 0 and spy.log.count('cleanup_epoch') == 2
    assert spy.log[-2:] == ['after_fit', 'cleanup_fit']

def test_cancel_fit_skips_after_fit_but_runs_cleanup():
    class Cancel(Callback):
        def after_step(self, learn): raise CancelFitException()
    spy = Spy(order=1); learn = fit([Cancel(), spy], n_epochs=3)
    assert spy.log.count('before_epoch') == 1 and 'after_fit' not in spy.log
    assert spy.log[-3:] == ['cleanup_batch', 'cleanup_epoch', 'cleanup_fit']
    assert learn.epoch == 0

def test_other_exceptions_propagate_after_cleanup():
    class Boom(Callback):
        def after_loss(self, learn): raise RuntimeError('boom')
    spy = Spy(order=1)
    with pytest.raises(RuntimeError, match='boom'): fit([Boom(), spy])
    assert spy.log[-3:] == ['cleanup_batch', 'cleanup_epoch', 'cleanup_fit']

def test_fit_callbacks_removed_after_fit_even_when_it_raises():
    own, extra = Spy(), Spy()
    learn = Learner(nn.Linear(3, 1), tiny_dls(), F.mse_loss, cbs=own)
    learn.fit(1, cbs=extra)
    assert list(learn.cbs) == [own]
    class Boom(Callback):
        def before_epoch(self, learn): raise RuntimeError('boom')
    with pytest.raises(RuntimeError): learn.fit(1, cbs=[Boom(), extra])
    assert list(learn.cbs) == [own]
    n = len(extra.log); learn.fit(1)
    assert len(extra.log) == n                      # no longer called

def test_callbacks_run_sorted_by_order():
    calls = []
    class A(Callback):
        order = 5
        def before_fit(self, learn): calls.append('A')
    class B(Callback):
        order = -5
        def before_fit(self, learn): calls.append('B')
    fit([A(), B()])
    assert calls == ['B', 'A']

def test_dispatch_is_computed_once_per_fit():
    late = Spy()
    class AddLate(Callback):
        def before_fit(self, learn): learn.cbs.append(late)
    learn = fit(AddLate())
    assert late.log == []                            # added during the fit: not called in it
    learn.cbs.remove(learn.cbs[0]); learn.fit(1)
    assert late.log[0] == 'before_fit'

def test_step_replaced_by_callback():
    class NoStep(Callback):
        def step(self, learn): self.called = True
    cb = NoStep(); learn = Learner(nn.Linear(3, 1), tiny_dls(), F.mse_loss, lr=1., cbs=cb)
    w0 = learn.model.weight.detach().clone()
    learn.fit(1)
    assert cb.called and torch.equal(w0, learn.model.weight)

def test_zero_grad_replaced_so_gradients_accumulate():
    class KeepGrads(Callback):
        def zero_grad(self, learn): pass
    dls = tiny_dls(2)
    learn = Learner(nn.Linear(3, 1), dls, F.mse_loss, lr=0., cbs=KeepGrads()); learn.fit(1, valid=False)
    ref = nn.Linear(3, 1); ref.load_state_dict(learn.model.state_dict())
    for xb, yb in dls.train: F.mse_loss(ref(xb), yb).backward()
    torch.testing.assert_close(learn.model.weight.grad, ref.weight.grad)

def test_default_loop_matches_plain_pytorch_loop():
    dls = tiny_dls(5, 2)
    torch.manual_seed(0); m1 = nn.Linear(3, 1)
    m2 = nn.Linear(3, 1); m2.load_state_dict(m1.state_dict())
    Learner(m1, dls, F.mse_loss, lr=0.05).fit(2)
    opt = torch.optim.SGD(m2.parameters(), 0.05)
    for _ in range(2):
        for xb, yb in dls.train: F.mse_loss(m2(xb), yb).backward(); opt.step(); opt.zero_grad()
    torch.testing.assert_close(m1.weight, m2.weight, rtol=0, atol=0)

def test_validation_runs_without_grad_in_eval_mode():
    seen = []
    class Look(Callback):
        def after_predict(self, learn): seen.append((learn.training, learn.model.training, torch.is_grad_enabled()))
    fit(Look())
    assert seen == [(True, True, True)] * 2 + [(False, False, False)]

def test_fit_lr_overrides_and_opt_func_gets_params_and_lr():
    got = {}
    def opt_func(params, lr): got['lr'] = lr; return torch.optim.SGD(params, lr)
    learn = Learner(nn.Linear(3, 1), tiny_dls(), F.mse_loss, lr=0.3, opt_func=opt_func)
    learn.fit(1); assert got['lr'] == 0.3
    learn.fit(1, lr=0.02); assert got['lr'] == 0.02 and learn.opt.param_groups[0]['lr'] == 0.02

def test_state_exposed_while_fitting():
    seen = {}
    class Look(Callback):
        def after_loss(self, learn):
            for k in ('model', 'opt', 'epoch', 'iter', 'batch', 'preds', 'loss', 'training', 'dl', 'n_epochs'):
                seen[k] = getattr(learn, k)
    learn = fit(Look(), n_epochs=2, valid=False)
    assert seen['epoch'] == 1 and seen['iter'] == 1 and seen['n_epochs'] == 2 and seen['training']
    assert seen['dl'] is learn.dls.train and seen['batch'] is learn.dls.train[1] and seen['loss'].ndim == 0

@pytest.mark.parametrize('bad', [-1, 1.5, '3', True])
def test_bad_n_epochs_is_a_value_error(bad):
    with pytest.raises(ValueError, match='n_epochs'): Learner(nn.Linear(3, 1), tiny_dls()).fit(bad)

@pytest.mark.parametrize('bad', [-0.1, float('nan'), 'fast'])
def test_bad_lr_is_a_value_error(bad):
    with pytest.raises(ValueError, match='lr'): Learner(nn.Linear(3, 1), tiny_dls(), lr=bad)
    with pytest.raises(ValueError, match='lr'): Learner(nn.Linear(3, 1), tiny_dls()).fit(1, lr=bad)

def test_with_cbs_rejects_unknown_level():
    with pytest.raises(ValueError, match='nm'): with_cbs('step')

def test_device_cb_moves_model_and_nested_batches(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert default_device().type == 'cuda'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert DeviceCB().device.type in ('cpu', 'mps')
    x = {'a': [torch.ones(2, dtype=torch.float64)], 'b': (torch.zeros(1),)}
    out = to_device(x, torch.device('meta'))
    assert out['a'][0].device.type == 'meta' and isinstance(out['b'], tuple) and out['b'][0].device.type == 'meta'
    seen = []
    class Look(Callback):
        order = 0
        def before_batch(self, learn): seen.append(learn.batch[0].device.type)
    learn = fit([DeviceCB('cpu'), Look()])
    assert set(seen) == {'cpu'} and next(learn.model.parameters()).device.type == 'cpu'
