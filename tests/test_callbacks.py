"`GradClipCB` against plain PyTorch loops (with accumulation and float16 loss scaling), `EMACB`/`SWACB` against hand-computed and `torch.optim.swa_utils` averages, exact resume, `ProfilerCB`'s trace and table."
import copy, json, math, warnings
from types import SimpleNamespace
import pytest, torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import clip_grad_norm_, clip_grad_value_
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn as torch_update_bn
from torch.testing import assert_close
from slowlearn.learner import Learner, Callback
from slowlearn.metrics import MetricsCB
from slowlearn.sched import RecorderCB
from slowlearn.layers import BatchNorm
from slowlearn.checkpoint import CheckpointCB, EarlyStoppingCB
from slowlearn.optim import GradAccumCB
from slowlearn.speed import MixedPrecisionCB, ProfilerCB
from slowlearn.callbacks import GradClipCB, EMACB, SWACB, update_bn
from crash import Crash, CrashAt
from conftest import class_batches

def batches(n, bs, seed=0): return class_batches(n, bs, seed, noise=0.3)

def mlp(seed=0, bn=False):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32) if bn else nn.Identity(), nn.ReLU(), nn.Linear(32, 3))

def dls(train, valid=()): return SimpleNamespace(train=list(train), valid=list(valid))
def flat(m): return torch.cat([p.detach().flatten() for p in m.parameters()])
def same_state(a, b): return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

class AfterSteps(Callback):
    "Flat weights after every optimizer step."
    order = 60
    def before_fit(self, learn): self.ws = []
    def after_step(self, learn): self.ws.append(flat(learn.model))

def plain_loop(model, data, lr, clip):
    "Weights after every step of SGD with `clip(params)` between backward and step; and what `clip` returned."
    opt, ws, out = torch.optim.SGD(model.parameters(), lr=lr), [], []
    for x, y in data:
        F.cross_entropy(model(x), y).backward()
        out.append(clip(list(model.parameters())))
        opt.step(); opt.zero_grad()
        ws.append(flat(model))
    return ws, out

# ---- gradient clipping
@pytest.mark.parametrize('bn', [False, True])
def test_clip_norm_equals_plain_loop_step_for_step(bn):
    data = batches(10, 16)
    clip, steps = GradClipCB(0.3), AfterSteps()
    rec = RecorderCB(grad_norm=clip.grad_norm)
    Learner(mlp(bn=bn), dls(data), lr=0.5, cbs=[clip, steps, rec]).fit(1, valid=False)
    ws, norms = plain_loop(mlp(bn=bn), data, 0.5, lambda ps: clip_grad_norm_(ps, 0.3).item())
    assert len(steps.ws) == 10 and all(torch.equal(a, b) for a, b in zip(steps.ws, ws))
    assert rec['grad_norm'] == norms and max(norms) > 0.3     # the clip really acted

def test_clip_value_equals_plain_loop_and_norm_only_on_request():
    data = batches(6, 16)
    clip, steps = GradClipCB(max_value=0.02), AfterSteps()
    Learner(mlp(), dls(data), lr=0.5, cbs=[clip, steps]).fit(1, valid=False)
    ws, _ = plain_loop(mlp(), data, 0.5, lambda ps: clip_grad_value_(ps, 0.02))
    assert all(torch.equal(a, b) for a, b in zip(steps.ws, ws))
    assert clip.norm is None                                   # nobody asked for it
    clip = GradClipCB(max_value=0.02, norm_type=math.inf)
    rec = RecorderCB(grad_norm=clip.grad_norm)
    Learner(mlp(), dls(data), lr=0.5, cbs=[clip, rec]).fit(1, valid=False)
    _, norms = plain_loop(mlp(), data, 0.5, _inf_norm_then_clip)
    assert_close(torch.tensor(rec['grad_norm']), torch.tensor(norms), rtol=1e-6, atol=0)

def _inf_norm_then_clip(ps):
    n = torch.cat([p.grad.flatten() for p in ps]).abs().max().item()
    clip_grad_value_(ps, 0.02)
    return n

def test_clip_with_grad_accumulation_equals_big_batches_clipped_once():
    small, big = batches(8, 16), [(torch.cat([x for x, _ in g]), torch.cat([y for _, y in g]))
                                  for g in (batches(8, 16)[:4], batches(8, 16)[4:])]
    clip, steps = GradClipCB(0.3), AfterSteps()
    rec = RecorderCB(grad_norm=clip.grad_norm)
    Learner(mlp(), dls(small), lr=0.5, cbs=[GradAccumCB(4), clip, steps, rec]).fit(1, valid=False)
    ws, norms = plain_loop(mlp(), big, 0.5, lambda ps: clip_grad_norm_(ps, 0.3).item())
    assert len(steps.ws) == 2
    for a, b in zip(steps.ws, ws): assert_close(a, b, rtol=1e-5, atol=1e-6)
    got = rec['grad_norm']
    assert [math.isnan(v) for v in got] == [True, True, True, False] * 2
    assert_close(torch.tensor([got[3], got[7]]), torch.tensor(norms), rtol=1e-5, atol=0)

def fit16(*cbs, data=None, lr=0.5):
    mp = MixedPrecisionCB(torch.float16, init_scale=2.**10)
    learn = Learner(mlp(), dls(data or batches(6, 16)), lr=lr, cbs=[mp, *cbs])
    learn.fit(1, valid=False)
    return learn, mp

class ScaledNorms(Callback):
    "Gradient norms as backward left them, before MixedPrecisionCB unscales."
    order = -4.5
    def before_fit(self, learn): self.norms = []
    def after_backward(self, learn): self.norms.append(flat_grad(learn.model).norm().item())

def flat_grad(m): return torch.cat([p.grad.flatten() for p in m.parameters()])

class StepSizes(Callback):
    def before_fit(self, learn): self.sizes = []
    def before_batch(self, learn): self.w = flat(learn.model)
    def after_batch(self, learn): self.sizes.append((flat(learn.model) - self.w).norm().item())

def test_float16_clip_sees_unscaled_gradients_and_clips_once():
    clip, raw, steps = GradClipCB(0.01), ScaledNorms(), StepSizes()
    rec = RecorderCB(grad_norm=clip.grad_norm)
    fit16(clip, raw, steps, rec)
    assert_close(torch.tensor(rec['grad_norm']) * 2**10, torch.tensor(raw.norms), rtol=1e-3, atol=0)
    assert min(rec['grad_norm']) > 0.01
    # plain SGD: a step clipped to norm c moves the weights by lr*c; clipping the scaled gradient would give lr*c/2**10
    assert_close(torch.tensor(steps.sizes), torch.full((6,), 0.5 * 0.01), rtol=1e-4, atol=0)

@pytest.mark.parametrize('clip', [GradClipCB(0.01), GradClipCB(max_value=0.01)])
def test_float16_inf_gradient_step_is_still_skipped(clip):
    class Poison(Callback):
        order = -4.5
        def after_backward(self, learn):
            if learn.iter == 2: next(learn.model.parameters()).grad[0, 0] = float('inf')
    steps = StepSizes()
    _, mp = fit16(Poison(), clip, steps)
    assert steps.sizes[2] == 0 and all(s > 0 for s in steps.sizes[:2] + steps.sizes[3:])
    assert mp.scaler.get_scale() == 2.**9

@pytest.mark.parametrize('kw, exc, msg', [
    (dict(), ValueError, 'give one of max_norm and max_value'),
    (dict(max_norm=1., max_value=1.), ValueError, 'give one of max_norm and max_value'),
    (dict(max_norm=0), ValueError, 'max_norm must be a number > 0'),
    (dict(max_norm=math.inf), ValueError, 'max_norm must be a number > 0'),
    (dict(max_norm=True), TypeError, 'max_norm must be a number > 0'),
    (dict(max_value=-0.1), ValueError, 'max_value must be a number > 0'),
    (dict(max_value='1'), TypeError, 'max_value must be a number > 0'),
    (dict(max_norm=1., norm_type=0), ValueError, 'norm_type must be a number > 0'),
    (dict(max_norm=1., norm_type='inf'), TypeError, 'norm_type must be a number > 0')])
def test_clip_bad_arguments(kw, exc, msg):
    with pytest.raises(exc, match=msg): GradClipCB(**kw)

# ---- EMA
def test_ema_equals_hand_computed_and_averaged_model_reference():
    data = batches(6, 16)
    ema, steps = EMACB(0.8, swap_at_end=False), AfterSteps()
    learn = Learner(mlp(bn=True), dls(data), lr=0.5, cbs=[ema, steps])
    learn.fit(2, valid=False)
    hand = steps.ws[0].clone()
    for w in steps.ws[1:]: hand = 0.8 * hand + 0.2 * w
    assert_close(flat(ema.avg.module), hand, rtol=1e-5, atol=1e-6)
    # the same run by hand with PyTorch's AveragedModel: equal bit for bit, buffers (BatchNorm statistics) included
    model = mlp(bn=True); ref = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.8), use_buffers=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(2):
        for x, y in data:
            F.cross_entropy(model(x), y).backward(); opt.step(); opt.zero_grad(); ref.update_parameters(model)
    assert same_state(ema.avg, ref) and same_state(learn.model, model)

def test_ema_updates_once_per_optimizer_step_with_accumulation():
    ema = EMACB(0.9)
    Learner(mlp(), dls(batches(8, 16)), lr=0.5, cbs=[GradAccumCB(4), ema]).fit(1, valid=False)
    assert int(ema.avg.n_averaged) == 2

def valid_loss(model, data):
    model.eval()
    with torch.no_grad(): return sum(F.cross_entropy(model(x), y, reduction='sum').item() for x, y in data) / sum(len(y) for _, y in data)

def test_ema_validates_the_average_and_leaves_training_unchanged():
    valid = batches(2, 16, seed=1)
    def run(*cbs):
        learn = Learner(mlp(bn=True), dls(batches(6, 16), valid), lr=0.5, cbs=[MetricsCB(), *cbs])
        learn.fit(2)
        return learn
    plain, ema = run(), EMACB(0.8, swap_at_end=False)
    avg = run(ema)
    assert same_state(plain.model, avg.model)                    # training unchanged
    assert [r['loss'] for r in plain.history if r['phase'] == 'train'] == [r['loss'] for r in avg.history if r['phase'] == 'train']
    assert avg.history[-1]['loss'] == pytest.approx(valid_loss(ema.avg.module, valid), rel=1e-6)
    assert avg.history[-1]['loss'] != plain.history[-1]['loss']
    assert avg.model is not ema.avg.module                       # learn.model is the trained model again

def test_ema_swap_at_end_copies_the_average_into_the_same_model_object():
    model = mlp(bn=True)
    learn = Learner(model, dls(batches(4, 16), batches(1, 16)), lr=0.5, cbs=[ema := EMACB(0.8)])
    learn.fit(1)
    assert learn.model is model and same_state(model, ema.avg.module)

def test_early_stopping_snapshots_the_validated_average():
    class Losses(Callback):   # validation losses that stop improving after epoch 0
        order = 0.5
        def after_epoch(self, learn):
            if not learn.training: learn.history[-1]['loss'] = [1., 2., 3., 4.][learn.epoch]
    es, ema = EarlyStoppingCB(patience=1), EMACB(0.8)
    learn = Learner(mlp(), dls(batches(4, 16), batches(1, 16)), lr=0.5, cbs=[MetricsCB(), Losses(), es, ema])
    snaps = []
    class Snap(Callback):
        order = 49
        def after_epoch(self, learn):
            if not learn.training: snaps.append(copy.deepcopy(learn.model.state_dict()))
    learn.fit(4, cbs=Snap())
    assert es.stopped_epoch == 1
    # EarlyStoppingCB restored what validation saw at epoch 0: the average then, not the trained weights
    assert all(torch.equal(a, b) for a, b in zip(learn.model.state_dict().values(), snaps[0].values()))

def test_ema_bad_decay():
    for d in (0, 1, 1.5, -0.1, True, '0.9'):
        with pytest.raises(ValueError, match=r'decay must be a number in \(0, 1\)'): EMACB(d)

def test_averaged_copy_leaves_out_a_compiled_forward():
    model = mlp()
    model.forward = lambda x: 'patched'      # what CompileCB does during a fit
    ema = EMACB(0.9)
    ema.before_fit(SimpleNamespace(model=model))
    assert 'forward' not in vars(ema.avg.module) and model(torch.zeros(1, 10)) == 'patched'

# ---- SWA and BatchNorm statistics
class EpochEnds(Callback):
    order = 60
    def before_fit(self, learn): self.ws, self.lrs = [], []
    def after_epoch(self, learn):
        if learn.training: self.ws.append(flat(learn.model)); self.lrs.append(learn.opt.param_groups[0]['lr'])

def test_swa_averages_epoch_ends_anneals_lr_and_recomputes_batchnorm():
    train = batches(6, 16)
    swa, ends = SWACB(2, 0.05, anneal_epochs=2, anneal_strategy='linear', swap_at_end=False), EpochEnds()
    Learner(mlp(bn=True), dls(train, batches(1, 16, seed=1)), lr=0.5, cbs=[swa, ends]).fit(6)
    assert int(swa.avg.n_averaged) == 4
    assert_close(flat(swa.avg.module), torch.stack(ends.ws[2:]).mean(0), rtol=1e-5, atol=1e-6)
    assert_close(torch.tensor(ends.lrs), torch.tensor([0.5, 0.5, 0.275, 0.05, 0.05, 0.05]), rtol=1e-6, atol=0)
    ref = copy.deepcopy(swa.avg.module); torch_update_bn(train, ref)
    for a, b in zip(swa.avg.module.buffers(), ref.buffers()): assert_close(a, b, rtol=1e-6, atol=1e-7)

def test_swa_before_start_epoch_validates_the_model_itself():
    valid = batches(1, 16, seed=1)
    plain = Learner(mlp(), dls(batches(4, 16), valid), cbs=MetricsCB()); plain.fit(3)
    learn = Learner(mlp(), dls(batches(4, 16), valid), cbs=[MetricsCB(), SWACB(1, 0.05, swap_at_end=False)]); learn.fit(3)
    # epoch 0: no average yet; epoch 1: an average of one point, the model itself; epoch 2: the mean of two
    assert learn.history[:4] == plain.history[:4] and learn.history[5] != plain.history[5]

def test_update_bn_matches_torch_and_covers_our_batchnorm():
    data = batches(5, 16)
    a = mlp(bn=True); b = copy.deepcopy(a)
    a[1].running_mean.fill_(float('nan'))      # stale statistics are reset, not averaged in
    update_bn(data, a); torch_update_bn(data, b)
    for x, y in zip(a.buffers(), b.buffers()): assert_close(x, y, rtol=1e-6, atol=1e-7)
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(10, 6), BatchNorm(6, momentum=0.3))
    update_bn(data, ours.train(False), n_batches=3)
    hs = [ours[0](x).detach() for x, _ in data[:3]]
    assert_close(ours[1].running_mean, torch.stack([h.mean(0) for h in hs]).mean(0), rtol=1e-5, atol=1e-6)
    assert_close(ours[1].running_var, torch.stack([h.var(0) for h in hs]).mean(0), rtol=1e-5, atol=1e-6)
    assert ours[1].momentum == 0.3 and not ours.training

@pytest.mark.parametrize('kw, exc, msg', [
    (dict(start_epoch=-1, swa_lr=0.1), ValueError, 'start_epoch must be an integer >= 0'),
    (dict(start_epoch=1.5, swa_lr=0.1), TypeError, 'start_epoch must be an integer >= 0'),
    (dict(start_epoch=1, swa_lr=0), ValueError, 'swa_lr must be a number > 0'),
    (dict(start_epoch=1, swa_lr=[0.1, -1]), ValueError, 'swa_lr must be a number > 0'),
    (dict(start_epoch=1, swa_lr=0.1, anneal_epochs=-1), ValueError, 'anneal_epochs must be an integer >= 0'),
    (dict(start_epoch=1, swa_lr=0.1, anneal_strategy='exp'), ValueError, "anneal_strategy must be 'cos' or 'linear'"),
    (dict(start_epoch=1, swa_lr=0.1, bn_batches=0), ValueError, 'bn_batches must be None or an integer >= 1')])
def test_swa_bad_arguments(kw, exc, msg):
    with pytest.raises(exc, match=msg): SWACB(**kw)

# ---- checkpoints

def run(make_avg, d, crash_at=None, seed=0, resume=None, every_n_steps=3):
    avg = make_avg()
    cbs = [MetricsCB(), avg, CheckpointCB(d, every_n_steps=every_n_steps)] + ([CrashAt(crash_at)] if crash_at else [])
    learn = Learner(mlp(seed, bn=True), dls(batches(8, 16), batches(2, 16, seed=1)), lr=0.05, opt_func=torch.optim.Adam, cbs=cbs)
    try: learn.fit(4, resume=resume)
    except Crash: pass
    return learn, avg

@pytest.mark.parametrize('make_avg', [lambda: EMACB(0.9), lambda: SWACB(1, 0.01), lambda: SWACB(2, 0.01, eval_avg=False)],
                         ids=['ema', 'swa', 'swa-no-eval'])
@pytest.mark.parametrize('crash_at', [12, 20, 24])   # mid-epoch before/after the SWA start, and at an epoch's end
def test_resume_with_averaging_is_exact(tmp_path, make_avg, crash_at):
    whole, wavg = run(make_avg, tmp_path/'a')
    run(make_avg, tmp_path/'b', crash_at=crash_at)
    resumed, ravg = run(make_avg, tmp_path/'b', seed=1, resume=True)
    assert same_state(whole.model, resumed.model) and same_state(wavg.avg, ravg.avg)
    assert whole.history == resumed.history

def test_averaging_state_is_a_plain_checkpoint_state(tmp_path):
    _, swa = run(lambda: SWACB(1, 0.01), tmp_path)
    from slowlearn.checkpoint import _check_plain
    _check_plain(swa.state_dict(), 'state')
    sd = swa.state_dict()
    assert set(sd) == {'avg', 'sched', 'stale'} and sd['sched']['_last_lr'] == [0.01]

# ---- profiler
def test_profiler_writes_a_chrome_trace_and_prints_a_table(tmp_path, capsys):
    prof = ProfilerCB(tmp_path/'run', wait=1, warmup=1, active=3, row_limit=5)
    Learner(mlp(), dls(batches(8, 16), batches(1, 16)), lr=0.1, opt_func=torch.optim.AdamW, cbs=prof).fit(1)
    trace = json.loads((tmp_path/'run'/'trace.json').read_text())
    names = {e.get('name') for e in trace['traceEvents']}
    assert {'forward', 'loss', 'backward', 'step', 'zero_grad'} <= names
    assert sum(n.startswith('ProfilerStep#') for n in names if n) == 3
    out = capsys.readouterr().out
    assert 'Name' in out and 'Self CPU' in out and prof.table in out
    assert (tmp_path/'run'/'ops.txt').read_text() == prof.table
    times = prof.phase_times()
    assert list(times) == ['forward', 'loss', 'backward', 'step', 'zero_grad'] and all(t > 0 for t in times.values())

def test_profiler_show_false_prints_nothing(tmp_path, capsys):
    prof = ProfilerCB(tmp_path, wait=0, warmup=1, active=2, show=False)
    Learner(mlp(), dls(batches(3, 16)), cbs=prof).fit(1, valid=False)
    assert capsys.readouterr().out == '' and 'Name' in prof.table and (tmp_path/'trace.json').exists()

def test_profiler_stops_after_its_active_steps(tmp_path):
    seen = []
    class Active(Callback):
        def before_batch(self, learn): seen.append(torch.autograd._profiler_enabled())
    prof = ProfilerCB(tmp_path, wait=0, warmup=1, active=2)
    Learner(mlp(), dls(batches(6, 16)), cbs=[prof, Active()]).fit(1, valid=False)
    assert seen[1:] == [True, True, False, False, False] and prof.prof is None   # batch 0 is the warm-up

def test_profiler_warns_when_the_fit_is_too_short(tmp_path):
    prof = ProfilerCB(tmp_path, wait=2, warmup=2, active=2)
    with pytest.warns(UserWarning, match='ended after 3 training batches'):
        Learner(mlp(), dls(batches(3, 16)), cbs=prof).fit(1, valid=False)
    assert prof.trace is None and not (tmp_path/'trace.json').exists()
    with pytest.raises(ValueError, match='no profile recorded'): prof.phase_times()

@pytest.mark.parametrize('kw, exc, msg', [(dict(wait=-1), ValueError, 'wait must be an integer >= 0'), (dict(active=0), ValueError, 'active must be an integer >= 1'),
                                          (dict(warmup=1.5), TypeError, 'warmup must be an integer >= 0'), (dict(row_limit=0), ValueError, 'row_limit must be an integer >= 1')])
def test_profiler_bad_arguments(kw, exc, msg):
    with pytest.raises(exc, match=msg): ProfilerCB(**kw)

# ---- MixUp and CutMix
from torch.distributions import Beta
from slowlearn.callbacks import MixUpCB, CutMixCB
import slowlearn.predict   # Learner.get_preds

class Seen(Callback):
    order = 1   # after the mix
    def before_fit(self, learn): self.xs, self.valid = [], []
    def after_loss(self, learn): (self.xs if learn.training else self.valid).append((learn.batch[0], learn.loss.item()))

@pytest.mark.parametrize('loss_func', [F.cross_entropy, nn.CrossEntropyLoss(label_smoothing=0.1)])
def test_mixup_step_equals_a_hand_blended_step_and_validation_is_plain(loss_func):
    train, valid = batches(1, 16), batches(2, 16, seed=1)
    learn = Learner(mlp(), dls(train, valid), loss_func=loss_func, lr=0.5, cbs=[MixUpCB(0.4), seen := Seen()]); learn.fit(1)
    (x, y), ref = train[0], mlp()   # mlp() seeds torch: the draws below are the callback's
    perm = torch.randperm(16); lam = Beta(torch.tensor(0.4), torch.tensor(0.4)).sample((16,)); lam = torch.maximum(lam, 1 - lam)
    pred = ref(lam[:, None]*x + (1 - lam[:, None])*x[perm])
    ce = lambda y: F.cross_entropy(pred, y, reduction='none', label_smoothing=getattr(loss_func, 'label_smoothing', 0.))
    (lam*ce(y) + (1 - lam)*ce(y[perm])).mean().backward(); torch.optim.SGD(ref.parameters(), lr=0.5).step()
    assert_close(flat(learn.model), flat(ref), rtol=1e-5, atol=1e-6)
    with torch.no_grad(): assert [l for _, l in seen.valid] == pytest.approx([loss_func(ref(xv), yv).item() for xv, yv in valid], rel=1e-5)
    assert learn.loss_func is loss_func and getattr(loss_func, 'reduction', 'mean') == 'mean'

def test_mix_callbacks_leave_get_preds_alone_and_restore_the_loss_after_a_crash():
    learn = Learner(mlp(), dls(batches(4, 16), batches(2, 16, seed=1)), lr=0.1, cbs=[MixUpCB(), CrashAt(2)])
    with pytest.raises(Crash): learn.fit(1)
    assert learn.loss_func is F.cross_entropy
    preds, targs = learn.get_preds(act=lambda o: o)
    with torch.no_grad(): assert_close(preds, learn.model.eval()(torch.cat([x for x, _ in batches(2, 16, seed=1)])))

def test_cutmix_pastes_one_rectangle_of_the_partner_and_weighs_the_losses_by_area():
    torch.manual_seed(1)
    x = torch.arange(8.).view(8, 1, 1, 1).expand(8, 1, 10, 10).contiguous(); y = torch.arange(8) % 3
    model = nn.Sequential(nn.Flatten(), nn.Linear(100, 3)); start = copy.deepcopy(model)
    learn = Learner(model, dls([(x, y)]), lr=0.1, cbs=[cm := CutMixCB(1.), seen := Seen()]); learn.fit(1, valid=False)
    xm, loss = seen.xs[0]
    own = (xm == x)                                                    # each image: its own value or its partner's
    assert torch.equal(xm[~own], x[cm.perm][~own]) and torch.equal(cm.y1, y[cm.perm])
    assert (own.float().mean((1, 2, 3)) == float(cm.lam)).all() and 0 < float(cm.lam) < 1
    rows, cols = (~own[0, 0]).any(1).nonzero(), (~own[0, 0]).any(0).nonzero()   # the pasted region is one rectangle
    assert (~own[0, 0]).sum() == (rows.max() - rows.min() + 1)*(cols.max() - cols.min() + 1)
    with torch.no_grad(): pred = start(xm)
    want = float(cm.lam)*F.cross_entropy(pred, y) + (1 - float(cm.lam))*F.cross_entropy(pred, cm.y1)
    assert loss == pytest.approx(want.item(), rel=1e-5)

def test_mix_callbacks_bad_alpha():
    for cls in (MixUpCB, CutMixCB):
        with pytest.raises(ValueError, match='alpha must be a number > 0'): cls(-1)
