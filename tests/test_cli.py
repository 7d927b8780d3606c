"`slowlearn fit` end to end on a small Fashion-MNIST-shaped slice, and its usage errors."
import csv, gzip, struct, subprocess, sys
import numpy as np, pytest, torch
from slowlearn.cli import fmnist_cnn

FILES = {'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
         'valid': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')}

def write_idx(fname, arr):
    "Write a uint8 array in IDX format (magic 2051 for 3-d images, 2049 for 1-d labels), gzipped."
    with gzip.open(fname, 'wb') as f:
        f.write(struct.pack('>I', 2048 + arr.ndim) + struct.pack(f'>{arr.ndim}I', *arr.shape) + arr.astype(np.uint8).tobytes())

@pytest.fixture
def tiny_fmnist(tmp_path):
    "A learnable 10-class slice: each class is a bright square at its own position."
    rng = np.random.default_rng(0)
    for split, n in (('train', 640), ('valid', 160)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(y): x[i, 2 * c:2 * c + 8, 2 * c:2 * c + 8] = 255
        write_idx(tmp_path / FILES[split][0], x); write_idx(tmp_path / FILES[split][1], y)
    return tmp_path

def slowlearn(*args, **kw):
    return subprocess.run([sys.executable, '-m', 'slowlearn.cli', *args], capture_output=True, text=True, **kw)

def test_fit_writes_model_and_history(tiny_fmnist, tmp_path):
    out = tmp_path / 'run'
    r = slowlearn('fit', '--data', str(tiny_fmnist), '--epochs', '2', '--bs', '64', '--out', str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'accuracy' in r.stdout and '\r' not in r.stdout
    model = fmnist_cnn(); model.load_state_dict(torch.load(out / 'model.pt', weights_only=True))
    rows = list(csv.DictReader(open(out / 'history.csv')))
    assert list(rows[0]) == ['epoch', 'phase', 'loss', 'accuracy']
    assert [(r['epoch'], r['phase']) for r in rows] == [('0', 'train'), ('0', 'valid'), ('1', 'train'), ('1', 'valid')]
    assert float(rows[-1]['accuracy']) > 0.5   # the squares are easy to tell apart

@pytest.mark.parametrize('args, msg', [(['--epochs', '-1'], '--epochs'), (['--bs', '0'], '--bs'), (['--lr', 'fast'], '--lr'),
                                       (['--data', '/no/such/folder'], '/no/such/folder'), (['--nope'], '--nope')])
def test_bad_options_give_one_line_and_exit_2(args, msg):
    r = slowlearn('fit', *args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr
    assert 'Traceback' not in r.stderr

def test_corrupt_data_folder_gives_one_line_and_exit_2(tiny_fmnist, tmp_path):
    (tiny_fmnist / FILES['train'][0]).write_bytes(b'not a gzip file')
    r = slowlearn('fit', '--data', str(tiny_fmnist), '--out', str(tmp_path / 'run'))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and FILES['train'][0] in r.stderr

def test_help_explains_every_option():
    r = slowlearn('fit', '--help')
    assert r.returncode == 0
    for opt in ('--epochs', '--lr', '--bs', '--data', '--out', '--seed'): assert opt in r.stdout
