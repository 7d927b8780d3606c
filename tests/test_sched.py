"Schedules against their formulas, scheduler callbacks against plain PyTorch loops, one-cycle, the LR finder, `RecorderCB`."
import copy, math
from types import SimpleNamespace
import pytest, torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler
from torch.testing import assert_close
from torcheval.metrics import MulticlassAccuracy
from slowlearn.learner import Learner, Callback, CancelStepException
from slowlearn.metrics import MetricsCB
from slowlearn.data import DataLoaders
from slowlearn.optim import AdamW, SGD as PlainSGD
from slowlearn.sched import (BaseSchedulerCB, BatchSchedulerCB, EpochSchedulerCB, ParamSchedulerCB, RecorderCB, LRFinderCB,
                             SuggestedLRs, sched_lin, sched_cos, sched_exp, combine_scheds, warmup_cosine)
from conftest import linear_dls as data, bn_mlp as model

class Spy(Callback):
    "Record the first param group's hyperparameters at every optimizer step, and the training/validation batches seen."
    def before_fit(self, learn): self.groups, self.train_batches, self.valid_batches = [], 0, 0
    def after_backward(self, learn): self.groups.append({k: v for k, v in learn.opt.param_groups[0].items() if k != 'params'})
    def after_batch(self, learn):
        if learn.training: self.train_batches += 1
        else: self.valid_batches += 1
    def get(self, k): return [g[k] for g in self.groups]

class GroupLRs(Callback):
    "Every param group's LR at each optimizer step."
    def before_fit(self, learn): self.lrs = []
    def after_backward(self, learn): self.lrs.append([g['lr'] for g in learn.opt.param_groups])

def plain_loop(sched_f, n_epochs, per='batch', lr=0.1, seed=0):
    "Reference: the textbook PyTorch loop with a scheduler; returns (lrs used per step, final weights)."
    m, dls = model(seed), data()
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    sched, lrs = sched_f(opt), []
    for epoch in range(n_epochs):
        m.train(); dls.train.set_epoch(epoch)
        for xb, yb in dls.train:
            lrs.append(opt.param_groups[0]['lr'])
            F.cross_entropy(m(xb), yb).backward(); opt.step(); opt.zero_grad()
            if per == 'batch': sched.step()
        if per == 'epoch': sched.step()
        m.eval()
        with torch.no_grad():
            for xb, yb in dls.valid: m(xb)
    return lrs, m.state_dict()

# ---- schedule functions against their formulas
@pytest.mark.parametrize('p', [0., 0.25, 0.5, 0.8, 1.])
def test_sched_lin_cos_exp_match_formulas(p):
    a, b = 2., 0.1
    assert sched_lin(a, b)(p) == pytest.approx(a + p*(b - a))
    assert sched_cos(a, b)(p) == pytest.approx(b + (a - b)*(1 + math.cos(math.pi*p))/2)
    assert sched_exp(a, b)(p) == pytest.approx(math.exp(math.log(a) + p*(math.log(b) - math.log(a))))

def test_sched_known_points():
    assert sched_cos(1, 0)(0.5) == pytest.approx(0.5) and sched_cos(1, 0)(1) == pytest.approx(0)
    assert sched_exp(1e-4, 1)(0.5) == pytest.approx(1e-2)
    assert sched_lin(0, 10)(0.3) == pytest.approx(3)

def test_sched_exp_rejects_non_positive():
    with pytest.raises(ValueError, match='start > 0 and end > 0'): sched_exp(0, 1)
    with pytest.raises(ValueError, match='start > 0 and end > 0'): sched_exp(1, -1)

def test_combine_scheds_phases_and_boundaries():
    f = combine_scheds([0.25, 0.75], [sched_lin(0, 1), sched_cos(1, 0)])
    assert [f(0), f(0.125), f(0.25)] == pytest.approx([0, 0.5, 1])
    assert f(0.625) == pytest.approx(0.5)  # halfway through the cosine phase
    assert f(1) == pytest.approx(0)
    g = combine_scheds([0.5, 0.5], [sched_lin(0, 0), sched_lin(5, 5)])
    assert g(0.4999) == 0 and g(0.5) == 5   # the boundary belongs to the next phase

@pytest.mark.parametrize('pcts,scheds,msg', [([0.5, 0.6], [sched_lin(0, 1)]*2, 'sum to 1'), ([0., 1.], [sched_lin(0, 1)]*2, '> 0'),
                                            ([1.], [sched_lin(0, 1)]*2, 'equal length'), ([], [], 'non-empty')])
def test_combine_scheds_bad_input(pcts, scheds, msg):
    with pytest.raises(ValueError, match=msg): combine_scheds(pcts, scheds)

def test_warmup_cosine_matches_formula():
    lr, w, T = 0.3, 20, 120
    f = warmup_cosine(lr, w, T)
    for t in [0, 1, 10, 19]: assert f(t) == pytest.approx(lr*t/w)
    for t in [20, 45, 70, 100, 120]: assert f(t) == pytest.approx(lr*0.5*(1 + math.cos(math.pi*(t - w)/(T - w))))
    assert f(70) == pytest.approx(lr/2) and f(120) == pytest.approx(0, abs=1e-12) and f(500) == 0
    assert warmup_cosine(1., 0, 10)(0) == 1.   # no warm-up: starts at the peak

@pytest.mark.parametrize('args,exc,msg', [((0.1, 0, 0), ValueError, 'total_steps must be >= 1'),
                                          ((0.1, 11, 10), ValueError, r'warmup_steps must be in \[0, total_steps=10\]'),
                                          ((0.1, -1, 10), ValueError, 'warmup_steps must be in'),
                                          ((-0.1, 1, 10), ValueError, 'lr must be'),
                                          ((0.1, 1.5, 10), TypeError, 'warmup_steps must be an integer')])
def test_warmup_cosine_bad_input(args, exc, msg):
    with pytest.raises(exc, match=msg): warmup_cosine(*args)

# ---- torch schedulers as callbacks
def test_batch_scheduler_steps_only_in_training():
    cb, spy = BatchSchedulerCB(lr_scheduler.StepLR, step_size=1000), Spy()
    Learner(model(), data(), cbs=[cb, spy]).fit(3)
    assert spy.valid_batches == 3*2 and spy.train_batches == 3*4
    assert cb.sched.last_epoch == 3*4

def test_epoch_scheduler_steps_only_after_training_epochs():
    cb = EpochSchedulerCB(lr_scheduler.StepLR, step_size=1000)
    Learner(model(), data(), cbs=cb).fit(3)
    assert cb.sched.last_epoch == 3

def test_batch_scheduler_reproduces_plain_loop():
    f = lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=12, eta_min=0.01)
    ref_lrs, ref_sd = plain_loop(f, 3)
    cb, spy = BatchSchedulerCB(lr_scheduler.CosineAnnealingLR, T_max=12, eta_min=0.01), Spy()
    learn = Learner(model(), data(), lr=0.1, cbs=[cb, spy]); learn.fit(3)
    assert_close(spy.get('lr'), ref_lrs, rtol=0, atol=1e-15)
    for k, v in ref_sd.items(): assert_close(learn.model.state_dict()[k], v)

def test_epoch_scheduler_reproduces_plain_loop():
    f = lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=3)
    ref_lrs, ref_sd = plain_loop(f, 3, per='epoch')
    cb, spy = EpochSchedulerCB(lr_scheduler.CosineAnnealingLR, T_max=3), Spy()
    learn = Learner(model(), data(), lr=0.1, cbs=[cb, spy]); learn.fit(3)
    assert_close(spy.get('lr'), ref_lrs, rtol=0, atol=1e-15)
    assert spy.get('lr')[4] == pytest.approx(0.1*(1 + math.cos(math.pi/3))/2)
    for k, v in ref_sd.items(): assert_close(learn.model.state_dict()[k], v)

def test_a_scheduler_in_a_later_fit_starts_from_that_fit_s_lr():
    "The optimizer outlives the fit; the `initial_lr` an earlier fit's scheduler left must not be the next one's base."
    cb, spy = BatchSchedulerCB(lr_scheduler.LambdaLR, lr_lambda=lambda t: 0.5**(t//2)), Spy()   # LR = base LR x factor
    learn = Learner(model(), data(), lr=0.1, cbs=[cb, spy])
    learn.fit(1); first = spy.get('lr')
    learn.fit(1, lr=0.04)
    assert first == pytest.approx([0.1, 0.1, 0.05, 0.05], rel=1e-12)
    assert spy.get('lr') == pytest.approx([0.04, 0.04, 0.02, 0.02], rel=1e-12)

def test_param_scheduler_total_steps_sets_the_clock():
    spy = Spy()
    Learner(model(), data(), cbs=[spy, ParamSchedulerCB({'lr': sched_lin(0, 1)}, total_steps=16)]).fit(2)   # 8 steps of 16
    assert spy.get('lr') == pytest.approx([i/16 for i in range(8)], abs=1e-15)
    for bad,exc in ((0, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(exc, match='total_steps must be None or an integer >= 1'): ParamSchedulerCB({'lr': sched_lin(0, 1)}, total_steps=bad)

def test_scheduler_cb_works_with_slowlearn_optimizer():
    # OneCycleLR also cycles betas[0]; our AdamW must see the same values as torch's
    cb, spy = BatchSchedulerCB(lr_scheduler.OneCycleLR, max_lr=0.01, total_steps=8), Spy()
    Learner(model(), data(), opt_func=AdamW, cbs=[cb, spy]).fit(2)
    ref = lr_scheduler.OneCycleLR(torch.optim.AdamW(nn.Linear(1, 1).parameters()), max_lr=0.01, total_steps=8)
    groups = []
    for _ in range(8): groups.append(dict(ref.optimizer.param_groups[0])); ref.optimizer.step(); ref.step()
    assert_close(spy.get('lr'), [g['lr'] for g in groups], rtol=0, atol=1e-15)
    assert_close([b[0] for b in spy.get('betas')], [g['betas'][0] for g in groups], rtol=0, atol=1e-15)
    assert spy.get('betas')[0][0] == pytest.approx(0.95) and min(b[0] for b in spy.get('betas')) < 0.9

def test_scheduler_state_dict_resumes_the_lr_sequence():
    # 4 epochs straight vs 2 epochs, state saved, then a new callback loaded before 2 more epochs
    mk = lambda: BatchSchedulerCB(lr_scheduler.CosineAnnealingLR, T_max=16)
    full, spy = mk(), Spy()
    Learner(model(), data(), lr=0.1, cbs=[full, spy]).fit(4)
    first = mk(); Learner(model(), data(), lr=0.1, cbs=first).fit(2)
    sd = copy.deepcopy(first.state_dict())
    second, spy2 = mk(), Spy()
    second.load_state_dict(sd)
    Learner(model(), data(), lr=0.1, cbs=[second, spy2]).fit(2)
    assert_close(spy2.get('lr'), spy.get('lr')[8:], rtol=0, atol=1e-15)

class Plateau(lr_scheduler.ReduceLROnPlateau):
    "ReduceLROnPlateau remembering the metrics it was stepped with."
    def step(self, metrics): self.seen = getattr(self, 'seen', []) + [metrics]; super().step(metrics)

def test_epoch_scheduler_reduce_on_plateau_uses_validation_loss():
    cb = EpochSchedulerCB(Plateau, patience=0, factor=0.5)
    learn = Learner(model(), data(), lr=0.1, cbs=[MetricsCB(), cb])
    learn.fit(3)
    assert cb.sched.seen == [r['loss'] for r in learn.history if r['phase'] == 'valid']
    with pytest.raises(ValueError, match='needs MetricsCB'):
        Learner(model(), data(), cbs=EpochSchedulerCB(lr_scheduler.ReduceLROnPlateau)).fit(1)
    with pytest.raises(TypeError, match='ReduceLROnPlateau needs a metric'):
        Learner(model(), data(), cbs=BatchSchedulerCB(lr_scheduler.ReduceLROnPlateau)).fit(1)

def test_scheduler_factory_must_be_callable():
    with pytest.raises(TypeError, match='scheduler_factory must be callable'): BatchSchedulerCB('cosine')

# ---- ParamSchedulerCB and one-cycle
def test_param_scheduler_scales_each_groups_lr_and_sets_momentum_before_each_batch():
    m = model()   # group 0 starts at lr=0.1, group 1 at 1: the LR schedule keeps that ratio, momentum is the same for both
    opt_func = lambda ps, lr: torch.optim.SGD([{'params': list(m[0].parameters())}, {'params': list(m[3].parameters()), 'lr': 1.}], lr=lr)
    vals = []
    class GroupSpy(Callback):
        def after_backward(self, learn): vals.append([(g['lr'], g['momentum']) for g in learn.opt.param_groups])
    cb = ParamSchedulerCB({'lr': sched_lin(0.1, 0.02), 'momentum': sched_exp(0.5, 0.9)})
    Learner(m, data(), opt_func=opt_func, cbs=[cb, GroupSpy()]).fit(2)
    assert len(vals) == 8
    for i, groups in enumerate(vals):
        for (lr, mom), scale in zip(groups, (0.1, 1.)):
            assert (lr, mom) == (pytest.approx(scale*(0.1 - 0.08*i/8)), pytest.approx(0.5*1.8**(i/8)))

def test_param_scheduler_sets_first_beta_for_adam():
    spy = Spy()
    Learner(model(), data(), opt_func=AdamW, cbs=[ParamSchedulerCB({'momentum': sched_lin(0.9, 0.8)}), spy]).fit(1)
    assert [b for b in spy.get('betas')] == [pytest.approx((0.9 - 0.1*i/4, 0.999)) for i in range(4)]
    spy2 = Spy()
    Learner(model(), data(), opt_func=torch.optim.Adam, cbs=[ParamSchedulerCB({'betas': sched_lin(0.9, 0.8)}), spy2]).fit(1)
    assert [b[0] for b in spy2.get('betas')] == pytest.approx([0.9 - 0.1*i/4 for i in range(4)])

def test_param_scheduler_follows_optimizer_steps_not_batches():
    class EverySecond(Callback):
        def after_backward(self, learn):
            if learn.iter % 2 == 0: raise CancelStepException()
    class HalveSteps(Callback):
        def before_fit(self, learn): learn.n_steps = learn.n_iter // 2
    spy = Spy()   # listed first, so it sees every batch before EverySecond cancels a step
    Learner(model(), data(), cbs=[spy, EverySecond(), HalveSteps(), ParamSchedulerCB({'lr': sched_lin(0, 1)})]).fit(2)
    # 8 batches, 4 steps: each pair of batches trains at the same position k/4
    assert spy.get('lr') == pytest.approx([0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75])

def test_param_scheduler_unknown_hyperparameter_fails_at_fit_start():
    batches = []
    class Count(Callback):
        def before_batch(self, learn): batches.append(learn.iter)
    with pytest.raises(KeyError, match="no hyperparameter 'mom'"):
        Learner(model(), data(), cbs=[ParamSchedulerCB({'mom': sched_lin(0.9, 0.8)}), Count()]).fit(1)
    assert batches == []
    with pytest.raises(TypeError, match='must be a function'): ParamSchedulerCB({'lr': 0.1})

def one_cycle_values(n_epochs, lr_max, opt_func, **kw):
    rec = RecorderCB(lr='lr', mom='momentum')
    learn = Learner(model(), data(), opt_func=opt_func, cbs=rec)
    learn.fit_one_cycle(n_epochs, lr_max, cbs=MetricsCB(), **kw)
    return rec['lr'], rec['mom'], learn

@pytest.mark.parametrize('opt_func', [torch.optim.SGD, AdamW])
def test_fit_one_cycle_lr_and_momentum_at_start_peak_end(opt_func):
    lrs, moms, learn = one_cycle_values(4, 0.2, opt_func)  # 16 steps, peak at step 4
    T, lr_max = 16, 0.2
    assert len(lrs) == T and len(learn.history) == 8   # MetricsCB passed through cbs ran
    assert lrs[0] == pytest.approx(lr_max/25) and moms[0] == pytest.approx(0.95)
    assert lrs[4] == pytest.approx(lr_max) and moms[4] == pytest.approx(0.85)
    assert max(lrs) == lrs[4] and min(moms) == moms[4]
    p = ((T - 1)/T - 0.25)/0.75
    assert lrs[-1] == pytest.approx(lr_max/1e5 + (lr_max - lr_max/1e5)*(1 + math.cos(math.pi*p))/2)
    assert moms[-1] == pytest.approx(0.95 - 0.1*(1 + math.cos(math.pi*p))/2)
    q = 2/4   # step 2 is half way up the warm-up
    assert lrs[2] == pytest.approx(lr_max/25 + (lr_max - lr_max/25)*(1 - math.cos(math.pi*q))/2)

def test_fit_one_cycle_schedules_only_lr_without_momentum():
    spy = Spy()
    learn = Learner(model(), data(), opt_func=PlainSGD, cbs=spy)
    learn.fit_one_cycle(1, 0.1, pct_start=0.5)
    assert 'momentum' not in spy.groups[0] and 'betas' not in spy.groups[0]
    assert spy.get('lr') == pytest.approx([0.004, (0.004 + 0.1)/2, 0.1, (0.1 + 1e-6)/2])   # a half-cosine's midpoint is the mean

def test_fit_one_cycle_passes_steps_per_epoch_and_resume_to_fit():
    spy = Spy()
    learn = Learner(model(), data(), opt_func=PlainSGD, cbs=spy)   # 4 batches an epoch
    learn.fit_one_cycle(2, 0.1, steps_per_epoch=3)
    assert spy.train_batches == 6 and len(spy.groups) == 6
    with pytest.raises(ValueError, match='resume'): learn.fit_one_cycle(1, 0.1, resume=True)   # no CheckpointCB

@pytest.mark.parametrize('kw,msg', [(dict(pct_start=0), r'pct_start must be in \(0, 1\)'), (dict(pct_start=1.), r'pct_start must be in \(0, 1\)'),
                                    (dict(lr_max=0), 'lr_max must be'), (dict(div=0), 'div must be'), (dict(div_final=-1), 'div_final must be'),
                                    (dict(moms=(0.9, 0.8)), 'moms must be 3 values')])
def test_fit_one_cycle_bad_input(kw, msg):
    learn = Learner(model(), data())
    with pytest.raises(ValueError, match=msg): learn.fit_one_cycle(1, **{'lr_max': 0.1, **kw})

# ---- RecorderCB
def test_recorder_records_every_training_batch_with_the_values_it_trained_with():
    losses = []
    class LossSpy(Callback):
        def after_loss(self, learn):
            if learn.training: losses.append(learn.loss.item())
    rec = RecorderCB(lr='lr', it=lambda learn: learn.train_iter)
    cb = BatchSchedulerCB(lr_scheduler.StepLR, step_size=1, gamma=0.5)
    Learner(model(), data(), lr=0.1, cbs=[cb, rec, LossSpy()]).fit(2)
    assert rec['loss'] == pytest.approx(losses) and len(losses) == 8
    assert rec['lr'] == pytest.approx([0.1*0.5**i for i in range(8)])
    assert rec['it'] == list(range(8))

def test_recorder_state_dict_round_trip_and_resume():
    rec = RecorderCB(lr='lr')
    Learner(model(), data(), cbs=rec).fit(1)
    sd = copy.deepcopy(rec.state_dict())
    assert set(sd['recs']) == {'loss', 'lr'} and len(sd['recs']['loss']) == 4
    rec2 = RecorderCB(lr='lr'); rec2.load_state_dict(sd)
    Learner(model(), data(), cbs=rec2).fit(1)             # loaded before a fit: appended to
    assert len(rec2['loss']) == 8 and rec2['loss'][:4] == sd['recs']['loss']
    Learner(model(), data(), cbs=rec2).fit(1)             # a later fit starts afresh
    assert len(rec2['loss']) == 4

def test_recorder_plot_and_bad_getters():
    import matplotlib; matplotlib.use('agg')
    rec = RecorderCB(lr='lr')
    Learner(model(), data(), cbs=rec).fit(1)
    axs = rec.plot()
    assert [ax.get_title() for ax in axs] == ['loss', 'lr'] and list(axs[1].lines[0].get_ydata()) == rec['lr']
    with pytest.raises(TypeError, match="getter 'lr'"): RecorderCB(lr=3)
    with pytest.raises(ValueError, match="'loss' is always recorded"): RecorderCB(loss='lr')

# ---- LR finder
def trained_learner(opt_func=torch.optim.Adam):
    learn = Learner(model(), data(), lr=1e-2, opt_func=opt_func)
    learn.fit(1)
    learn.history = [{'marker': 1}]
    return learn

def test_lr_find_restores_weights_optimizer_and_history():
    import matplotlib; matplotlib.use('agg')
    learn = trained_learner()
    learn.model.eval()
    sd, opt, osd, hist = copy.deepcopy(learn.model.state_dict()), learn.opt, copy.deepcopy(learn.opt.state_dict()), learn.history
    learn.lr_find(num_it=30)
    assert learn.opt is opt and learn.history is hist and not learn.model.training
    for k, v in sd.items(): assert torch.equal(learn.model.state_dict()[k], v), k   # BatchNorm buffers included
    new = learn.opt.state_dict()
    assert new['param_groups'] == osd['param_groups']
    for p, st in osd['state'].items():
        for k, v in st.items(): assert torch.equal(torch.as_tensor(new['state'][p][k]), torch.as_tensor(v)), (p, k)
    # and training after lr_find is the same as training without it
    ref = trained_learner(); ref.fit(1); learn.fit(1)
    for k, v in ref.model.state_dict().items(): assert torch.equal(learn.model.state_dict()[k], v), k

def test_lr_find_grows_lr_exponentially_and_goes_round_the_data():
    learn = trained_learner()
    cb = LRFinderCB(1e-6, 1e-2, num_it=10, stop_div=False)   # 10 batches from 4-batch epochs
    learn.fit(1, valid=False, cbs=cb, steps_per_epoch=10)
    assert len(cb.lrs) == 10
    assert cb.lrs == pytest.approx([1e-6*10**(4*i/9) for i in range(10)])

def test_lr_find_stops_when_loss_diverges():
    learn = trained_learner(torch.optim.SGD)
    cb = LRFinderCB(1e-3, 1e6, num_it=100)
    learn.fit(1, valid=False, cbs=cb, steps_per_epoch=100)
    assert len(cb.lrs) < 100
    last = cb.smooth[-1]
    assert not last <= 4*min(cb.smooth[:-1])   # stopped at the first smoothed loss over 4x the best (or NaN)
    assert all(s <= 4*min(cb.smooth[:i + 1]) for i, s in enumerate(cb.smooth[:-1]))

def drive_lr_finder(cb, loss_at, n):
    "Run `cb`'s batch events for up to `n` batches with the loss given by `loss_at(lr)`, as a fit would, until it stops."
    learn = SimpleNamespace(opt=SimpleNamespace(param_groups=[{}]), training=True)
    cb.before_fit(learn)
    for i in range(n):
        cb.before_batch(learn)
        learn.loss = torch.tensor(loss_at(learn.opt.param_groups[0]['lr']))
        try: cb.after_batch(learn)
        except Exception: break

def test_lr_finder_smoothing_and_suggestions_on_a_known_curve():
    # drive the callback with a synthetic loss: flat, then falling fastest at lr=1e-3, minimum near 1e-1, then rising
    cb = LRFinderCB(1e-6, 10., num_it=71, stop_div=False, beta=0.9)
    loss_at = lambda lr: 2 - math.tanh(math.log10(lr/1e-3)) + 0.5*max(0., math.log10(lr/0.1))**2
    drive_lr_finder(cb, loss_at, 71)
    beta, avg, ref = 0.9, 0., []
    for i, l in enumerate(cb.losses): avg = beta*avg + (1 - beta)*l; ref.append(avg/(1 - beta**(i + 1)))
    assert cb.smooth == pytest.approx(ref)
    s = cb.suggest()
    lrs = torch.tensor(cb.lrs, dtype=torch.float64); sm = torch.tensor(ref, dtype=torch.float64)
    i_min = int(sm.argmin())
    assert s.minimum == pytest.approx(cb.lrs[i_min]/10)
    slopes = [(ref[i + 1] - ref[i - 1])/math.log(cb.lrs[i + 1]/cb.lrs[i - 1]) for i in range(7, i_min)]
    assert s.steep == pytest.approx(cb.lrs[7 + slopes.index(min(slopes))])
    assert 1e-4 < s.steep < 1e-1 and isinstance(s, SuggestedLRs)

def test_lr_finder_plot_marks_the_minimum_and_labels_the_suggestions_apart():
    "The plot's 'minimum' is where the smoothed loss is lowest; min/10 is labelled as a suggestion, not as the minimum."
    import matplotlib; matplotlib.use('agg')
    cb = LRFinderCB(1e-6, 10., num_it=71, stop_div=False, beta=0.9)
    drive_lr_finder(cb, lambda lr: 2 - math.tanh(math.log10(lr/1e-3)) + 0.5*max(0., math.log10(lr/0.1))**2, 71)
    s, i_min = cb.suggest(), min(range(len(cb.smooth)), key=cb.smooth.__getitem__)
    labels = [t.get_text() for t in cb.plot(s).get_legend().get_texts()]
    assert labels == ['loss', 'smoothed loss', f'minimum: {cb.lrs[i_min]:.2g}',
                      f'suggested, steepest: {s.steep:.2g}', f'suggested, minimum/10: {s.minimum:.2g}']
    assert [t.get_text() for t in cb.plot().get_legend().get_texts()][-1] == f'minimum: {cb.lrs[i_min]:.2g}'

def test_lr_find_empty_loader_is_a_clear_error():
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    learn = Learner(model(), DataLoaders([], [(x, y)]))
    with pytest.raises(ValueError, match='dls.train is empty'): learn.lr_find()
    learn = Learner(model(), SimpleNamespace(train=iter([]), valid=[]))   # no len(): found out by iterating
    with pytest.raises(ValueError, match='yielded none'): learn.lr_find(show_plot=False)

@pytest.mark.parametrize('kw,msg', [(dict(start_lr=0), 'start_lr must be'), (dict(start_lr=1, end_lr=0.1), 'end_lr must be > start_lr'),
                                    (dict(num_it=1), 'num_it must be an integer >= 2'), (dict(div=1), 'div must be > 1'),
                                    (dict(beta=1), r'beta must be in \[0, 1\)')])
def test_lr_finder_bad_input(kw, msg):
    with pytest.raises(ValueError, match=msg): LRFinderCB(**kw)

def test_lr_finder_default_suggestions_land_near_the_true_points():
    # 100 batches over 8 decades, a loss falling fastest at lr=1e-3 and lowest near lr=0.115: the default smoothing
    # must not lag so much that the suggestions move by half a decade or more
    cb = LRFinderCB()
    loss_at = lambda lr: 2 - math.tanh(math.log10(lr/1e-3)) + 2*max(0., math.log10(lr/0.1))**2
    us = torch.linspace(1.5, 2.5, 10001, dtype=torch.float64)   # u = log10(lr/1e-3) around the minimum
    true_min = 1e-3*10**float(us[torch.tensor([loss_at(1e-3*10**float(u)) for u in us]).argmin()])
    drive_lr_finder(cb, loss_at, 100)
    s = cb.suggest()
    assert abs(math.log10(s.steep/1e-3)) < 0.5
    assert abs(math.log10(s.minimum/(true_min/10))) < 0.5

# ---- parameter groups
def two_groups(m): return [m[:2].parameters(), m[2:].parameters()]

def test_torch_scheduler_scales_each_groups_own_rate():
    spy = GroupLRs()
    learn = Learner(model(), data(), lr=[0.01, 0.1], splitter=two_groups, cbs=[BatchSchedulerCB(lr_scheduler.LambdaLR, lr_lambda=lambda t: 0.5**t), spy])
    learn.fit(1)
    assert spy.lrs == [[pytest.approx(0.01*0.5**t), pytest.approx(0.1*0.5**t)] for t in range(4)]

def test_one_schedule_keeps_the_groups_ratio_and_a_list_gives_one_per_group():
    spy = GroupLRs()
    Learner(model(), data(), lr=slice(1e-3, 1e-1), splitter=two_groups, cbs=[ParamSchedulerCB({'lr': sched_lin(1., 0.)}), spy]).fit(1)
    assert spy.lrs == [[pytest.approx(0.01*(1 - t/4)), pytest.approx(1 - t/4)] for t in range(4)]
    cb = ParamSchedulerCB({'lr': [sched_lin(1., 0.), sched_lin(2., 0.)]})
    Learner(model(), data(), splitter=two_groups, cbs=[cb, spy]).fit(1)
    assert spy.lrs == [[pytest.approx(1 - t/4), pytest.approx(2*(1 - t/4))] for t in range(4)]
    with pytest.raises(ValueError, match="3 schedules for 'lr', but the optimizer has 2 param groups"):
        Learner(model(), data(), splitter=two_groups, cbs=ParamSchedulerCB({'lr': [sched_lin(1., 0.)]*3})).fit(1)

def test_lr_find_grows_the_last_groups_rate_and_keeps_the_others_ratio():
    spy = GroupLRs()
    learn = Learner(model(), data(), lr=[1e-3, 1e-2], splitter=two_groups, cbs=spy)
    learn.lr_find(num_it=5, show_plot=False, stop_div=False)
    assert all(a == pytest.approx(b/10) for a, b in spy.lrs) and spy.lrs[0][1] == pytest.approx(1e-7)
