"Our optimizers with `compile=True`: the same update through torch.compile, no recompiles as hyperparameters change, eager fallback."
import copy, warnings
from functools import partial
import pytest, torch
import torch._dynamo
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler
from torch.testing import assert_close
from slowlearn.optim import SGD, Momentum, RMSProp, Adam, AdamW
from test_optim import small_model, groups, batches, run_same_grads, assert_params_close, BODY_A, HEAD_A

torch.set_num_threads(1)  # tiny tensors: a second thread only adds overhead

COMPILED = {
    'sgd': partial(SGD, lr=0.05, weight_decay=1e-3),
    'sgd_decoupled': partial(SGD, lr=0.05, weight_decay=1e-2, decoupled_wd=True),
    'momentum': partial(Momentum, lr=0.05, weight_decay=1e-3),
    'momentum_dampening': partial(Momentum, lr=0.05, dampening=True),
    'rmsprop': partial(RMSProp, lr=1e-3, weight_decay=1e-2),
    'rmsprop_init_eps_in_sqrt': partial(RMSProp, lr=1e-3, init_from_grad=True, eps_in_sqrt=True),
    'adam': partial(Adam, weight_decay=1e-2),
    'adam_eps_in_sqrt': partial(Adam, eps_in_sqrt=True),
    'adamw': AdamW,
}

def compiled_and_eager(make, n_steps=12, backend='aot_eager', sched=True):
    "Run `make(..., compile=...)` and `make(...)` on two copies with the same gradients; return models, optimizers, graphs per step."
    torch._dynamo.reset(); torch._dynamo.utils.counters.clear()
    m1 = small_model(); m2 = copy.deepcopy(m1)
    o1, o2 = make(groups(m1, BODY_A, HEAD_A), compile=dict(backend=backend)), make(groups(m2, BODY_A, HEAD_A))
    cycle = 'momentum' in o1.defaults or 'betas' in o1.defaults
    scheds = [lr_scheduler.OneCycleLR(o, max_lr=[2e-3, 5e-3], total_steps=n_steps, cycle_momentum=cycle) for o in (o1, o2)] if sched else []
    graphs = []
    for x, y in batches(n_steps):
        F.cross_entropy(m1(x), y).backward()
        for a, b in zip(m1.parameters(), m2.parameters()): b.grad = a.grad.clone()
        o1.step(); o2.step(); o1.zero_grad(); o2.zero_grad()
        for s in scheds: s.step()
        graphs.append(torch._dynamo.utils.counters['stats']['unique_graphs'])
    return (m1, m2), (o1, o2), graphs

def assert_close_to_scale(m1, m2, rtol=1e-6):
    "Each tensor within `rtol` of its twin, relative to the element or (near zero) to the tensor's largest magnitude."
    for a, b in zip(m1.parameters(), m2.parameters()): assert_close(a, b, rtol=rtol, atol=rtol * b.abs().max().item())

@pytest.mark.parametrize('name', list(COMPILED))
def test_compiled_step_matches_eager(name):
    (m1, m2), _, _ = compiled_and_eager(COMPILED[name])
    assert_close_to_scale(m1, m2)

@pytest.mark.parametrize('name', ['sgd', 'momentum', 'rmsprop_init_eps_in_sqrt', 'adamw'])
def test_compiled_step_does_not_recompile_as_lr_and_step_change(name):
    _, (o1, _), graphs = compiled_and_eager(COMPILED[name])
    assert o1.param_groups[0]['lr'] != 2e-3 / 25   # the schedule moved lr
    assert graphs[-1] == graphs[2]                  # no new graph after the first steps
    assert graphs[-1] <= 2 * len(o1.param_groups)   # one per group (two for RMSProp's first step)

def test_compiled_step_does_not_recompile_as_weight_decay_lr_and_step_change_every_step():
    "A schedule of weight decay too: the decay factor is a 0-d tensor like the lr, so the first graph serves every step."
    torch._dynamo.reset(); torch._dynamo.utils.counters.clear()
    m1 = small_model(); m2 = copy.deepcopy(m1)
    o1, o2 = AdamW(m1.parameters(), compile=dict(backend='aot_eager')), AdamW(m2.parameters())
    graphs = []
    for i, (x, y) in enumerate(batches(8)):
        for o in (o1, o2): o.param_groups[0].update(lr=1e-3 * (i + 1), weight_decay=0.01 * (i + 1))
        F.cross_entropy(m1(x), y).backward()
        for a, b in zip(m1.parameters(), m2.parameters()): b.grad = a.grad.clone()
        o1.step(); o2.step(); o1.zero_grad(); o2.zero_grad()
        graphs.append(torch._dynamo.utils.counters['stats']['unique_graphs'])
    assert graphs == [graphs[0]] * len(graphs) and graphs[0] >= 1
    assert_close_to_scale(m1, m2)

def test_compiled_state_dict_is_the_eager_one():
    _, (o1, o2), _ = compiled_and_eager(AdamW, sched=False)
    sd1, sd2 = o1.state_dict(), o2.state_dict()
    assert sd1['param_groups'] == sd2['param_groups']
    for k, st in sd2['state'].items():
        assert sd1['state'][k].keys() == st.keys() and sd1['state'][k]['step'] == st['step']
        for n in ('exp_avg', 'exp_avg_sq'): assert_close(sd1['state'][k][n], st[n], rtol=1e-6, atol=1e-12)
    o3 = AdamW(groups(small_model())); o3.load_state_dict(sd1)   # loads into an eager optimizer
    assert o3.state_dict()['param_groups'] == sd2['param_groups']

def test_compiled_step_with_inductor_matches_eager():
    "The real code generator (needs a C++ compiler): a two-tensor model, a few seconds to compile."
    from slowlearn.core import compile_problem
    if compile_problem('cpu', 'inductor'): pytest.skip(compile_problem('cpu', 'inductor'))
    torch._dynamo.reset()
    torch.manual_seed(0)
    w1 = nn.Linear(8, 4); w2 = copy.deepcopy(w1)
    o1, o2 = AdamW(w1.parameters(), lr=1e-2, compile=True), AdamW(w2.parameters(), lr=1e-2)
    for i in range(10):
        x = torch.randn(16, 8); w1(x).pow(2).mean().backward()
        for a, b in zip(w1.parameters(), w2.parameters()): b.grad = a.grad.clone()
        o1.step(); o2.step(); o1.zero_grad(); o2.zero_grad()
    assert o1._compiled.compiled is not None and o1._compiled.failed is None
    assert_close_to_scale(w1, w2)

def test_compiled_step_matches_torch_when_parameters_are_at_different_steps():
    "A parameter that gets its first gradient later has a smaller step count than the rest of its group: two compiled runs, torch's AdamW results."
    torch._dynamo.reset()
    m1 = small_model(); m2 = copy.deepcopy(m1)
    o1, o2 = AdamW(m1.parameters(), lr=1e-2, compile=dict(backend='aot_eager')), torch.optim.AdamW(m2.parameters(), lr=1e-2)
    late = [n for n, _ in m1.named_parameters()][-1]
    for i, (x, y) in enumerate(batches(8)):
        F.cross_entropy(m1(x), y).backward()
        for (n, a), b in zip(m1.named_parameters(), m2.parameters()):
            if n == late and i < 3: a.grad = None   # no gradient yet: not stepped
            b.grad = None if a.grad is None else a.grad.clone()
        o1.step(); o2.step(); o1.zero_grad(); o2.zero_grad()
    steps = {o1.state[p]['step'] for p in m1.parameters()}
    assert steps == {8, 5}
    assert_close_to_scale(m1, m2)

def test_compile_unavailable_warns_once_and_steps_eagerly(monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, 'which', lambda c: None)   # no C++ compiler for Inductor
    m1 = small_model(); m2 = copy.deepcopy(m1)
    o1, o2 = Adam(m1.parameters(), compile=True), Adam(m2.parameters())
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        run_same_grads(o1, o2, m1, m2, n_steps=5)
    assert len(ws) == 1 and 'Adam(compile=True)' in str(ws[0].message) and 'C++ compiler' in str(ws[0].message)
    assert_params_close(m1, m2, rtol=0, atol=0)

def test_failing_backend_warns_once_and_steps_eagerly():
    def broken(gm, example_inputs): raise RuntimeError("no code generator here")
    m1 = small_model(); m2 = copy.deepcopy(m1)
    o1, o2 = Momentum(m1.parameters(), lr=0.05, compile=dict(backend=broken)), Momentum(m2.parameters(), lr=0.05)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        run_same_grads(o1, o2, m1, m2, n_steps=5)
    assert len(ws) == 1 and 'compiling failed' in str(ws[0].message)
    assert_params_close(m1, m2, rtol=0, atol=0)

def test_compile_switch_survives_copies_and_rejects_bad_values():
    opt = SGD(small_model().parameters(), compile=dict(backend='aot_eager'))
    assert copy.deepcopy(opt).compile == dict(backend='aot_eager')
    assert 'compile' not in opt.state_dict()['param_groups'][0]
    with pytest.raises(TypeError, match='compile must be True, False or a dict'): SGD(small_model().parameters(), compile='yes')

# The optimizers lesson's exercises and its gradient accumulation section, checked on the library.
