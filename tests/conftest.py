"Shared test setup: the `slow` marker's `--runslow` flag and a tiny Fashion-MNIST-shaped data folder."
import gzip, struct
import numpy as np, pytest, torch

def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', default=False, help='also run the tests marked slow')

def pytest_collection_modifyitems(config, items):
    if config.getoption('--runslow') or 'slow' in (config.getoption('-m') or ''): return
    skip = pytest.mark.skip(reason='slow: run with --runslow (or -m slow)')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)

FILES = {'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
         'valid': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')}

def write_idx(fname, arr):
    "Write a uint8 array in IDX format (magic 2051 for 3-d images, 2049 for 1-d labels), gzipped."
    with gzip.open(fname, 'wb') as f:
        f.write(struct.pack('>I', 2048 + arr.ndim) + struct.pack(f'>{arr.ndim}I', *arr.shape) + arr.astype(np.uint8).tobytes())

@pytest.fixture
def tiny_fmnist(tmp_path):
    "A learnable 10-class slice (640 training, 160 validation images): each class is a bright square at its own position."
    rng = np.random.default_rng(0)
    for split, n in (('train', 640), ('valid', 160)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(y): x[i, 2 * c:2 * c + 8, 2 * c:2 * c + 8] = 255
        write_idx(tmp_path / FILES[split][0], x); write_idx(tmp_path / FILES[split][1], y)
    return tmp_path

USER_MODULE = '''
import os, time, torch
from torch import nn
from slowlearn.data import DataLoaders
def make_net(width=16):
    net = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 2))
    if (delay := float(os.environ.get('EXP_MOD_DELAY', 0))):     # a slow model, for tests that kill the run in the middle
        net.register_forward_pre_hook(lambda m, inp: time.sleep(delay))
    return net
def make_dls(n=256, bs=32, seed=0):
    g = torch.Generator().manual_seed(123)
    x = torch.randn(n, 2, generator=g); y = (x[:, 0] * x[:, 1] > 0).long()     # XOR of the signs
    k = n * 3 // 4
    return DataLoaders.from_tensors(x[:k], y[:k], x[k:], y[k:], bs=bs, seed=seed)
def not_dls(**kwargs): return [1, 2]
not_callable = 3
'''

@pytest.fixture
def user_module(tmp_path, monkeypatch):
    "A folder holding `exp_mod.py`, a user's model (`make_net`) and data (`make_dls`) outside the package, put on `sys.path`."
    import sys
    d = tmp_path/'user_pkgs'; d.mkdir()
    (d/'exp_mod.py').write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(d))
    yield d
    sys.modules.pop('exp_mod', None)

@pytest.fixture
def one_thread():
    "One torch thread for the test: tiny models run faster, and the same thread count on both sides is what makes a resumed run and an uninterrupted one agree bit for bit."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
