"`MixedPrecisionCB` against float32 and hand-worked loss scaling, with gradient accumulation and checkpoints; `CompileCB` against eager."
import warnings
from types import SimpleNamespace
import pytest, torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close
from slowlearn.learner import Learner, Callback, CancelBatchException
from slowlearn.metrics import MetricsCB
from slowlearn.checkpoint import CheckpointCB
from slowlearn.optim import GradAccumCB
from slowlearn.speed import MixedPrecisionCB, CompileCB, amp_dtype
from slowlearn.core import compile_problem
from conftest import class_batches as batches

def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))

def dls(train, valid=()): return SimpleNamespace(train=list(train), valid=list(valid))

class GradNorms(Callback):
    "Record the global gradient norm in `after_backward`, at position `order`."
    def __init__(self, order): self.order,self.norms = order,[]
    def after_backward(self, learn):
        self.norms.append(torch.cat([p.grad.flatten() for p in learn.model.parameters()]).norm().item())

def ref_grad_norm(model, xb, yb):
    "Float32 gradient norm of the mean cross-entropy, computed without any callback."
    model.zero_grad()
    F.cross_entropy(model(xb), yb).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()

# ---- dtype selection
def test_amp_dtype_defaults_bf16_on_cpu_fp16_on_cuda():
    assert amp_dtype('cpu') is torch.bfloat16 and amp_dtype('mps') is torch.bfloat16
    assert amp_dtype('cuda') is torch.float16
    assert amp_dtype('cuda', torch.bfloat16) is torch.bfloat16

def test_bad_dtype_is_rejected():
    with pytest.raises(ValueError, match='dtype must be None, torch.float16 or torch.bfloat16'): MixedPrecisionCB(torch.float64)

def test_cpu_fit_uses_bf16_without_a_scaler():
    mp = MixedPrecisionCB()
    Learner(mlp(), dls(batches(2, 16))).fit(1, valid=False, cbs=mp)
    assert mp.amp_dtype is torch.bfloat16 and not mp.scaler.is_enabled()
    assert mp.state_dict() == {'scaler': {}}

# ---- numerics
def test_bf16_loss_close_to_fp32():
    valid = batches(4, 64, seed=1)
    def loss(*cbs):
        learn = Learner(mlp(), dls([], valid), cbs=[MetricsCB(), *cbs])
        learn.fit(1, train=False)
        return learn.history[0]['loss']
    l32, l16 = loss(), loss(MixedPrecisionCB())
    with torch.no_grad():
        m = mlp(); ref = sum(F.cross_entropy(m(x), y, reduction='sum').item() for x, y in valid) / 256
    assert l32 == pytest.approx(ref, rel=1e-6)
    assert l16 == pytest.approx(ref, rel=2e-2) and l16 != l32   # close, but really computed in bfloat16

def test_forward_runs_in_bf16_and_autocast_is_left_after_each_batch():
    seen = []
    class Spy(Callback):
        def after_predict(self, learn): seen.append((learn.preds.dtype, torch.is_autocast_enabled('cpu')))
        def after_batch(self, learn): seen.append(torch.is_autocast_enabled('cpu'))
    Learner(mlp(), dls(batches(2, 8), batches(1, 8))).fit(1, cbs=[MixedPrecisionCB(), Spy()])
    assert seen == [(torch.bfloat16, True), False] * 3
    assert not torch.is_autocast_enabled('cpu')

def test_autocast_is_left_when_a_batch_is_cancelled():
    class Cancel(Callback):
        def after_predict(self, learn): raise CancelBatchException()
    Learner(mlp(), dls(batches(2, 8))).fit(1, valid=False, cbs=[MixedPrecisionCB(), Cancel()])
    assert not torch.is_autocast_enabled('cpu')

def test_fit_with_mixed_precision_trains():
    train, valid = batches(30, 32), batches(4, 64, seed=1)
    learn = Learner(mlp(), dls(train, valid), lr=0.2, cbs=[MetricsCB(), MixedPrecisionCB()])
    learn.fit(3)
    first, last = learn.history[0]['loss'], learn.history[-1]['loss']
    assert last < 0.5 * first, (first, last)

# ---- float16 + GradScaler (the CUDA path, on the CPU)
def fit16(train, *cbs, init_scale=2.**10, lr=0.1, model=None, **kw):
    mp = MixedPrecisionCB(torch.float16, init_scale=init_scale)
    learn = Learner(model or mlp(), dls(train), lr=lr, cbs=[mp, *cbs])
    learn.fit(1, valid=False, **kw)
    return learn, mp

def test_fp16_backward_is_scaled_and_later_callbacks_see_unscaled_grads():
    raw, seen = GradNorms(-4.5), GradNorms(0)
    train = batches(1, 32)
    learn, mp = fit16(train, raw, seen, lr=0.)
    ref = ref_grad_norm(mlp(), *train[0])
    assert raw.norms[0] == pytest.approx(2.**10 * ref, rel=1e-2)
    assert seen.norms[0] == pytest.approx(ref, rel=1e-2)

def test_fp16_inf_gradient_skips_step_and_halves_scale():
    class Poison(Callback):
        order = -4.5
        def after_backward(self, learn):
            if learn.iter == 1: next(learn.model.parameters()).grad[0, 0] = float('nan')
    w = []
    class Weights(Callback):
        def after_batch(self, learn): w.append([p.detach().clone() for p in learn.model.parameters()])
    learn, mp = fit16(batches(3, 16), Poison(), Weights())
    assert all(torch.equal(a, b) for a, b in zip(w[0], w[1]))          # batch 1: no step
    assert not all(torch.equal(a, b) for a, b in zip(w[1], w[2]))      # batch 2: a step
    assert mp.scaler.get_scale() == 2.**9

def test_fp16_with_grad_accumulation_unscales_once_per_step_and_matches_large_batches():
    small, big = batches(4, 8), batches(2, 16)   # the same 32 samples
    seen = GradNorms(0)
    calls = []
    class CountUnscale(Callback):
        order = -3
        def before_fit(self, learn):
            sc = learn.cbs[0].scaler; f = sc.unscale_
            sc.unscale_ = lambda opt: calls.append(learn.iter) or f(opt)
    acc, _ = fit16(small, GradAccumCB(2), seen, CountUnscale())
    ref, _ = fit16(big)
    assert calls == [1, 3] and len(seen.norms) == 2
    for a, b in zip(acc.model.parameters(), ref.model.parameters()): assert_close(a, b, rtol=1e-3, atol=1e-4)
    # the first step's unscaled, accumulated gradient is the float32 gradient of the mean loss over 16 samples
    xb = torch.cat([small[0][0], small[1][0]]); yb = torch.cat([small[0][1], small[1][1]])
    assert seen.norms[0] == pytest.approx(ref_grad_norm(mlp(), xb, yb), rel=1e-2)

def test_scaler_state_round_trips_through_state_dict():
    class Poison(Callback):
        order = -4.5
        def after_backward(self, learn): next(learn.model.parameters()).grad[0, 0] = float('inf')
    _, mp = fit16(batches(2, 8), Poison())
    sd = mp.state_dict()
    assert sd['scaler']['scale'] == 2.**8
    mp2 = MixedPrecisionCB(torch.float16, init_scale=2.**10)
    mp2.load_state_dict(sd)                        # before any fit: kept until the scaler exists
    assert mp2.state_dict() == sd
    Learner(mlp(), dls([]), cbs=mp2).fit(1, train=False, valid=False)
    assert mp2.scaler.get_scale() == 2.**8

def test_resumed_checkpoint_restores_the_loss_scale(tmp_path):
    class Poison(Callback):
        order = -4.5
        def after_backward(self, learn):
            if learn.iter == 0: next(learn.model.parameters()).grad[0, 0] = float('inf')
    learn, mp = fit16(batches(3, 8), Poison(), CheckpointCB(tmp_path))
    assert mp.scaler.get_scale() == 2.**9
    mp2 = MixedPrecisionCB(torch.float16, init_scale=2.**10)
    Learner(mlp(), dls(batches(3, 8)), lr=0.1, cbs=[mp2, CheckpointCB(tmp_path)]).fit(1, valid=False, resume=True)
    assert mp2.scaler.get_scale() == 2.**9

def test_empty_scaler_state_into_fp16_warns_and_starts_fresh():
    mp = MixedPrecisionCB(torch.float16, init_scale=2.**5)
    mp.load_state_dict({'scaler': {}})
    with pytest.warns(UserWarning, match='loss scale starts afresh'):
        Learner(mlp(), dls([]), cbs=mp).fit(1, train=False, valid=False)
    assert mp.scaler.get_scale() == 2.**5

# ---- CompileCB
class LastPreds(Callback):
    order = 10
    def after_predict(self, learn): self.x,self.preds = learn.batch[0],learn.preds.detach()

def counting_backend(calls):
    def backend(gm, example_inputs): calls.append(len(gm.graph.nodes)); return gm.forward
    return backend

def test_compiled_outputs_equal_eager():
    model, last = mlp(), LastPreds()
    cc = CompileCB(backend='aot_eager')
    Learner(model, dls(batches(3, 16), batches(1, 16, seed=1)), cbs=[cc, last]).fit(1)
    assert cc.failed is None
    with torch.no_grad(): assert_close(model(last.x), last.preds, rtol=1e-6, atol=1e-6)

def test_compile_is_used_and_model_is_left_unchanged():
    calls, model = [], mlp()
    keys = list(model.state_dict())
    Learner(model, dls(batches(2, 16))).fit(1, valid=False, cbs=CompileCB(backend=counting_backend(calls)))
    assert calls                                   # the backend compiled a graph
    assert 'forward' not in vars(model) and list(model.state_dict()) == keys

def test_failing_backend_warns_once_and_trains_eagerly():
    def broken(gm, example_inputs): raise RuntimeError('no code generator here')
    model, ref, last = mlp(), mlp(), LastPreds()
    train = batches(3, 16)
    with pytest.warns(UserWarning, match='CompileCB: compiling failed .*no code generator here.*eagerly') as ws:
        Learner(model, dls(train), lr=0.1, cbs=[CompileCB(backend=broken), last]).fit(1, valid=False)
    assert sum('CompileCB' in str(w.message) for w in ws) == 1
    Learner(ref, dls(train), lr=0.1).fit(1, valid=False)
    for a, b in zip(model.parameters(), ref.parameters()): assert torch.equal(a, b)

def test_error_in_the_model_itself_is_raised_not_hidden():
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(16, 3))   # wrong input size
    with pytest.raises(RuntimeError, match='shapes cannot be multiplied'):
        Learner(model, dls(batches(1, 4))).fit(1, valid=False, cbs=CompileCB(backend='aot_eager'))
    assert 'forward' not in vars(model)

def test_unavailable_compile_warns_and_runs_eagerly(monkeypatch):
    import torch._dynamo
    monkeypatch.setattr(torch._dynamo, 'is_dynamo_supported', lambda: False)
    assert 'does not support Python' in compile_problem('cpu')
    with pytest.warns(UserWarning, match='CompileCB: torch.compile does not support'):
        Learner(mlp(), dls(batches(1, 4))).fit(1, valid=False, cbs=CompileCB())

def test_bad_backend_type_is_rejected():
    with pytest.raises(TypeError, match='backend must be'): CompileCB(backend=3)

def test_learner_compile_adds_one_compile_cb_and_compiles_the_forward():
    from slowlearn.speed import Learner as L2   # the patched class is the learner module's own
    assert L2 is Learner
    calls, model, last = [], mlp(), LastPreds()
    learn = Learner(model, dls(batches(2, 16), batches(1, 16, seed=1)), cbs=last)
    assert learn.compile(backend='aot_eager') is learn
    learn.compile(backend=counting_backend(calls))   # replaces the first
    ccs = [c for c in learn.cbs if isinstance(c, CompileCB)]
    assert len(ccs) == 1 and ccs[0].kwargs['backend'] != 'aot_eager'
    learn.fit(1)
    assert calls and ccs[0].failed is None and 'forward' not in vars(model)
    with torch.no_grad(): assert_close(model(last.x), last.preds, rtol=1e-6, atol=1e-6)

def test_learner_compile_rejects_a_bad_backend():
    with pytest.raises(TypeError, match='backend must be'): Learner(mlp(), dls(batches(1, 4))).compile(backend=3)
