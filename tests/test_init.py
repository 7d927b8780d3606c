"Init functions against their formulas and `torch.nn.init`; GeneralReLU; ActivationStatsCB hooks and statistics; model summaries."
import math, statistics
from functools import partial
from types import SimpleNamespace
import matplotlib; matplotlib.use('agg')
import pytest, torch
import torch.nn.functional as F
from torch import nn
from slowlearn.learner import Learner, Callback
from slowlearn.init import (calc_fans, calc_gain, kaiming_normal_, kaiming_uniform_, xavier_normal_,
                            xavier_uniform_, init_weights, GeneralReLU, ActivationStatsCB, model_summary)
from slowlearn.data import DataLoaders

def gen(seed=0): return torch.Generator().manual_seed(seed)

# weight shapes of Linear, Conv1d/2d/3d, with fans computed by hand
SHAPES = {(300, 200): (200, 300), (64, 32, 7): (224, 448), (128, 64, 3, 3): (576, 1152),
          (32, 16, 3, 3, 3): (432, 864)}

@pytest.mark.parametrize('shape,fans', SHAPES.items())
def test_fans_match_hand_computed_values(shape, fans):
    assert calc_fans(torch.empty(shape)) == fans

def test_fans_of_real_layers_match_torch():
    for m in [nn.Linear(5, 3), nn.Conv1d(2, 4, 3), nn.Conv2d(3, 8, (3, 5)), nn.Conv3d(2, 6, 3, groups=2)]:
        assert calc_fans(m.weight) == nn.init._calculate_fan_in_and_fan_out(m.weight)

@pytest.mark.parametrize('nl,a', [('linear', None), ('conv1d', None), ('conv3d', None), ('sigmoid', None),
                                  ('tanh', None), ('relu', None), ('selu', None), ('leaky_relu', None),
                                  ('leaky_relu', 0), ('leaky_relu', 0.2), ('leaky_relu', 1.)])
def test_gain_matches_torch(nl, a):
    assert calc_gain(nl, a) == pytest.approx(nn.init.calculate_gain(nl, a), rel=1e-12)

def test_leaky_relu_gain_matches_formula():
    assert calc_gain('leaky_relu', 0.3) == pytest.approx(math.sqrt(2/1.09))

def rel_std_err(n): return 1/math.sqrt(2*(n-1))   # relative standard error of a normal sample std

KAIMING = [dict(), dict(a=0.2), dict(mode='fan_out'), dict(nonlinearity='relu'), dict(nonlinearity='tanh', mode='fan_out')]

def kaiming_std(w, a=0., mode='fan_in', nonlinearity='leaky_relu'):
    fan_in, fan_out = calc_fans(w)
    gain = {'leaky_relu': math.sqrt(2/(1+a**2)), 'relu': math.sqrt(2), 'tanh': 5/3}[nonlinearity]
    return gain/math.sqrt(fan_in if mode == 'fan_in' else fan_out)

@pytest.mark.parametrize('kw', KAIMING)
@pytest.mark.parametrize('shape', [(1024, 512), (256, 128, 3, 3)])
def test_kaiming_normal_std_matches_formula(shape, kw):
    w = kaiming_normal_(torch.empty(shape), generator=gen(), **kw)
    std = kaiming_std(w, **kw)
    assert abs(w.std().item() - std) < 5*rel_std_err(w.numel())*std
    assert abs(w.mean().item()) < 5*std/math.sqrt(w.numel())

@pytest.mark.parametrize('kw', KAIMING)
@pytest.mark.parametrize('shape', [(1024, 512), (256, 128, 3, 3)])
def test_kaiming_uniform_bound_matches_formula(shape, kw):
    w = kaiming_uniform_(torch.empty(shape), generator=gen(), **kw)
    bound = math.sqrt(3)*kaiming_std(w, **kw)
    # the max of n uniform draws falls short of the bound by about bound/n
    assert bound*(1 - 20/w.numel()) < w.abs().max().item() <= bound*(1 + 1e-6)
    assert abs(w.std().item() - bound/math.sqrt(3)) < 5*bound/math.sqrt(3)/math.sqrt(w.numel())

def xavier_std(w, gain=1.):
    fan_in, fan_out = calc_fans(w)
    return gain*math.sqrt(2/(fan_in + fan_out))

@pytest.mark.parametrize('gain', [1., 5/3])
@pytest.mark.parametrize('shape', [(1024, 512), (256, 128, 3, 3)])
def test_xavier_normal_std_matches_formula(shape, gain):
    w = xavier_normal_(torch.empty(shape), gain=gain, generator=gen())
    std = xavier_std(w, gain)
    assert abs(w.std().item() - std) < 5*rel_std_err(w.numel())*std

@pytest.mark.parametrize('gain', [1., 5/3])
@pytest.mark.parametrize('shape', [(1024, 512), (256, 128, 3, 3)])
def test_xavier_uniform_bound_matches_formula(shape, gain):
    w = xavier_uniform_(torch.empty(shape), gain=gain, generator=gen())
    bound = math.sqrt(3)*xavier_std(w, gain)     # a uniform on [-b, b] has std b/sqrt(3)
    assert bound*(1 - 20/w.numel()) < w.abs().max().item() <= bound*(1 + 1e-6)

PAIRS = [(kaiming_normal_, nn.init.kaiming_normal_, dict(a=0.1, mode='fan_out')),
         (kaiming_uniform_, nn.init.kaiming_uniform_, dict(a=math.sqrt(5))),   # PyTorch's default Linear/Conv init
         (kaiming_uniform_, nn.init.kaiming_uniform_, dict(nonlinearity='relu')),
         (xavier_normal_, nn.init.xavier_normal_, dict(gain=5/3)),
         (xavier_uniform_, nn.init.xavier_uniform_, dict())]

@pytest.mark.parametrize('ours,theirs,kw', PAIRS)
@pytest.mark.parametrize('shape', list(SHAPES))
def test_init_matches_torch_nn_init_with_same_generator(ours, theirs, kw, shape):
    a = ours(torch.empty(shape), generator=gen(3), **kw)
    b = theirs(torch.empty(shape), generator=gen(3), **kw)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)

def test_init_works_in_place_on_a_parameter_and_keeps_requires_grad():
    lin = nn.Linear(100, 50)
    out = kaiming_normal_(lin.weight, generator=gen())
    assert out is lin.weight and lin.weight.requires_grad
    torch.testing.assert_close(lin.weight, nn.init.kaiming_normal_(torch.empty(50, 100), generator=gen()))

@pytest.mark.parametrize('f', [kaiming_normal_, kaiming_uniform_, xavier_normal_, xavier_uniform_])
@pytest.mark.parametrize('shape', [(5,), ()])
def test_fewer_than_two_dims_is_a_value_error(f, shape):
    with pytest.raises(ValueError, match='at least 2 dims'): f(torch.empty(shape))

@pytest.mark.parametrize('f', [kaiming_normal_, kaiming_uniform_])
def test_unknown_mode_or_nonlinearity_is_a_value_error(f):
    with pytest.raises(ValueError, match='mode'): f(torch.empty(3, 4), mode='fan_avg')
    with pytest.raises(ValueError, match='nonlinearity'): f(torch.empty(3, 4), nonlinearity='gelu')

def test_non_numeric_leaky_slope_is_a_type_error():
    with pytest.raises(TypeError, match='a must be'): kaiming_normal_(torch.empty(3, 4), a='0.1')

def test_zero_element_tensor_is_left_alone():
    assert kaiming_normal_(torch.empty(0, 4)).shape == (0, 4)

def model_with_everything():
    return nn.Sequential(nn.Conv1d(4, 64, 3), nn.Conv2d(4, 64, 3), nn.Conv3d(4, 32, 3), nn.BatchNorm2d(64),
                         nn.Sequential(nn.Linear(400, 300), nn.LayerNorm(300)))

def test_init_weights_kaiming_with_leak_sets_every_linear_and_conv_weight():
    torch.manual_seed(0)
    model = init_weights(model_with_everything(), leak=0.1)
    gain = math.sqrt(2/(1 + 0.1**2))
    for m, fan_in in [(model[0], 12), (model[1], 36), (model[2], 108), (model[4][0], 400)]:
        n = m.weight.numel()
        assert abs(m.weight.std().item() - gain/math.sqrt(fan_in)) < 5*rel_std_err(n)*gain/math.sqrt(fan_in)
        assert (m.bias == 0).all()
    # norm layers keep their own init
    assert (model[3].weight == 1).all() and (model[4][1].weight == 1).all()

def test_init_weights_xavier_uniform_and_keep_bias():
    torch.manual_seed(0)
    model = model_with_everything()
    b0 = model[4][0].bias.detach().clone()
    init_weights(model, 'xavier_uniform', zero_bias=False)
    w = model[4][0].weight
    bound = math.sqrt(6/(400 + 300))
    assert bound*(1 - 20/w.numel()) < w.abs().max().item() <= bound*(1 + 1e-6)
    assert torch.equal(model[4][0].bias, b0)

def test_init_weights_accepts_a_function():
    model = init_weights(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), partial(nn.init.constant_, val=0.5))
    assert all((m.weight == 0.5).all() and (m.bias == 0).all() for m in model)

def test_init_weights_bad_arguments():
    with pytest.raises(ValueError, match='scheme'): init_weights(nn.Linear(2, 2), 'orthogonal')
    with pytest.raises(ValueError, match='leak'): init_weights(nn.Linear(2, 2), 'xavier', leak=0.1)
    with pytest.raises(ValueError, match='leak'): init_weights(nn.Linear(2, 2), leak=-1)

def test_general_relu_hand_computed_values_and_gradient():
    x = torch.tensor([-2., -0.5, 0.25, 1., 5.], requires_grad=True)
    y = GeneralReLU(leak=0.1, sub=0.4, maxv=3.)(x)
    torch.testing.assert_close(y, torch.tensor([-0.6, -0.45, -0.15, 0.6, 3.]))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.1, 0.1, 1., 1., 0.]))

def test_general_relu_defaults_to_relu():
    x = torch.randn(100, generator=gen())
    assert torch.equal(GeneralReLU()(x), x.clamp(min=0))

def test_general_relu_negative_leak_is_a_value_error():
    with pytest.raises(ValueError, match='leak'): GeneralReLU(leak=-0.1)

# ActivationStatsCB
def stats_learner(cbs, train, valid=None):
    "A Learner on a 2->2 identity Linear that never changes (lr=0), so activations equal the inputs."
    lin = nn.Linear(2, 2)
    with torch.no_grad(): lin.weight.copy_(torch.eye(2)); lin.bias.zero_()
    dls = SimpleNamespace(train=[(x, torch.zeros_like(x)) for x in train],
                          valid=[(x, torch.zeros_like(x)) for x in valid or train])
    return Learner(nn.Sequential(lin), dls, F.mse_loss, lr=0., cbs=cbs)

def test_stats_equal_hand_computed_reference():
    b1 = [[0.5, 2.5], [1.5, -3.5]]
    b2 = [[0., 7.], [0.005, -1.5]]
    cb = ActivationStatsCB(bins=5, max_abs=5., zero_tol=0.01)
    learn = stats_learner(cb, [torch.tensor(b1), torch.tensor(b2)], valid=[torch.full((2, 2), 100.)])
    learn.fit(1)
    vals = [sum(b1, []), sum(b2, [])]
    torch.testing.assert_close(cb.means[0], torch.tensor([statistics.mean(v) for v in vals]))
    torch.testing.assert_close(cb.stds[0], torch.tensor([statistics.stdev(v) for v in vals]))
    torch.testing.assert_close(cb.near_zero[0], torch.tensor([0., 0.5]))
    # |a| in unit bins over [0, 5]; 7 is clamped into the top bin; the validation batch is not recorded
    torch.testing.assert_close(cb.hists[0], torch.tensor([[1., 1., 1., 1., 0.], [2., 1., 0., 0., 1.]]))
    assert cb.stats.device.type == 'cpu' and cb.stats.shape == (1, 2, 3 + 5)

def test_hooks_removed_after_fit():
    cb = ActivationStatsCB()
    learn = stats_learner(cb, [torch.ones(2, 2)])
    learn.fit(1)
    assert not learn.model[0]._forward_hooks and cb.hooks == []

def test_hooks_removed_when_fit_raises_and_recorded_stats_kept():
    class Boom(Callback):
        def after_batch(self, learn):
            if learn.iter == 1: raise RuntimeError('boom')
    cb = ActivationStatsCB()
    learn = stats_learner([cb, Boom()], [torch.ones(2, 2), torch.ones(2, 2), torch.ones(2, 2)])
    with pytest.raises(RuntimeError, match='boom'): learn.fit(1)
    assert not learn.model[0]._forward_hooks
    assert cb.stats.shape[1] == 2               # the two batches that ran
    learn.model(torch.ones(1, 2))               # no hook left to record anything
    assert cb.stats.shape[1] == 2

def test_default_modules_are_children_with_parameters_and_types_select_submodules():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 1))
    assert ActivationStatsCB()._modules(model) == [model[0], model[2], model[3]]
    assert ActivationStatsCB(nn.ReLU)._modules(model) == [model[1], model[2][1]]
    assert ActivationStatsCB([model[1]])._modules(model) == [model[1]]

def test_stats_reset_at_each_fit_and_plots_have_one_line_per_module():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(8, 2, generator=gen())
    dls = SimpleNamespace(train=[(x, x)] * 3, valid=[(x, x)])
    cb = ActivationStatsCB(nn.Linear)
    learn = Learner(model, dls, F.mse_loss, lr=0.01, cbs=cb)
    learn.fit(2); assert cb.stats.shape[:2] == (2, 6)
    learn.fit(1); assert cb.stats.shape[:2] == (2, 3)
    axs = cb.plot_stats()
    assert len(axs[0].lines) == len(axs[1].lines) == 2
    assert sum(ax.has_data() for ax in cb.dead_chart().flat) == 2
    assert sum(len(ax.images) for ax in cb.color_dim().flat) == 2

def test_activation_stats_bad_arguments():
    with pytest.raises(ValueError, match='bins'): ActivationStatsCB(bins=0)
    with pytest.raises(ValueError, match='max_abs'): ActivationStatsCB(max_abs=0)
    with pytest.raises(ValueError, match='zero_tol'): ActivationStatsCB(zero_tol=0)

def test_general_relu_leak_keeps_a_gradient_where_relu_has_none():
    "A unit negative for every sample of a batch: ReLU passes no gradient, GeneralReLU passes leak times it."
    x = -torch.rand(32, 5) - 0.1                      # every value negative
    for act, slope in [(nn.ReLU(), 0.), (GeneralReLU(), 0.), (GeneralReLU(0., 0.4), 0.), (GeneralReLU(0.1, 0.4), 0.1)]:
        xa = x.clone().requires_grad_()
        act(xa).sum().backward()
        assert torch.equal(xa.grad, torch.full_like(x, slope)), act

# --- model_summary / Learner.summary

class TwoHeads(nn.Module):
    "A layer called twice (shared weights), a parameter of its own besides children, and a tuple output."
    def __init__(self):
        super().__init__()
        self.body,self.bn,self.scale = nn.Linear(6, 6),nn.BatchNorm1d(6),nn.Parameter(torch.ones(6))
    def forward(self, x):
        h = self.bn(self.body(self.body(x)))
        return h * self.scale, h.sum(1)

def test_summary_shapes_and_counts_match_a_plain_forward_pass():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4*13*13, 10))
    x = torch.randn(5, 1, 28, 28)
    s = model_summary(model, x)
    outs, h = [], x
    for m in model: h = m(h); outs.append(str(list(h.shape)))
    assert [r['shape'] for r in s.rows] == outs and [r['type'] for r in s.rows] == ['Conv2d', 'ReLU', 'Flatten', 'Linear']
    assert [r['params'] for r in s.rows] == [4*9 + 4, 0, 0, 4*13*13*10 + 10]
    assert s.total == s.trainable == sum(p.numel() for p in model.parameters()) and s.frozen == 0

def test_summary_counts_frozen_shared_and_own_parameters_once():
    model = TwoHeads()
    model.body.weight.requires_grad_(False)
    s = model_summary(model, torch.randn(3, 6))
    assert [r['name'] for r in s.rows] == ['body', 'body', 'bn', '']              # forward order; '' is the model itself
    assert [r['params'] for r in s.rows] == [42, 0, 12, 6]                        # the second call of `body` adds nothing
    assert s.rows[-1]['shape'] == '([3, 6], [3])'
    assert (s.total, s.frozen) == (60, 36) and s.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 'Frozen params: 36' in repr(s)

def test_summary_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).train()
    model[2].eval()                                             # a mix of modes must come back as it was
    before = {k: v.clone() for k,v in model.state_dict().items()}
    model_summary(model, torch.randn(8, 4) * 3 + 1)
    assert all(torch.equal(v, before[k]) for k,v in model.state_dict().items())   # BatchNorm's running stats untouched
    assert [m.training for m in model] == [True, True, False]

def test_learner_summary_uses_the_first_validation_batch():
    x = torch.randn(20, 4)
    dls = DataLoaders.from_tensors(x, torch.zeros(20, dtype=torch.long), x[:7], torch.zeros(7, dtype=torch.long), bs=16)
    s = Learner(nn.Linear(4, 2), dls).summary()
    assert s.rows[0]['shape'] == '[7, 2]' and s.total == 10
