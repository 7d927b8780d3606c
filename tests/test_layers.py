"Norm layers and dropout against torch.nn (outputs, gradients, running statistics), plus the conv block."
from functools import partial
import pytest, torch
from torch import nn
import torch.nn.functional as F
from torch.testing import assert_close
from slowlearn.layers import BatchNorm, LayerNorm, RMSNorm, Dropout, conv
from slowlearn.init import GeneralReLU

close = partial(assert_close, rtol=1e-5, atol=1e-5)

def gen(seed=0): return torch.Generator().manual_seed(seed)

def randomize_affine(ours, ref, seed=0):
    "Give both modules the same random weight (and bias), so gradients through them are not trivial."
    g = gen(seed)
    with torch.no_grad():
        for name in ('weight', 'bias'):
            if getattr(ref, name, None) is None: continue
            v = torch.randn(getattr(ref, name).shape, generator=g)
            getattr(ours, name).copy_(v); getattr(ref, name).copy_(v)

def compare_fwd_bwd(ours, ref, x, seed=1):
    "Same output, same input gradient and same parameter gradients for a random upstream gradient."
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), ref(xb)
    close(ya, yb)
    up = torch.randn(ya.shape, generator=gen(seed))
    (ya*up).sum().backward(); (yb*up).sum().backward()
    close(xa.grad, xb.grad)
    for name, p in ref.named_parameters(): close(getattr(ours, name).grad, p.grad, msg=name)
    ours.zero_grad(); ref.zero_grad()

def batch(shape, seed, scale=3., shift=2.): return torch.randn(shape, generator=gen(seed))*scale + shift

BN_CASES = [((32, 7), nn.BatchNorm1d), ((16, 5, 9), nn.BatchNorm1d), ((8, 6, 5, 7), nn.BatchNorm2d)]

@pytest.mark.parametrize('shape,ref_cls', BN_CASES)
@pytest.mark.parametrize('momentum', [0.1, 0.3, 0., 1.])
def test_batchnorm_matches_torch_in_train_then_eval(shape, ref_cls, momentum):
    ours, ref = BatchNorm(shape[1], momentum=momentum), ref_cls(shape[1], momentum=momentum)
    randomize_affine(ours, ref)
    for step in range(5): compare_fwd_bwd(ours, ref, batch(shape, step, shift=step), seed=step)
    close(ours.running_mean, ref.running_mean); close(ours.running_var, ref.running_var)
    ours.eval(); ref.eval()
    compare_fwd_bwd(ours, ref, batch(shape, 10))
    compare_fwd_bwd(ours, ref, batch((1,) + shape[1:], 11))     # a single sample is fine in eval

@pytest.mark.parametrize('compile', [False, dict(backend='aot_eager')])
def test_batchnorm_keeps_float32_precision_with_a_mean_far_from_zero(compile):
    "A mean of 1e4 and a std of 1: the statistics' sums, shifted by one value per channel, lose nothing to cancellation."
    torch._dynamo.reset()
    ours, ref = BatchNorm(4, compile=compile), nn.BatchNorm2d(4).double()
    x = torch.randn((16, 4, 5, 5), generator=gen(0)) + 1e4
    y = ours(x); yr = ref(x.double())
    assert_close(y.double(), yr, rtol=0, atol=3e-3)                 # float32 holds 1e4 to ~1e-3
    assert_close(ours.running_var.double(), ref.running_var, rtol=1e-4, atol=0)
    assert_close(ours.running_mean.double(), ref.running_mean, rtol=1e-6, atol=0)

def test_batchnorm_running_stats_match_formula():
    bn = BatchNorm(3, momentum=0.2)
    xs = [batch((10, 3), s) for s in range(3)]
    rm, rv = torch.zeros(3), torch.ones(3)
    for x in xs:
        bn(x)
        rm = 0.8*rm + 0.2*x.mean(0)
        rv = 0.8*rv + 0.2*x.var(0, correction=1)          # unbiased variance for the running estimate
    close(bn.running_mean, rm); close(bn.running_var, rv)

def test_batchnorm_train_output_is_standardised_per_channel():
    y = BatchNorm(4)(batch((8, 4, 6, 6), 0))
    close(y.mean((0, 2, 3)), torch.zeros(4)); close(y.var((0, 2, 3), correction=0), torch.ones(4), rtol=1e-4, atol=1e-4)

def test_batchnorm_running_stats_are_buffers_without_grad():
    bn = BatchNorm(3)
    bn(batch((4, 3), 0, scale=1.).requires_grad_()).sum().backward()
    assert {n for n, _ in bn.named_buffers()} == {'running_mean', 'running_var'}
    assert not bn.running_mean.requires_grad and bn.running_mean.grad_fn is None
    assert {n for n, _ in bn.named_parameters()} == {'weight', 'bias'}

@pytest.mark.parametrize('kw,exc,match', [(dict(num_features=0), ValueError, 'num_features'), (dict(num_features=2.5), TypeError, 'num_features'),
                                          (dict(num_features=3, eps=0), ValueError, 'eps'), (dict(num_features=3, momentum=1.5), ValueError, 'momentum'),
                                          (dict(num_features=3, momentum=-0.1), ValueError, 'momentum')])
def test_batchnorm_bad_arguments(kw, exc, match):
    with pytest.raises(exc, match=match): BatchNorm(**kw)

def test_batchnorm_bad_inputs():
    with pytest.raises(ValueError, match='shape'): BatchNorm(3)(torch.randn(4, 5))
    with pytest.raises(ValueError, match='shape'): BatchNorm(3)(torch.randn(3))
    with pytest.raises(ValueError, match='more than 1 value'): BatchNorm(3)(torch.randn(1, 3))

@pytest.mark.parametrize('shape,ns', [((16, 10), 10), ((4, 6, 10), (10,)), ((4, 3, 5, 6), (5, 6)), ((2, 3, 4, 5), (3, 4, 5))])
@pytest.mark.parametrize('train', [True, False])
def test_layernorm_matches_torch(shape, ns, train):
    ours, ref = LayerNorm(ns), nn.LayerNorm(ns)
    randomize_affine(ours, ref)
    ours.train(train); ref.train(train)
    compare_fwd_bwd(ours, ref, batch(shape, 0))

@pytest.mark.parametrize('shape,ns', [((16, 10), 10), ((4, 6, 10), (10,)), ((4, 3, 5, 6), (5, 6))])
@pytest.mark.parametrize('train', [True, False])
def test_rmsnorm_matches_torch(shape, ns, train):
    ours, ref = RMSNorm(ns), nn.RMSNorm(ns, eps=1e-5)
    randomize_affine(ours, ref)
    ours.train(train); ref.train(train)
    compare_fwd_bwd(ours, ref, batch(shape, 0))

def test_rmsnorm_matches_formula():
    x = batch((5, 8), 0)
    close(RMSNorm(8, eps=1e-3)(x), x / (x.pow(2).mean(-1, keepdim=True) + 1e-3).sqrt())

@pytest.mark.parametrize('cls', [LayerNorm, RMSNorm])
def test_per_sample_norms_bad_arguments_and_inputs(cls):
    with pytest.raises(ValueError, match='normalized_shape'): cls(0)
    with pytest.raises(ValueError, match='normalized_shape'): cls(())
    with pytest.raises(ValueError, match='eps'): cls(3, eps=-1e-5)
    with pytest.raises(ValueError, match='expected input'): cls((3, 4))(torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match='expected input'): cls((3, 4))(torch.randn(4))

def test_dropout_keeps_the_expected_value():
    torch.manual_seed(0)
    p, n = 0.3, 1_000_000
    y = Dropout(p)(torch.full((n,), 3.))
    elem_std = 3*(p/(1-p))**0.5                               # std of one element of D(3)
    assert abs(y.mean().item() - 3) < 5*elem_std/n**0.5
    assert abs((y == 0).float().mean().item() - p) < 5*(p*(1-p)/n)**0.5

def test_dropout_scales_kept_units_and_gradient_follows_the_mask():
    torch.manual_seed(0)
    x = (torch.rand(50, 40) + 0.5).requires_grad_()
    y = Dropout(0.4)(x)
    kept = y != 0
    close(y[kept], x[kept]/0.6)
    y.sum().backward()
    close(x.grad, kept.float()/0.6)

def test_dropout_matches_torch_with_same_seed():
    x = torch.randn(64, 33)
    torch.manual_seed(5); a = Dropout(0.2)(x)
    torch.manual_seed(5); b = nn.Dropout(0.2)(x)
    close(a, b)

def test_dropout_is_exact_identity_in_eval_and_for_p_zero():
    x = torch.randn(10, 10)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.)(x), x)

@pytest.mark.parametrize('p', [-0.1, 1., 1.5])
def test_dropout_p_outside_range_is_a_value_error(p):
    with pytest.raises(ValueError, match=r'p must be in \[0, 1\)'): Dropout(p)

def test_conv_block_default_layout_and_shape():
    c = conv(3, 16)
    assert [type(m) for m in c] == [nn.Conv2d, BatchNorm, GeneralReLU]
    assert c[0].bias is None and c[0].stride == (2, 2) and c[0].padding == (1, 1) and c[1].num_features == 16
    assert c(torch.randn(2, 3, 28, 28)).shape == (2, 16, 14, 14)

def test_conv_block_without_norm_or_act_keeps_bias():
    c = conv(3, 8, ks=5, stride=1, act=None, norm=False)
    assert len(c) == 1 and c[0].bias is not None
    assert c(torch.randn(1, 3, 9, 9)).shape == (1, 8, 9, 9)

def test_conv_block_accepts_factories_and_modules():
    c = conv(3, 8, act=partial(GeneralReLU, leak=0.1, sub=0.4), norm=partial(BatchNorm, momentum=0.2))
    assert c[2].leak == 0.1 and c[1].momentum == 0.2
    relu = nn.ReLU()
    assert conv(3, 8, act=relu, norm=None)[1] is relu

@pytest.mark.parametrize('kw,exc', [(dict(ni=0), ValueError), (dict(nf=-1), ValueError), (dict(ks=0), ValueError), (dict(stride=1.5), TypeError)])
def test_conv_block_bad_arguments(kw, exc):
    args = dict(ni=3, nf=8) | kw
    with pytest.raises(exc, match=next(iter(kw))): conv(**args)

def test_batchnorm_trains_under_bfloat16_autocast():
    "A conv's bfloat16 output feeds BatchNorm; the running statistics stay float32 and track the float32 ones."
    from slowlearn.layers import BatchNorm
    torch.manual_seed(0)
    c, bn, ref = torch.nn.Conv2d(3, 8, 3), BatchNorm(8), BatchNorm(8)
    x = torch.randn(16, 3, 10, 10)
    with torch.autocast('cpu', dtype=torch.bfloat16): out = bn(c(x))
    ref(c(x).float())
    assert out.isfinite().all() and bn.running_mean.dtype == bn.running_var.dtype == torch.float32
    torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=0, atol=2e-2)
    torch.testing.assert_close(bn.running_var, ref.running_var, rtol=0, atol=2e-2)

# --- BatchNorm(compile=...): the same math through torch.compile ---
import warnings

@pytest.mark.parametrize('shape,ref_cls', BN_CASES)
def test_compiled_batchnorm_matches_torch(shape, ref_cls):
    "Graph capture with the aot_eager backend (no code generation: quick); outputs, gradients, running stats."
    torch._dynamo.reset()
    ours, ref = BatchNorm(shape[1], compile=dict(backend='aot_eager')), ref_cls(shape[1])
    randomize_affine(ours, ref)
    for step in range(4): compare_fwd_bwd(ours, ref, batch(shape, step, shift=step), seed=step)
    close(ours.running_mean, ref.running_mean); close(ours.running_var, ref.running_var)
    ours.eval(); ref.eval(); compare_fwd_bwd(ours, ref, batch(shape, 10))

def test_compiled_batchnorm_with_inductor_matches_torch_channels_last():
    from slowlearn.core import compile_problem
    if compile_problem('cpu', 'inductor'): pytest.skip(compile_problem('cpu', 'inductor'))
    ours, ref = BatchNorm(6, compile=True), nn.BatchNorm2d(6)
    randomize_affine(ours, ref)
    x = batch((8, 6, 5, 7), 0).to(memory_format=torch.channels_last)
    compare_fwd_bwd(ours, ref, x)
    close(ours.running_mean, ref.running_mean); close(ours.running_var, ref.running_var)
    assert ours._train.failed is None

def test_batchnorm_under_bfloat16_autocast_returns_bfloat16_like_torch():
    torch.manual_seed(0)
    c = nn.Conv2d(3, 8, 3)
    x = torch.randn(16, 3, 10, 10)
    ours, ref = BatchNorm(8), nn.BatchNorm2d(8)
    with torch.autocast('cpu', dtype=torch.bfloat16): h = c(x); ya, yb = ours(h), ref(h)
    assert ya.dtype == yb.dtype == torch.bfloat16
    assert_close(ya.float(), yb.float(), rtol=0, atol=4e-2)   # bfloat16 rounding of values of a few units
    close(ours.running_mean, ref.running_mean); close(ours.running_var, ref.running_var)   # float32 statistics

def test_batchnorm_compile_unavailable_warns_once_and_runs_eagerly(monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, 'which', lambda c: None)
    ours, ref = BatchNorm(5, compile=True), BatchNorm(5)
    x = batch((8, 5), 0)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        for _ in range(3): assert torch.equal(ours(x), ref(x))
    assert len(ws) == 1 and 'BatchNorm(compile=True)' in str(ws[0].message) and 'C++ compiler' in str(ws[0].message)

def test_batchnorm_failing_backend_warns_once_and_runs_eagerly():
    def broken(gm, example_inputs): raise RuntimeError('no code generator here')
    torch._dynamo.reset()
    ours, ref = BatchNorm(5, compile=dict(backend=broken)), BatchNorm(5)
    x = batch((8, 5, 3), 0)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        for _ in range(3): assert torch.equal(ours(x), ref(x))
    assert len(ws) == 1 and 'compiling failed' in str(ws[0].message)
    assert torch.equal(ours.running_var, ref.running_var)

def test_many_batchnorm_shapes_and_batch_sizes_train_compiled_without_hitting_the_recompile_limit():
    "More BatchNorm shapes than Dynamo's recompile_limit (8), and three batch sizes: each layer has its own graphs."
    import logging
    torch._dynamo.reset(); torch._dynamo.utils.counters.clear()
    cs = list(range(3, 15))   # 11 layers, 11 channel counts
    layers = [m for a, b in zip(cs, cs[1:]) for m in (nn.Linear(a, b), BatchNorm(b, compile=dict(backend='aot_eager')))]
    model, logged = nn.Sequential(*layers), []
    handler = logging.Handler(); handler.emit = lambda r: logged.append(r.getMessage())
    logging.getLogger('torch._dynamo').addHandler(handler)
    try:
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step, bs in enumerate((16, 16, 7, 16, 5)):
            x = batch((bs, 3), step)
            model(x).pow(2).mean().backward(); opt.step(); opt.zero_grad()
    finally: logging.getLogger('torch._dynamo').removeHandler(handler)
    assert not [m for m in logged if 'recompile_limit' in m]
    bns = [m for m in model if isinstance(m, BatchNorm)]
    assert all(m._train.failed is None for m in bns)
    assert torch._dynamo.utils.counters['stats']['unique_graphs'] == len(bns)   # one per layer, whatever the batch size

def test_batchnorm_bad_compile_argument():
    with pytest.raises(TypeError, match='compile must be True, False or a dict'): BatchNorm(3, compile='yes')

def test_conv_bias_before_batchnorm_changes_nothing_and_gets_no_gradient():
    "BN(Wx + b) = BN(Wx) in training mode: a conv bias before a BatchNorm is redundant, which is why `conv` drops it."
    torch.manual_seed(0)
    c, bn = nn.Conv2d(3, 8, 3, padding=1), BatchNorm(8)
    x = torch.randn(16, 3, 10, 10)
    y = bn(c(x))
    with torch.no_grad(): c.bias.add_(3.)
    y2 = bn(c(x))
    close(y2, y, rtol=0, atol=1e-4)
    (y2*torch.randn_like(y2)).sum().backward()
    assert c.bias.grad.abs().max() < 1e-4 and c.weight.grad.abs().max() > 1e-2

def test_conv_block_order_is_conv_norm_act_and_norm_may_be_a_module():
    b = conv(3, 16, norm=LayerNorm((16, 14, 14)), act=GeneralReLU)
    assert [type(m) for m in b] == [nn.Conv2d, LayerNorm, GeneralReLU] and b[0].bias is None
    assert b(torch.randn(2, 3, 28, 28)).shape == (2, 16, 14, 14)
