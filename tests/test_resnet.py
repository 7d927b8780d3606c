"Batch augmentation against per-image slicing, `BatchAugmentCB` phases, and ResNet shapes and initialisation."
import math
from types import SimpleNamespace
import pytest, torch
import torch.nn.functional as F
from torch import nn
from slowlearn.learner import Learner, Callback
from slowlearn.resnet import ResBlock, ResNet, random_crop_flip, BatchAugmentCB
from slowlearn.layers import BatchNorm

def candidates(img, pad):
    "Every crop (with edge padding) and its mirror image of one image `(C, H, W)`, by slicing."
    c, h, w = img.shape
    p = F.pad(img[None], (pad,)*4, mode='replicate')[0]
    return [(i, j, f, v.flip(-1) if f else v) for i in range(2*pad + 1) for j in range(2*pad + 1) for f in (False, True)
            for v in [p[:, i:i+h, j:j+w]]]

def test_random_crop_flip_output_is_a_crop_or_mirrored_crop_of_its_input():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, 9, 11)
    out = random_crop_flip(x, pad=2, generator=g)
    assert out.shape == x.shape
    drawn = set()
    for k in range(len(x)):
        hits = [(i, j, f) for i, j, f, v in candidates(x[k], 2) if torch.equal(out[k], v)]
        assert hits, f'image {k} is not a crop of its input'
        drawn.add(hits[0])
    assert len(drawn) > 20   # the offsets and flips really vary per image

def test_random_crop_flip_without_pad_or_flip_is_identity():
    x = torch.randn(5, 1, 6, 6)
    assert torch.equal(random_crop_flip(x, pad=0, flip=False), x)

def test_random_crop_flip_flip_only_mirrors_about_half():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 5, 7)
    out = random_crop_flip(x, pad=0, flip=True, generator=g)
    same = [torch.equal(o, a) for o, a in zip(out, x)]
    mirrored = [torch.equal(o, a.flip(-1)) for o, a in zip(out, x)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 150 < sum(mirrored) < 250   # Binomial(400, 1/2): mean 200, sd 10

def test_random_crop_offsets_are_uniform():
    "A one-hot pixel shows each image's shift; every shift in {-p..p}² appears about equally often."
    g = torch.Generator().manual_seed(0)
    n, pad = 4500, 1
    x = torch.zeros(n, 1, 7, 7); x[:, 0, 3, 3] = 1.
    out = random_crop_flip(x, pad=pad, flip=False, generator=g)
    pos = out.flatten(1).argmax(1)
    counts = torch.bincount(pos, minlength=49)
    used = counts[counts > 0]
    assert len(used) == (2*pad + 1)**2
    assert (used - n / 9).abs().max() < 5 * math.sqrt(n / 9)

def test_random_crop_flip_is_reproducible_with_a_generator():
    x = torch.randn(8, 1, 10, 10)
    a = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    b = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)

def test_random_crop_flip_rejects_bad_input():
    with pytest.raises(ValueError, match=r'x must be a batch of images \(N, C, H, W\)'): random_crop_flip(torch.zeros(3, 28, 28))
    with pytest.raises(ValueError, match='pad must be an integer >= 0'): random_crop_flip(torch.zeros(1, 1, 4, 4), pad=-1)

def test_batch_augment_cb_changes_training_batches_only():
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 3, (32,))
    seen = []
    class Spy(Callback):
        order = 50
        def before_batch(self, learn): seen.append((learn.training, learn.batch[0], learn.batch[1]))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    dls = SimpleNamespace(train=[(x, y)], valid=[(x, y)])
    Learner(model, dls, cbs=[BatchAugmentCB(pad=2), Spy()]).fit(1)
    (t, xt, yt), (v, xv, yv) = seen
    assert t and not v
    assert not torch.equal(xt, x) and torch.equal(yt, y)
    assert torch.equal(xv, x) and torch.equal(yv, y)

def test_batch_augment_cb_rejects_non_callable():
    with pytest.raises(TypeError, match='tfm must be callable'): BatchAugmentCB(tfm=3)

@pytest.mark.parametrize('ni,nf,stride,hw,out_hw', [(16, 16, 1, 28, 28), (16, 32, 2, 28, 14), (32, 64, 2, 7, 4), (1, 8, 1, 5, 5)])
def test_resblock_shapes(ni, nf, stride, hw, out_hw):
    assert ResBlock(ni, nf, stride)(torch.randn(2, ni, hw, hw)).shape == (2, nf, out_hw, out_hw)

def test_resblock_skip_path_is_identity_when_shapes_match():
    blk = ResBlock(8, 8)
    with torch.no_grad(): blk.convs[1][1].weight.zero_()   # F(x) = 0
    x = torch.randn(4, 8, 6, 6)
    assert torch.equal(blk(x), F.relu(x))

def test_resblock_skip_path_pools_and_projects_when_shapes_change():
    torch.manual_seed(0)
    blk = ResBlock(4, 8, stride=2).eval()
    with torch.no_grad(): blk.convs[1][1].weight.zero_(); blk.convs[1][1].bias.zero_()
    x = torch.randn(2, 4, 6, 6)
    proj = blk.idconv
    assert torch.allclose(blk(x), F.relu(proj(F.avg_pool2d(x, 2))), atol=1e-6)

def test_resnet_shapes_and_kaiming_init():
    torch.manual_seed(0)
    m = ResNet(nfs=(8, 16, 32), n_in=3, n_out=5)
    assert m(torch.randn(2, 3, 28, 28)).shape == (2, 5)
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d) and mod.weight.numel() > 1000:
            fan_in = mod.weight[0].numel()
            assert mod.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.1)

def test_resnet_rejects_bad_nfs():
    with pytest.raises(ValueError, match='nfs must be a non-empty list of integers'): ResNet(nfs=())
    with pytest.raises(ValueError, match='nfs must be a non-empty list of integers'): ResNet(nfs=(16, 0))
    with pytest.raises(ValueError, match='stride must be 1 or 2'): ResBlock(4, 4, stride=3)

def test_resnet_learner_is_the_recipe_and_trains_a_step():
    from slowlearn.metrics import MetricsCB
    from slowlearn.speed import MixedPrecisionCB
    from slowlearn.resnet import resnet_learner
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    learn = resnet_learner(SimpleNamespace(train=[(x, y)], valid=[(x, y)]), norm=BatchNorm)   # eager: no compile wait
    assert {type(cb) for cb in learn.cbs} >= {MetricsCB, BatchAugmentCB, MixedPrecisionCB}
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1, lr=1e-3)
    assert [r['phase'] for r in learn.history] == ['train', 'valid'] and 0 <= learn.history[-1]['accuracy'] <= 1
    assert any(not torch.equal(a, b) for a, b in zip(w0, learn.model.parameters()))

def test_resnet_learner_uses_our_compiled_batchnorm_and_its_hyperparameters():
    from slowlearn.resnet import resnet_learner
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)
    learn = resnet_learner(SimpleNamespace(train=[(x, y)], valid=[(x, y)]), wd=0.05, label_smoothing=0.1)
    bns = [m for m in learn.model.modules() if isinstance(m, BatchNorm)]
    assert bns and all(m.compile is True for m in bns)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in learn.model.modules())
    assert learn.opt_func(learn.model.parameters(), 1e-3).defaults['weight_decay'] == 0.05
    out, t = torch.randn(4, 10, generator=g), torch.tensor([1, 2, 3, 4])
    torch.testing.assert_close(learn.loss_func(out, t), F.cross_entropy(out, t, label_smoothing=0.1))

def test_accuracy_on_counts_correct_argmax_in_eval_mode():
    from slowlearn.resnet import accuracy_on
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.9))
    with torch.no_grad(): model[1].weight.copy_(torch.eye(3, 4)); model[1].bias.zero_()
    x = torch.tensor([[5., 0, 0, 0], [0, 5, 0, 0], [0, 0, 5, 0], [5, 0, 0, 0]])
    dl = [(x[:2], torch.tensor([0, 1])), (x[2:], torch.tensor([2, 1]))]   # the last is wrong
    assert accuracy_on(model, dl) == 0.75 and not model.training        # eval mode: dropout off

def test_resnet_with_our_batchnorm_trains_under_bfloat16_autocast_like_nn_batchnorm2d():
    "Our BatchNorm under CPU bfloat16 autocast: bfloat16 logits, float32 statistics and gradients, and the same logits as nn.BatchNorm2d within bfloat16's resolution."
    torch.manual_seed(0)
    ours = ResNet(nfs=(8, 16), norm=BatchNorm)
    ref = ResNet(nfs=(8, 16), norm=nn.BatchNorm2d)
    missing, unexpected = ref.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected and all(k.endswith('num_batches_tracked') for k in missing)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    with torch.autocast('cpu', torch.bfloat16): out, out_ref = ours(x), ref(x)
    F.cross_entropy(out.float(), y).backward()
    bn = ours[0].convs[0][1]
    assert (out.dtype, bn.running_mean.dtype, bn.weight.grad.dtype) == (torch.bfloat16, torch.float32, torch.float32)
    assert all(p.grad is not None and p.grad.isfinite().all() for p in ours.parameters())
    torch.testing.assert_close(out.float(), out_ref.float(), atol=0.1, rtol=0.05)
    torch.testing.assert_close(bn.running_mean, ref[0].convs[0][1].running_mean, atol=1e-2, rtol=1e-2)
