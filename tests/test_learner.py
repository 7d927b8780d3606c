"Behaviour of the `Learner` loop: event order, cancellation, callback lifetime, step replacement, virtual epochs."
from types import SimpleNamespace
import pytest, torch
import torch.nn.functional as F
from torch import nn
from slowlearn.learner import (Learner, Callback, with_cbs, DeviceCB, CancelFitException, CancelEpochException, CancelBatchException, _events)
from slowlearn.data import DataLoaders, default_device, to_device
from slowlearn.checkpoint import EarlyStoppingCB
from conftest import sign_data as data, make_learn, states_equal, crash_then_resume, OneCycle, ScriptedValid

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

def test_losses_match_a_plain_loop_batch_by_batch_with_a_plain_object_as_callback():
    "Any object with methods named after events is a callback (no `Callback` base needed); its losses are the plain loop's."
    class Losses:
        def before_fit(self, learn): self.train,self.valid = [],[]
        def after_batch(self, learn): (self.train if learn.training else self.valid).append(learn.loss.item())
    dls = tiny_dls(4, 2)
    torch.manual_seed(0); m1 = nn.Linear(3, 1)
    m2 = nn.Linear(3, 1); m2.load_state_dict(m1.state_dict())
    rec = Losses(); Learner(m1, dls, F.mse_loss, lr=0.05, cbs=rec).fit(1)
    opt, train = torch.optim.SGD(m2.parameters(), 0.05), []
    for xb, yb in dls.train:
        loss = F.mse_loss(m2(xb), yb); loss.backward(); opt.step(); opt.zero_grad(); train.append(loss.item())
    with torch.no_grad(): valid = [F.mse_loss(m2(xb), yb).item() for xb, yb in dls.valid]
    assert rec.train == train and rec.valid == valid

def test_validation_runs_without_grad_in_eval_mode():
    seen = []
    class Look(Callback):
        def after_predict(self, learn): seen.append((learn.training, learn.model.training, torch.is_grad_enabled()))
    fit(Look())
    assert seen == [(True, True, True)] * 2 + [(False, False, False)]

def test_opt_func_gets_params_and_lr_at_the_first_fit_and_lr_sets_the_kept_optimizer():
    got = []
    def opt_func(params, lr): got.append(lr); return torch.optim.SGD(params, lr)
    learn = Learner(nn.Linear(3, 1), tiny_dls(), F.mse_loss, lr=0.3, opt_func=opt_func)
    learn.fit(1); opt = learn.opt
    learn.fit(1, lr=0.02)
    assert got == [0.3] and learn.opt is opt and learn.opt.param_groups[0]['lr'] == 0.02
    learn.fit(1)                                     # no lr: back to learn.lr, as in fastai
    assert got == [0.3] and learn.opt.param_groups[0]['lr'] == 0.3
    learn.fit(1, lr=0.05, reset_opt=True)
    assert got == [0.3, 0.05] and learn.opt is not opt

def adam_reference(model, batches, n_epochs, lr):
    "A plain PyTorch loop: one Adam over `n_epochs` passes of `batches` (the same fit done in one go)."
    opt = torch.optim.Adam(model.parameters(), lr)
    for _ in range(n_epochs):
        for xb, yb in batches: F.mse_loss(model(xb), yb).backward(); opt.step(); opt.zero_grad()
    return opt

def test_fitting_twice_continues_the_optimizer_state():
    dls = tiny_dls(3)
    torch.manual_seed(0); m = nn.Linear(3, 1); ref = nn.Linear(3, 1); ref.load_state_dict(m.state_dict())
    learn = Learner(m, dls, F.mse_loss, lr=0.01, opt_func=torch.optim.Adam)
    learn.fit(1, valid=False); learn.fit(1, valid=False)
    ref_opt = adam_reference(ref, dls.train, 2, 0.01)
    assert int(learn.opt.state[m.weight]['step']) == 6
    torch.testing.assert_close(m.weight, ref.weight, rtol=0, atol=0)
    torch.testing.assert_close(learn.opt.state[m.weight]['exp_avg_sq'], ref_opt.state[ref.weight]['exp_avg_sq'], rtol=0, atol=0)

def test_reset_opt_restarts_the_optimizer_state():
    dls = tiny_dls(3)
    learn = Learner(nn.Linear(3, 1), dls, F.mse_loss, lr=0.01, opt_func=torch.optim.Adam)
    learn.fit(2, valid=False); learn.fit(1, valid=False, reset_opt=True)
    assert int(learn.opt.state[learn.model.weight]['step']) == 3

def test_load_with_opt_then_fit_continues_from_the_loaded_state(tmp_path):
    import slowlearn.checkpoint   # adds Learner.save / Learner.load
    dls = tiny_dls(4)
    torch.manual_seed(0); a = Learner(nn.Linear(3, 1), dls, F.mse_loss, lr=0.01, opt_func=torch.optim.Adam)
    ref = nn.Linear(3, 1); ref.load_state_dict(a.model.state_dict())
    a.fit(1, valid=False); a.save(tmp_path/'m.pt')
    b = Learner(nn.Linear(3, 1), dls, F.mse_loss, lr=0.01, opt_func=torch.optim.Adam).load(tmp_path/'m.pt', with_opt=True)
    b.fit(1, valid=False)
    assert int(b.opt.state[b.model.weight]['step']) == 8           # 4 loaded + 4, not 4 again
    adam_reference(ref, dls.train, 2, 0.01)
    torch.testing.assert_close(b.model.weight, ref.weight, rtol=0, atol=0)

def test_an_optimizer_of_another_model_is_refused():
    learn = Learner(nn.Linear(3, 1), tiny_dls(), F.mse_loss); learn.fit(1)
    learn.model = nn.Linear(3, 1)
    with pytest.raises(ValueError, match='reset_opt=True'): learn.fit(1)
    learn.fit(1, reset_opt=True)
    assert learn.opt.param_groups[0]['params'][0] is learn.model.weight

# ---- the callback contract

@pytest.mark.parametrize('name, closest', [('after_pred', 'after_predict'), ('before_epochs', 'before_epoch'),
                                           ('cleanup_batches', 'cleanup_batch'), ('after_stpe', 'after_step'),
                                           ('before_train', 'before_epoch'), ('after_validate', 'after_epoch')])
def test_a_method_named_like_an_event_that_is_none_fails_at_fit_start(name, closest):
    Typo = type('Typo', (Callback,), {name: lambda self, learn: None})
    learn = Learner(nn.Linear(3, 1), tiny_dls(), F.mse_loss)
    w0 = learn.model.weight.detach().clone()
    with pytest.raises(ValueError) as e: learn.fit(1, cbs=Typo())
    assert all(s in str(e.value) for s in ('Typo', repr(name), repr(closest)))
    assert torch.equal(learn.model.weight, w0) and list(learn.cbs) == []   # nothing ran; the extra callback is gone

def test_attributes_named_like_events_that_are_not_methods_are_fine():
    class Flags(Callback):
        after_warmup = 3          # a number, not a method: not an event handler
    fit(Flags())

def test_two_callbacks_replacing_the_same_step_fail_naming_both():
    class A(Callback):
        def step(self, learn): learn.opt.step()
    class B(Callback):
        order = 1
        def step(self, learn): learn.opt.step()
    with pytest.raises(ValueError, match=r"A and B both replace the 'step' step"): fit([B(), A()])

def test_a_step_declared_shared_runs_alongside_the_one_that_replaces_it():
    calls = []
    class A(Callback):
        def step(self, learn): calls.append('A'); learn.opt.step()
    class Count(Callback):
        order,shared_steps = 1,('step',)
        def step(self, learn): calls.append('count')
    fit([Count(), A()])
    assert calls == ['A', 'count'] * 2

def test_the_librarys_step_replacing_callbacks_work_together():
    from slowlearn.speed import MixedPrecisionCB
    from slowlearn.distributed import DDPCB
    from slowlearn.optim import MomentumCB, GradAccumCB
    learn = fit([DDPCB(), MixedPrecisionCB(), MomentumCB(), GradAccumCB(2), DeviceCB('cpu')])
    assert learn.train_iter == 1

def test_show_training_loop_lists_events_in_order_with_their_callbacks(capsys):
    class A(Callback):
        order = 1
        def before_fit(self, learn): pass
        def step(self, learn): pass
    class B(Callback):
        def before_fit(self, learn): pass
        def after_batch(self, learn): pass
    Learner(nn.Linear(3, 1), tiny_dls(), cbs=A()).show_training_loop(cbs=B())
    lines = capsys.readouterr().out.splitlines()
    assert [l.split()[0] for l in lines] == ['before_fit', 'before_epoch', 'before_batch', 'predict', 'after_predict', 'get_loss',
        'after_loss', 'backward', 'after_backward', 'step', 'after_step', 'zero_grad', 'after_batch', 'cleanup_batch',
        'after_epoch', 'cleanup_epoch', 'after_fit', 'cleanup_fit']
    got = {l.split()[0]: l.split(None, 1)[1] for l in lines}
    assert got['before_fit'] == 'B, A' and got['after_batch'] == 'B' and got['before_epoch'] == '-'
    assert got['step'] == 'A   (training only)' and got['predict'] == 'Learner.predict'
    assert got['zero_grad'] == 'Learner.zero_grad   (training only)'
    assert lines[1].startswith('  before_epoch') and lines[2].startswith('    before_batch')

def test_show_training_loop_checks_the_contract():
    class Bad(Callback):
        def befor_fit(self, learn): pass
        def before_fitt(self, learn): pass
    with pytest.raises(ValueError, match="'before_fitt'.*'before_fit'"): Learner(nn.Linear(3, 1), tiny_dls(), cbs=Bad()).show_training_loop()

def test_with_cbs_keeps_the_wrapped_method_s_name_and_doc():
    class K:
        @with_cbs('fit')
        def run(self):
            "Run it."
    assert K.run.__name__ == 'run' and K.run.__doc__ == 'Run it.' and K.run.__wrapped__.__name__ == 'run'

def test_state_exposed_while_fitting():
    seen = {}
    class Look(Callback):
        def after_loss(self, learn):
            for k in ('model', 'opt', 'epoch', 'iter', 'batch', 'preds', 'loss', 'training', 'dl', 'n_epochs'):
                seen[k] = getattr(learn, k)
    learn = fit(Look(), n_epochs=2, valid=False)
    assert seen['epoch'] == 1 and seen['iter'] == 1 and seen['n_epochs'] == 2 and seen['training']
    assert seen['dl'].dl is learn.dls.train     # the training loader, read through the data module's ResumableLoader
    assert seen['batch'] is learn.dls.train[1] and seen['loss'].ndim == 0

@pytest.mark.parametrize('bad,exc', [(-1, ValueError), (1.5, TypeError), ('3', TypeError), (True, TypeError)])
def test_bad_n_epochs_is_a_value_or_type_error(bad, exc):
    with pytest.raises(exc, match='n_epochs'): Learner(nn.Linear(3, 1), tiny_dls()).fit(bad)

@pytest.mark.parametrize('bad,exc', [(-0.1, ValueError), (float('nan'), ValueError), ('fast', TypeError)])
def test_bad_lr_is_a_value_or_type_error(bad, exc):
    with pytest.raises(exc, match='lr'): Learner(nn.Linear(3, 1), tiny_dls(), lr=bad)
    with pytest.raises(exc, match='lr'): Learner(nn.Linear(3, 1), tiny_dls()).fit(1, lr=bad)

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

def test_counts_accept_numpy_integers_and_refuse_bools_everywhere():
    "One integer check (`learner._is_int`): a NumPy integer is a count for `fit` as for the data loaders; a bool is not."
    import numpy as np
    from slowlearn.data import TensorLoader
    from slowlearn.layers import conv
    a,b = Spy(),Spy(); fit(a, n_epochs=np.int64(2)); fit(b, n_epochs=2)
    assert a.log == b.log and a.log.count('before_epoch') == 4   # 2 epochs, each training then validation
    assert TensorLoader(torch.zeros(5), bs=np.int32(2)).bs == 2 and conv(np.int64(1), np.int64(4))[0].out_channels == 4
    with pytest.raises(TypeError, match='n_epochs must be an integer >= 0'): fit(Spy(), n_epochs=True)
    with pytest.raises(TypeError, match='bs must be an integer'): TensorLoader(torch.zeros(5), bs=True)
    with pytest.raises(TypeError, match='nf must be an integer >= 1'): conv(1, True)

def test_model_device_lives_in_data_and_speed_still_exports_it():
    from slowlearn.data import model_device
    import slowlearn.speed
    assert slowlearn.speed.model_device is model_device
    assert model_device(nn.Linear(2, 2)) == model_device(nn.BatchNorm1d(2).requires_grad_(False)) == torch.device('cpu')
    bn = nn.Module(); bn.register_buffer('b', torch.zeros(1, device='meta'))
    assert model_device(bn) == torch.device('meta') and model_device(nn.Sequential()) == torch.device('cpu')   # a buffer; nothing

def test_load_at_fit_mixin_keeps_a_state_until_the_fit_builds_its_object():
    from slowlearn.resume import LoadAtFitMixin
    class Holder(LoadAtFitMixin, Callback):
        def __init__(self): self.obj,self.log = None,[]
        def before_fit(self, learn): self.obj = []; self._load_pending()
        def before_epoch(self, learn):
            if learn.epoch == 0 and learn.training: self.load_state_dict('during')
        def _load(self, sd): self.obj.append(sd); self.log.append(sd)
    h = Holder(); h.load_state_dict('before')
    assert h.log == [] and h.obj is None                     # nothing to load into yet: kept
    fit(h)
    assert h.log == ['before', 'during'] and h._pending is None and not h._in_fit
    h.load_state_dict('after'); assert h.log == ['before', 'during'] and h._pending == 'after'   # kept for the next fit

# ---- parameter groups
def three(m): return [m[0].parameters(), m[1].parameters(), m[2].parameters()]
def seq(): torch.manual_seed(0); return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 1))

@pytest.mark.parametrize('lr, want', [(0.1, [0.1]*3), ([1e-3, 2e-3, 3e-3], [1e-3, 2e-3, 3e-3]),
                                      (slice(1e-4, 1e-2), [1e-4, 1e-3, 1e-2]), (slice(1e-2), [1e-3, 1e-3, 1e-2])])
def test_splitter_gives_a_param_group_per_group_at_its_rate(lr, want):
    learn = Learner(seq(), tiny_dls(), F.mse_loss, lr=lr, splitter=three)
    learn.fit(1)
    m = learn.model
    assert [g['params'] for g in learn.opt.param_groups] == [list(m[i].parameters()) for i in range(3)]
    assert [g['lr'] for g in learn.opt.param_groups] == pytest.approx(want, rel=1e-12)

def test_a_later_fit_sets_each_groups_rate_and_keeps_the_optimizer():
    learn = Learner(seq(), tiny_dls(), F.mse_loss, splitter=three); learn.fit(1)
    opt = learn.opt; learn.fit(1, lr=[1., 2., 3.])
    assert learn.opt is opt and [g['lr'] for g in opt.param_groups] == [1., 2., 3.]

@pytest.mark.parametrize('splitter, msg', [
    (lambda m: [m[0].parameters(), m[1].parameters()], r"leaves out 2 parameter\(s\) of the model, e.g. \['2.weight', '2.bias'\]"),
    (lambda m: [m.parameters(), m[2].parameters()], "puts parameter '2.weight' in groups 0 and 1"),
    (lambda m: [m.parameters(), [nn.Parameter(torch.ones(2))]], r"group 1 holds a parameter of shape \(2,\) that is not in the model"),
    (lambda m: [], 'returned no parameter groups')])
def test_a_splitter_that_misses_or_repeats_parameters_is_a_clear_error(splitter, msg):
    with pytest.raises(ValueError, match=msg): Learner(seq(), tiny_dls(), F.mse_loss, splitter=splitter).fit(1)

@pytest.mark.parametrize('lr, splitter, msg', [
    ([0.1, 0.2], three, 'lr has 2 learning rates but there are 3 parameter groups'),
    ([0.1]*4, three, 'lr has 4 learning rates but there are 3 parameter groups'),
    (slice(1e-3, 1e-2), None, r'spreads rates over parameter groups, but there is only one')])
def test_more_rates_than_groups_is_a_clear_error(lr, splitter, msg):
    with pytest.raises(ValueError, match=msg): Learner(seq(), tiny_dls(), F.mse_loss, lr=lr, splitter=splitter).fit(1)

@pytest.mark.parametrize('lr', [slice(0, 1e-2), slice(1e-3, 1e-2, 2), slice(None), [], [0.1, -1], -0.1, float('nan')])
def test_bad_lr_is_a_clear_error(lr):
    with pytest.raises(ValueError, match='lr must be a number >= 0, a slice'): Learner(seq(), tiny_dls(), lr=lr)

@pytest.mark.parametrize('lr', ['x', True, None, [0.1, '1'], slice('a', 1.), {0.1}])
def test_an_lr_of_the_wrong_type_is_a_type_error(lr):
    with pytest.raises(TypeError, match='lr must be a number, a slice of numbers or a list'): Learner(seq(), tiny_dls(), lr=lr)

def test_a_splitter_must_be_a_function():
    with pytest.raises(TypeError, match='splitter must be None or callable'): Learner(seq(), tiny_dls(), splitter=[1])

# ---- virtual epochs (`fit(steps_per_epoch=)`)

@pytest.mark.usefixtures('one_thread')
def test_virtual_epochs_run_the_repeated_loader():
    seen = []
    class Seen(Callback):
        def before_batch(self, learn):
            if learn.training: seen.append((learn.epoch, learn.iter, learn.batch[0][:, 0].clone()))
    x, y, xv, yv = data(80)
    dls = DataLoaders.from_tensors(x, y, xv, yv, bs=16, seed=5)      # 5 batches per pass
    learn = make_learn([Seen()], dls=dls); learn.fit(3, steps_per_epoch=7)
    stream = [x[dls.train.order(e)[i:i + 16], 0] for e in range(5) for i in range(0, 80, 16)]
    assert [(e, i) for e, i, _ in seen] == [(e, i) for e in range(3) for i in range(7)]
    assert all(torch.equal(b, s) for (_, _, b), s in zip(seen, stream))
    assert [(r['epoch'], r['phase']) for r in learn.history] == [(e, p) for e in range(3) for p in ('train', 'valid')]
    assert learn.n_iter == 7 and learn.train_iter == 21

@pytest.mark.usefixtures('one_thread')
def test_virtual_epochs_resume_and_early_stop(tmp_path):
    ref = make_learn([OneCycle()]); ref.fit(4, steps_per_epoch=6)
    learn, ck = crash_then_resume(tmp_path, 17, n_epochs=4, fit_kw=dict(steps_per_epoch=6), every_n_steps=4)
    assert (ck.resumed['epoch'], ck.resumed['iter'], ck.resumed['step']) == (2, 4, 16)     # mid virtual epoch
    assert states_equal(learn, ref) and learn.history == ref.history
    losses = [3., 2., 2.5, 2.6, 2.7, 1.]
    es = EarlyStoppingCB(patience=2)
    Learner(nn.Linear(8, 2), DataLoaders.from_tensors(*data(), bs=32), cbs=[ScriptedValid(losses), es]).fit(6, steps_per_epoch=2)
    assert es.stopped_epoch == 3

# ---- what is a step

@pytest.mark.usefixtures('one_thread')
def test_a_callback_attribute_named_like_a_step_is_not_a_step():
    class WithData(Callback):
        def __init__(self): self.step,self.predict = 3,'x'     # plain attributes, not step replacements
    learn = make_learn([WithData()]); learn.fit(1)
    assert learn.train_iter == 10
