"Shared test setup: the `slow` marker's `--runslow` flag, a tiny Fashion-MNIST-shaped data folder, and the small data, models and learners several test files train."
import errno, glob, gzip, json, os, struct, time
import numpy as np, pytest, torch
import torch.nn.functional as F
from torch import nn
from torcheval.metrics import MulticlassAccuracy
from slowlearn.learner import Learner, Callback
from slowlearn.metrics import MetricsCB
from slowlearn.data import DataLoaders
from slowlearn.checkpoint import CheckpointCB
from slowlearn.experiments import TrainConfig
from crash import Crash, CrashAt

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
def tiny_fashion_mnist(tmp_path, request):
    "A learnable 10-class slice (640 training, 160 validation images, or `(n_train, n_valid)` by indirect parametrization): each class is a bright square at its own position."
    rng = np.random.default_rng(0)
    for split, n in zip(('train', 'valid'), getattr(request, 'param', (640, 160))):
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

@pytest.fixture(scope='session')
def fashion_arrays():
    "Fashion-MNIST as `(x_train, y_train, x_valid, y_valid)`, standardised (needs SLOWLEARN_DATA, as the notebooks do)."
    from slowlearn.data import load_fashion_mnist
    return load_fashion_mnist()

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

@pytest.fixture
def fake_fashion_mnist(monkeypatch):
    "Small random stand-in for Fashion-MNIST, so fit_config runs in a fraction of a second."
    import slowlearn.experiments as E
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(300, 1, 28, 28, generator=g), torch.randint(0, 10, (300,), generator=g),
            torch.randn(100, 1, 28, 28, generator=g), torch.randint(0, 10, (100,), generator=g))
    monkeypatch.setattr(E, 'load_fashion_mnist', lambda path=None, normalize=True: data)
    return data

SMALL = TrainConfig(model='mlp', widths=(16,), n_train=200, n_valid=64, epochs=3, bs=32, lr=1e-2)   # a run of a few seconds on `fake_fashion_mnist`

# ---- small data and models the tests train on (plain functions: tests call them with their own sizes)

def batches_of(x, y, bs=32):
    "Consecutive `(x, y)` batches of `bs` rows, the last one shorter if `bs` doesn't divide `len(x)`."
    return [(x[i:i+bs], y[i:i+bs]) for i in range(0, len(x), bs)]

def class_batches(n, bs, seed=0, ni=10, nc=3, noise=0.1):
    "`n` batches of `bs` rows of `ni` features; the class is the argmax of the first `nc` features plus `noise` (a learnable rule)."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n * bs, ni, generator=g)
    y = (x[:, :nc] + noise * torch.randn(n * bs, nc, generator=g)).argmax(1)
    return batches_of(x, y, bs)

def sign_data(n=160, nv=32, seed=0, ni=8, sign=1):
    "`n` training and `nv` validation rows of `ni` features, of class 1 where `x0 + sign * x1 > 0`: `(x, y, x_valid, y_valid)`."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + nv, ni, generator=g); y = (x[:, 0] + sign * x[:, 1] > 0).long()
    return x[:n], y[:n], x[n:], y[n:]

def linear_dls(n_train=64, n_valid=32, bs=16, seed=0):
    "`DataLoaders` over 4 features whose class (of 3) is the argmax of a random linear map of them."
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(n_train + n_valid, 4, generator=g), torch.randn(4, 3, generator=g)
    y = (x @ w).argmax(1)
    return DataLoaders.from_tensors(x[:n_train], y[:n_train], x[n_train:], y[n_train:], bs=bs, seed=seed)

def bn_mlp(seed=0, bn=True):
    "4 features -> 8 (BatchNorm unless `bn=False`) -> 3 classes, seeded."
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8) if bn else nn.Identity(), nn.ReLU(), nn.Linear(8, 3))

# ---- a small learner for the checkpoint and resume tests

class OneCycle(Callback):
    "torch's `OneCycleLR` up to `lr_max`, stepped after each optimizer step, with its state in the checkpoints."
    def __init__(self, lr_max=0.05): self.lr_max = lr_max
    def before_fit(self, learn):
        self.sched = torch.optim.lr_scheduler.OneCycleLR(learn.opt, self.lr_max, total_steps=learn.n_epochs * learn.n_steps)
    def after_step(self, learn): self.sched.step()
    def state_dict(self): return self.sched.state_dict()
    def load_state_dict(self, sd): self.sched.load_state_dict(sd)

class ScriptedValid(Callback):
    "Append a valid record with a scripted loss each epoch (instead of MetricsCB)."
    def __init__(self, losses): self.losses = losses
    def after_epoch(self, learn):
        if not learn.training: learn.history.append(dict(epoch=learn.epoch, phase='valid', loss=self.losses[learn.epoch]))

def make_learn(cbs=(), bs=16, lr=0.05, dropout=0.2, seed=0, dls=None, opt_func=torch.optim.Adam, loss_func=F.cross_entropy):
    "A `Learner` with dropout and Adam on `sign_data()` (10 batches an epoch), `MetricsCB` first."
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 2))
    dls = dls or DataLoaders.from_tensors(*sign_data(), bs=bs, seed=3)
    return Learner(model, dls, loss_func, lr=lr, opt_func=opt_func, cbs=[MetricsCB(MulticlassAccuracy())] + list(cbs))

def states_equal(a, b): return all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))

def crash_then_resume(tmp_path, at, n_epochs=3, make=make_learn, fit_kw={}, **ck_kw):
    "Crash a fit at training step `at`, then resume it in a fresh learner with other initial weights: `(learner, its CheckpointCB)`."
    with pytest.raises(Crash): make([OneCycle(), CheckpointCB(tmp_path, **ck_kw), CrashAt(at)]).fit(n_epochs, **fit_kw)
    ck = CheckpointCB(tmp_path, **ck_kw)
    learn = make([OneCycle(), ck], seed=7)      # other initial weights: everything must come from the checkpoint
    learn.fit(n_epochs, resume=True, **fit_kw)
    return learn, ck

class FillsUp:
    "A file object whose disk is full after `room` bytes."
    def __init__(self, f, room): self.f,self.room = f,room
    def write(self, b):
        if len(b) > self.room: raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b); return self.f.write(b)
    def flush(self): self.f.flush()

# ---- reading back what W&B wrote offline

def wandb_records(path):
    "The protobuf records of a .wandb run file (W&B's LevelDB-style log: a 7-byte file header, 32 KiB blocks of chunks)."
    from wandb.proto import wandb_internal_pb2 as pb
    data = open(path, 'rb').read()
    assert data[:4] == b':W&B'
    pos,buf = 7,b''
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7: pos += 32768 - pos % 32768; continue       # a block's tail too short for a chunk header
        _crc,n,kind = struct.unpack('<IHB', data[pos:pos + 7]); pos += 7
        if kind == 0: break
        buf += data[pos:pos + n]; pos += n
        if kind in (1, 4):                                                      # a full record, or the last chunk of one
            r = pb.Record(); r.ParseFromString(buf); buf = b''
            yield r

def finished_records(path, timeout=60):
    "The records of `path` once its exit record is there: W&B's service process writes the file after `finish` returns."
    t0 = time.monotonic()
    while True:
        rs = list(wandb_records(path))
        if any(r.WhichOneof('record_type') == 'exit' for r in rs) or time.monotonic() - t0 > timeout: return rs
        time.sleep(0.1)

def wandb_run(run_dir):
    "The run id, config, history rows, artifacts and exit code of one offline run folder."
    [f] = glob.glob(f'{run_dir}/run-*.wandb')
    res = dict(rows=[], artifacts=[], exit=None)
    for r in finished_records(f):
        k = r.WhichOneof('record_type')
        if k == 'run': res['id'],res['config'] = r.run.run_id,{i.key: json.loads(i.value_json) for i in r.run.config.update if i.key != '_wandb'}
        elif k == 'history': res['rows'].append({k: json.loads(i.value_json) for i in r.history.item if not (k := i.key or '/'.join(i.nested_key)).startswith('_')})
        elif k == 'artifact': res['artifacts'].append((r.artifact.type, [m.path for m in r.artifact.manifest.contents]))
        elif k == 'exit': res['exit'] = r.exit.exit_code
    return res

def wandb_runs(d): return [wandb_run(p) for p in sorted(glob.glob(f'{d}/wandb/offline-run-*'))]
