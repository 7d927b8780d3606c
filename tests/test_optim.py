"Our optimizers against torch.optim (same gradients, 1e-6 relative), checkpoints, schedulers and bad input."
import copy, io
from functools import partial
from types import SimpleNamespace
import pytest, torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler
from torch.testing import assert_close
from slowlearn.optim import SGD, Momentum, RMSProp, Adam, AdamW, MomentumCB, MultiTensorOptimizer, weight_decay_groups

torch.set_num_threads(1)  # tiny tensors: a second thread only adds overhead

def small_model(seed=0):
    "A conv + BatchNorm + linear + LayerNorm model: 4 weight kinds, 8 tensors."
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(36, 10), nn.LayerNorm(10))

def groups(model, body=None, head=None):
    "Two param groups (conv+BN, linear+LN) with their own hyperparameters."
    ps = list(model.parameters())
    return [dict(params=ps[:4], **(body or {})), dict(params=ps[4:], **(head or {}))]

def batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 1, 7, 7, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(n)]

def run_same_grads(ours, ref, m1, m2, n_steps=100, drop=None):
    "Step `ours` on `m1` and `ref` on `m2` with the gradients computed on `m1`; `drop(i, k)` sets grad k to None."
    for i, (x, y) in enumerate(batches(n_steps)):
        F.cross_entropy(m1(x), y).backward()
        for k, (a, b) in enumerate(zip(m1.parameters(), m2.parameters())):
            if drop is not None and drop(i, k): a.grad = None
            b.grad = None if a.grad is None else a.grad.clone()
        ours.step(); ref.step(); ours.zero_grad(); ref.zero_grad()

def assert_params_close(m1, m2, rtol=1e-6, atol=0.):
    for a, b in zip(m1.parameters(), m2.parameters()): assert_close(a, b, rtol=rtol, atol=atol)

BODY, HEAD = dict(lr=0.1, weight_decay=1e-3), dict(lr=0.02, weight_decay=0.1)
BODY_A, HEAD_A = dict(lr=1e-3, weight_decay=1e-2), dict(lr=3e-3, weight_decay=0.1)
CASES = {
    'sgd': (partial(SGD, lr=0.05), partial(torch.optim.SGD, lr=0.05), BODY, HEAD),
    'sgd_no_wd': (partial(SGD, lr=0.05), partial(torch.optim.SGD, lr=0.05), {}, {}),
    'momentum': (partial(Momentum, lr=0.05), partial(torch.optim.SGD, lr=0.05, momentum=0.9), BODY, dict(HEAD, momentum=0.7)),
    'rmsprop': (partial(RMSProp, lr=1e-3, alpha=0.9, eps=1e-6), partial(torch.optim.RMSprop, lr=1e-3, alpha=0.9, eps=1e-6), BODY_A, HEAD_A),
    'rmsprop_defaults': (RMSProp, torch.optim.RMSprop, {}, {}),
    'adam': (Adam, torch.optim.Adam, {}, {}),
    'adam_l2': (Adam, torch.optim.Adam, BODY_A, HEAD_A),
    'adam_betas': (partial(Adam, betas=(0.8, 0.99), eps=1e-6), partial(torch.optim.Adam, betas=(0.8, 0.99), eps=1e-6), BODY_A, dict(HEAD_A, betas=(0.5, 0.9))),
    'adamw': (AdamW, torch.optim.AdamW, BODY_A, HEAD_A),
    'adamw_default_wd': (AdamW, torch.optim.AdamW, {}, {}),
    'adam_decoupled_is_adamw': (partial(Adam, decoupled_wd=True), torch.optim.AdamW, BODY_A, HEAD_A),
}

@pytest.mark.parametrize('chunk_numel', [None, 50], ids=['one_chunk', 'many_chunks'])
@pytest.mark.parametrize('case', list(CASES))
def test_matches_torch_optim(case, chunk_numel):
    make_ours, make_ref, body, head = CASES[case]
    m1 = small_model(); m2 = copy.deepcopy(m1)
    ours, ref = make_ours(groups(m1, body, head)), make_ref(groups(m2, body, head))
    if chunk_numel: ours.chunk_numel = chunk_numel
    run_same_grads(ours, ref, m1, m2)
    assert_params_close(m1, m2)
    for a, b in zip(m1.parameters(), m2.parameters()):  # same state names as torch.optim, same values
        for k, v in ref.state[b].items():
            if k != 'step' and v is not None: assert_close(ours.state[a][k], v, rtol=1e-6, atol=0.)

def test_params_without_grad_are_skipped():
    "Grads set to None on some steps: those params keep their value and step count, as in torch.optim.Adam."
    m1 = small_model(); m2 = copy.deepcopy(m1)
    ours, ref = Adam(groups(m1, BODY_A, HEAD_A)), torch.optim.Adam(groups(m2, BODY_A, HEAD_A))
    frozen = copy.deepcopy(list(m1.parameters())[2])
    drop = lambda i, k: k == 2 or (k >= 4 and i % 3 == 0)  # param 2 never has a grad; the head every 3rd step
    run_same_grads(ours, ref, m1, m2, n_steps=30, drop=drop)
    assert_params_close(m1, m2)
    ps = list(m1.parameters())
    assert torch.equal(ps[2], frozen) and ps[2] not in ours.state
    assert ours.state[ps[0]]['step'] == 30 and ours.state[ps[4]]['step'] == 20

def test_sgd_decoupled_weight_decay_equals_l2():
    "For plain SGD, (1 - lr*wd) * p - lr*g is the same update as p - lr*(g + wd*p)."
    m1 = small_model(); m2 = copy.deepcopy(m1)
    ours = SGD(groups(m1, BODY, HEAD), decoupled_wd=True)
    run_same_grads(ours, torch.optim.SGD(groups(m2, BODY, HEAD)), m1, m2)
    assert_params_close(m1, m2, rtol=1e-5, atol=1e-7)

def test_l2_and_decoupled_differ_for_adam():
    m1 = small_model(); m2 = copy.deepcopy(m1)
    run_same_grads(Adam(groups(m1, BODY_A, HEAD_A)), Adam(groups(m2, BODY_A, HEAD_A), decoupled_wd=True), m1, m2, n_steps=20)
    assert any((a - b).abs().max() > 1e-4 for a, b in zip(m1.parameters(), m2.parameters()))

# The lesson's variants, against the formulas written out per tensor in float64.
def formula_run(opt_func, ref_step, n_steps=50):
    "Step random params with random grads through `opt_func` and through `ref_step(p, g, state, t)`."
    torch.manual_seed(0)
    ps = [nn.Parameter(torch.randn(s)) for s in [(5, 4), (4,), (3, 2, 2)]]
    ref = [p.detach().double().clone() for p in ps]
    opt, states = opt_func(ps), [{} for _ in ps]
    for t in range(1, n_steps + 1):
        for p, r, st in zip(ps, ref, states):
            p.grad = torch.randn_like(p) * 0.1
            ref_step(r, p.grad.double(), st, t)
        opt.step()
    for p, r in zip(ps, ref): assert_close(p.detach().double(), r, rtol=1e-5, atol=1e-6)

def test_dampened_momentum_is_moving_average():
    def ref(p, g, st, t):
        st['b'] = 0.9 * st.get('b', 0.) + 0.1 * g
        p -= 0.1 * st['b']
    formula_run(partial(Momentum, lr=0.1, momentum=0.9, dampening=True), ref)

def test_rmsprop_init_from_grad():
    def ref(p, g, st, t):
        st['s'] = 0.99 * st.get('s', g * g) + 0.01 * g * g
        p -= 0.01 * g / (st['s'].sqrt() + 1e-8)
    formula_run(partial(RMSProp, lr=0.01, init_from_grad=True), ref)

def test_rmsprop_first_step_with_init_from_grad_is_lr_times_sign():
    p = nn.Parameter(torch.zeros(100)); p.grad = torch.randn(100)
    RMSProp([p], lr=0.01, init_from_grad=True).step()
    assert_close(p.detach(), -0.01 * p.grad.sign(), rtol=1e-5, atol=0.)

def test_rmsprop_eps_in_sqrt():
    def ref(p, g, st, t):
        st['s'] = 0.99 * st.get('s', 0.) + 0.01 * g * g
        p -= 0.01 * g / (st['s'] + 1e-4).sqrt()
    formula_run(partial(RMSProp, lr=0.01, eps=1e-4, eps_in_sqrt=True), ref)

def test_adam_eps_in_sqrt():
    def ref(p, g, st, t):
        st['m'] = 0.9 * st.get('m', 0.) + 0.1 * g
        st['v'] = 0.99 * st.get('v', 0.) + 0.01 * g * g
        p -= 0.01 * (st['m'] / (1 - 0.9**t)) / (st['v'] / (1 - 0.99**t) + 1e-5).sqrt()
    formula_run(partial(Adam, lr=0.01, betas=(0.9, 0.99), eps=1e-5, eps_in_sqrt=True), ref)

def test_adam_with_decoupled_wd_formula():
    def ref(p, g, st, t):
        p *= 1 - 0.01 * 0.1
        st['m'] = 0.9 * st.get('m', 0.) + 0.1 * g
        st['v'] = 0.999 * st.get('v', 0.) + 0.001 * g * g
        p -= 0.01 * (st['m'] / (1 - 0.9**t)) / ((st['v'] / (1 - 0.999**t)).sqrt() + 1e-8)
    formula_run(partial(AdamW, lr=0.01, weight_decay=0.1), ref)

# Checkpoints: 10 steps, save, load into a fresh optimizer over a copy of the model, 10 more == 20 straight.
ALL = dict(sgd=partial(SGD, lr=0.05, weight_decay=1e-2), momentum=partial(Momentum, lr=0.05, weight_decay=1e-2),
           momentum_dampened=partial(Momentum, lr=0.05, dampening=True), rmsprop=partial(RMSProp, lr=1e-3, init_from_grad=True),
           adam=partial(Adam, weight_decay=1e-2), adamw=AdamW)

def fit(model, opt, bs):
    for x, y in bs: F.cross_entropy(model(x), y).backward(); opt.step(); opt.zero_grad()

@pytest.mark.parametrize('name', list(ALL))
def test_checkpoint_resume_is_bit_exact(name):
    make, bs = ALL[name], batches(20)
    m20 = small_model(); o20 = make(groups(m20, head=dict(lr=2e-3))); fit(m20, o20, bs)
    m10 = small_model(); o10 = make(groups(m10, head=dict(lr=2e-3))); fit(m10, o10, bs[:10])
    buf = io.BytesIO(); torch.save(o10.state_dict(), buf); buf.seek(0)
    m = copy.deepcopy(m10); o = make(groups(m)); o.load_state_dict(torch.load(buf))
    assert o.param_groups[1]['lr'] == 2e-3  # the hyperparameters came from the checkpoint
    fit(m, o, bs[10:])
    for a, b in zip(m.parameters(), m20.parameters()): assert torch.equal(a, b)
    for a, b in zip(m.parameters(), m20.parameters()):
        for k, v in o20.state[b].items(): assert torch.equal(o.state[a][k], v) if torch.is_tensor(v) else o.state[a][k] == v

# PyTorch's schedulers drive our optimizers unchanged.
def run_sched(make_sched, ours, ref, m1, m2, n_steps=60):
    s1, s2 = make_sched(ours), make_sched(ref)
    hist = []
    for x, y in batches(n_steps):
        F.cross_entropy(m1(x), y).backward()
        for a, b in zip(m1.parameters(), m2.parameters()): b.grad = a.grad.clone()
        ours.step(); ref.step(); ours.zero_grad(); ref.zero_grad(); s1.step(); s2.step()
        hist.append(([dict((k, v) for k, v in g.items() if k != 'params') for g in ours.param_groups],
                     [dict((k, v) for k, v in g.items() if k != 'params') for g in ref.param_groups]))
    return hist

SCHED = {
    'momentum': (partial(Momentum, lr=0.05), partial(torch.optim.SGD, lr=0.05, momentum=0.9), 'momentum'),
    'adam': (Adam, torch.optim.Adam, 'betas'),
    'adamw': (AdamW, torch.optim.AdamW, 'betas'),
}

@pytest.mark.parametrize('name', list(SCHED))
def test_one_cycle_cycles_lr_and_momentum(name):
    make_ours, make_ref, key = SCHED[name]
    m1 = small_model(); m2 = copy.deepcopy(m1)
    ours, ref = make_ours(groups(m1)), make_ref(groups(m2))
    hist = run_sched(partial(lr_scheduler.OneCycleLR, max_lr=[0.05, 0.01], total_steps=60, cycle_momentum=True), ours, ref, m1, m2)
    for g1, g2 in hist:
        for a, b in zip(g1, g2): assert a['lr'] == b['lr'] and a[key] == b[key]
    moms = [g1[0][key] if key == 'momentum' else g1[0][key][0] for g1, _ in hist]
    assert min(moms) < 0.86 and max(moms) > 0.94  # really cycled between base_momentum and max_momentum
    assert_params_close(m1, m2)

@pytest.mark.parametrize('name', list(SCHED))
def test_cosine_annealing(name):
    make_ours, make_ref, _ = SCHED[name]
    m1 = small_model(); m2 = copy.deepcopy(m1)
    ours, ref = make_ours(groups(m1)), make_ref(groups(m2))
    hist = run_sched(partial(lr_scheduler.CosineAnnealingLR, T_max=40), ours, ref, m1, m2)
    assert [g1[0]['lr'] for g1, _ in hist] == [g2[0]['lr'] for _, g2 in hist]
    assert_params_close(m1, m2)

def test_one_cycle_momentum_needs_a_momentum_key():
    "SGD and RMSProp have no momentum to cycle: PyTorch's scheduler says so."
    with pytest.raises(ValueError, match='momentum'): lr_scheduler.OneCycleLR(SGD(small_model().parameters()), 0.1, total_steps=10)

# The Optimizer machinery.
def test_closure_add_param_group_and_zero_grad():
    model, extra = small_model(), nn.Parameter(torch.ones(3))
    opt = Adam(model.parameters(), lr=1e-2)
    opt.add_param_group(dict(params=[extra], lr=0.5))
    assert opt.param_groups[1]['betas'] == (0.9, 0.999) and opt.param_groups[1]['lr'] == 0.5
    x, y = batches(1)[0]
    def closure():
        opt.zero_grad(); loss = F.cross_entropy(model(x), y) + extra.sum(); loss.backward(); return loss
    loss = opt.step(closure)
    assert torch.is_tensor(loss) and loss.item() > 0
    assert_close(extra.detach(), torch.full((3,), 0.5))  # first Adam step: lr * sign(grad)
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())

BAD = [
    (SGD, dict(lr=-0.1), 'lr must be >= 0'),
    (SGD, dict(weight_decay=-1), 'weight_decay must be >= 0'),
    (Momentum, dict(momentum=1.0), r'momentum must be in \[0, 1\)'),
    (Momentum, dict(momentum=-0.1), r'momentum must be in \[0, 1\)'),
    (RMSProp, dict(alpha=1.5), r'alpha must be in \[0, 1\)'),
    (RMSProp, dict(eps=0.), 'eps must be > 0'),
    (Adam, dict(betas=(1.0, 0.999)), r'betas\[0\] must be in \[0, 1\)'),
    (Adam, dict(betas=(0.9, -0.5)), r'betas\[1\] must be in \[0, 1\)'),
    (Adam, dict(betas=(0.9,)), 'betas must be a pair'),
    (AdamW, dict(eps=-1e-8), 'eps must be > 0'),
    (AdamW, dict(lr=float('nan')), 'lr must be >= 0'),
]

@pytest.mark.parametrize('cls,kwargs,msg', BAD, ids=[f"{c.__name__}-{list(k)[0]}" for c, k, _ in BAD])
def test_bad_hyperparameters_raise(cls, kwargs, msg):
    with pytest.raises(ValueError, match=msg): cls(small_model().parameters(), **kwargs)

def test_bad_hyperparameter_in_added_group_raises():
    opt = Momentum(small_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r'momentum must be in \[0, 1\)'):
        opt.add_param_group(dict(params=[nn.Parameter(torch.ones(2))], momentum=2.))
    assert len(opt.param_groups) == 1

def test_sparse_gradient_raises():
    emb = nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match='Adam does not support sparse gradients'): Adam(emb.parameters()).step()

def test_optimizers_are_torch_optimizers():
    for cls in (SGD, Momentum, RMSProp, Adam, AdamW):
        assert issubclass(cls, MultiTensorOptimizer) and issubclass(cls, torch.optim.Optimizer)

# MomentumCB
def test_momentum_cb_scales_grads_instead_of_zeroing():
    p = nn.Parameter(torch.ones(3)); p.grad = torch.tensor([1., -2., 4.]); q = nn.Parameter(torch.ones(2))
    learn = SimpleNamespace(opt=SGD([p, q]))
    MomentumCB(0.5).zero_grad(learn)
    assert_close(p.grad, torch.tensor([0.5, -1., 2.])) ; assert q.grad is None

def test_momentum_cb_rejects_bad_momentum():
    with pytest.raises(ValueError, match=r'momentum must be in \[0, 1\)'): MomentumCB(1.2)

def test_sgd_with_momentum_cb_equals_momentum():
    "Scaling grads by m instead of zeroing makes them the undampened momentum buffer."
    from slowlearn.learner import Learner
    from slowlearn.data import DataLoaders
    def fit_weights(opt_func, cbs):
        torch.manual_seed(0)
        x, y = torch.randn(256, 20), torch.randint(0, 3, (256,))
        dls = DataLoaders.from_tensors(x[:192], y[:192], x[192:], y[192:], bs=32)
        model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))
        Learner(model, dls, lr=0.05, opt_func=opt_func, cbs=cbs).fit(2)
        return list(model.parameters())
    for a, b in zip(fit_weights(SGD, [MomentumCB(0.85)]), fit_weights(partial(Momentum, momentum=0.85), [])):
        assert_close(a, b, rtol=1e-6, atol=1e-7)

def step_sizes(opt, w, n_steps=20, lr=1e-3):
    "Each step's change of the one-element parameter `w`, in units of `lr`, with a constant gradient of 1."
    sizes = []
    for _ in range(n_steps):
        before = w.item(); w.grad = torch.ones(1); opt.step(); sizes.append(abs(w.item() - before) / lr)
    return sizes

def test_rmsprop_steps_by_lr_from_the_start_only_with_init_from_grad():
    w = nn.Parameter(torch.zeros(1)); s0 = step_sizes(RMSProp([w], lr=1e-3), w)
    w = nn.Parameter(torch.zeros(1)); s1 = step_sizes(RMSProp([w], lr=1e-3, init_from_grad=True), w)
    assert_close(torch.tensor(s0[:2]), torch.tensor([10., 1 / (1 - 0.99**2)**0.5]), rtol=1e-3, atol=0.)
    assert s0 == sorted(s0, reverse=True) and s0[-1] > 1.5
    assert_close(torch.tensor(s1), torch.ones(20), rtol=1e-3, atol=0.)

def test_grad_accum_cb_matches_the_big_batch_without_batchnorm_but_not_with_it():
    "4 batches of 16 accumulated vs batches of 64: the same weights for an MLP, not with BatchNorm (statistics per micro-batch)."
    from slowlearn.data import DataLoaders
    from slowlearn.learner import Learner
    from slowlearn.optim import GradAccumCB
    def fit(make_model, bs, cbs=()):
        torch.manual_seed(0); xs, ys = torch.randn(200, 20), torch.randint(0, 3, (200,))
        torch.manual_seed(1); model = make_model()
        learn = Learner(model, DataLoaders.from_tensors(xs, ys, xs[:32], ys[:32], bs=bs), lr=0.05,
                        opt_func=partial(Momentum, momentum=0.9), cbs=list(cbs))
        learn.fit(2, valid=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()]), learn.train_iter
    mlp = lambda: nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 3))
    bn = lambda: nn.Sequential(nn.Linear(20, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    (w_acc, n_acc), (w_big, n_big) = fit(mlp, 16, [GradAccumCB(4)]), fit(mlp, 64)
    assert n_acc == n_big == 8
    assert_close(w_acc, w_big, rtol=1e-5, atol=1e-6)
    (w_acc, _), (w_big, _) = fit(bn, 16, [GradAccumCB(4)]), fit(bn, 64)
    assert (w_acc - w_big).abs().max() > 1e-3

def test_weight_decay_groups_leave_out_biases_norms_and_embeddings():
    m = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 6), nn.LayerNorm(6), nn.Conv1d(6, 2, 1), nn.BatchNorm1d(2))
    decay, rest = weight_decay_groups(m, 0.1)
    assert decay['params'] == [m[1].weight, m[3].weight] and (decay['weight_decay'], rest['weight_decay']) == (0.1, 0.)
    assert {id(p) for p in rest['params']} == {id(p) for p in m.parameters()} - {id(m[1].weight), id(m[3].weight)}
    assert [len(g['params']) for g in weight_decay_groups(m, groups=[list(m[:2].parameters()), list(m[2:].parameters())])] == [1, 2, 1, 5]

def test_momentum_cb_per_group_matches_torch_sgd_with_a_momentum_per_group():
    from slowlearn.learner import Learner
    m1, m2 = small_model(), small_model()
    ref = torch.optim.SGD([dict(groups(m2)[0], momentum=0.5), dict(groups(m2)[1], momentum=0.9)], lr=0.05)
    dls = SimpleNamespace(train=batches(6), valid=[])
    Learner(m1, dls, lr=0.05, opt_func=lambda ps, lr: SGD(groups(m1), lr=lr), cbs=MomentumCB([0.5, 0.9])).fit(1)
    for x, y in batches(6): F.cross_entropy(m2(x), y).backward(); ref.step(); ref.zero_grad()
    assert_close(torch.cat([p.flatten() for p in m1.parameters()]), torch.cat([p.flatten() for p in m2.parameters()]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='MomentumCB got 3 momentums but the optimizer has 2 param groups'):
        Learner(small_model(), dls, opt_func=lambda ps, lr: SGD(groups(m1), lr=lr), cbs=MomentumCB([0.5]*3)).fit(1)
