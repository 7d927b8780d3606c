"Shared test setup: the `slow` marker's `--runslow` flag and a tiny Fashion-MNIST-shaped data folder."
import gzip, struct
import numpy as np, pytest

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
