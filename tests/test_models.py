"The lessons' two models: `mlp`'s layers and sizes, `fashion_mnist_cnn`'s shapes, its He initialisation and its argument checks."
import math
import pytest, torch
from torch import nn
from slowlearn.models import mlp, fashion_mnist_cnn

def _n_params(model): return sum(p.numel() for p in model.parameters())

def test_mlp_layers_and_size():
    "Flatten, Linear+ReLU per hidden width, a last Linear: 784·128+128 + 128·10+10 weights for the default."
    m = mlp()
    assert [type(l) for l in m] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear]
    assert _n_params(m) == 784*128 + 128 + 128*10 + 10
    assert m(torch.randn(5, 1, 28, 28)).shape == (5, 10)

def test_mlp_without_hidden_layers_is_logistic_regression():
    m = mlp(widths=(), n_in=20, n_out=3)
    assert [type(l) for l in m] == [nn.Flatten, nn.Linear] and _n_params(m) == 20*3 + 3

def test_mlp_several_widths():
    m = mlp(widths=[64, 32], n_in=20, n_out=3)
    assert [(l.in_features, l.out_features) for l in m if isinstance(l, nn.Linear)] == [(20, 64), (64, 32), (32, 3)]
    assert m(torch.randn(4, 20)).shape == (4, 3)

@pytest.mark.parametrize('size', [28, 32])
def test_cnn_halves_the_image_down_to_one_pixel_of_logits(size):
    "Five stride-2 convs take 28 (or 32) pixels to 1, so the flattened output is one logit per class."
    m = fashion_mnist_cnn()
    assert m(torch.randn(3, 1, size, size)).shape == (3, 10)
    convs = [l for l in m.modules() if isinstance(l, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [(1, 16, 5), (16, 32, 3), (32, 64, 3), (64, 128, 3), (128, 10, 3)]
    assert all(c.bias is None for c in convs[:-1]) and convs[-1].bias is not None   # a bias before BatchNorm would be undone by it

def test_cnn_weights_are_he_initialised():
    "Each conv's weights have std √(2/fan_in) (He et al. 2015), within sampling error."
    torch.manual_seed(0)
    for c in (l for l in fashion_mnist_cnn().modules() if isinstance(l, nn.Conv2d)):
        fan_in = c.in_channels * c.kernel_size[0] * c.kernel_size[1]
        assert c.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.12)

@pytest.mark.parametrize('nfs, exc', [((), ValueError), ((16, 0), ValueError), ((16, 2.5), TypeError), ('16', TypeError)])
def test_cnn_rejects_bad_widths(nfs, exc):
    with pytest.raises(exc, match='nfs'): fashion_mnist_cnn(nfs=nfs)

@pytest.mark.parametrize('widths, exc', [((0,), ValueError), ((1.5,), TypeError), (128, TypeError)])
def test_mlp_rejects_bad_widths(widths, exc):
    with pytest.raises(exc, match='widths'): mlp(widths=widths)
