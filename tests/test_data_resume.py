"Exact resume with the loaders people use: a fit killed anywhere and resumed in a fresh learner ends bit for bit like an uninterrupted one."
import warnings, pytest, torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, IterableDataset, DistributedSampler
from slowlearn.learner import Learner, Callback
from slowlearn.metrics import MetricsCB
from slowlearn.data import DataLoaders, TensorLoader
from slowlearn.checkpoint import CheckpointCB
from slowlearn.distributed import DDPCB
from crash import Crash, CrashAt
from conftest import sign_data

torchdata = pytest.importorskip('torchdata.stateful_dataloader')

pytestmark = pytest.mark.usefixtures('one_thread')

N, BS, EPOCHS = 96, 16, 3      # 6 batches an epoch, 18 optimizer steps

def data(): return sign_data(N, 32, ni=6, sign=-1)

class Counter:
    "A loader with its own `state_dict`: batches of `x`, `y` in a order drawn from its own seed and pass number."
    def __init__(self, x, y): self.x,self.y,self.k,self.i = x,y,0,0
    def __len__(self): return N // BS
    def __iter__(self):
        perm = torch.randperm(N, generator=torch.Generator().manual_seed(self.k))
        while self.i < len(self):
            idx = perm[self.i*BS:(self.i + 1)*BS]; self.i += 1
            yield self.x[idx], self.y[idx]
        self.k,self.i = self.k + 1,0
    def state_dict(self): return dict(k=self.k, i=self.i)
    def load_state_dict(self, sd): self.k,self.i = sd['k'],sd['i']

class Shuffled(IterableDataset):
    "An iterable dataset with `state_dict`: its items in an order drawn from its pass number, counting the items given."
    def __init__(self, x, y): self.x,self.y,self.k,self.i = x,y,0,0
    def __iter__(self):
        perm = torch.randperm(N, generator=torch.Generator().manual_seed(100 + self.k))
        while self.i < N: j = perm[self.i]; self.i += 1; yield self.x[j], self.y[j]
        self.k,self.i = self.k + 1,0
    def state_dict(self): return dict(k=self.k, i=self.i)
    def load_state_dict(self, sd): self.k,self.i = sd['k'],sd['i']

def train_loader(kind, x, y):
    "A fresh training loader of `kind`, as a new process would build it."
    ds = TensorDataset(x, y)
    if kind == 'TensorLoader': return TensorLoader(x, y, bs=BS, shuffle=True, seed=1)
    if kind == 'global': return DataLoader(ds, batch_size=BS, shuffle=True)
    if kind == 'generator': return DataLoader(ds, batch_size=BS, shuffle=True, generator=torch.Generator().manual_seed(0))
    if kind == 'workers': return DataLoader(ds, batch_size=BS, shuffle=True, num_workers=2)
    if kind == 'distributed': return DataLoader(ds, batch_size=BS // 2, sampler=DistributedSampler(ds, num_replicas=2, rank=1, seed=3))
    if kind == 'stateful': return torchdata.StatefulDataLoader(ds, batch_size=BS, shuffle=True)
    if kind == 'stateful-workers': return torchdata.StatefulDataLoader(ds, batch_size=BS, shuffle=True, num_workers=2)
    if kind == 'state_dict': return Counter(x, y)
    if kind == 'dataset_state': return DataLoader(Shuffled(x, y), batch_size=BS)
KINDS = ['TensorLoader', 'global', 'generator', 'workers', 'distributed', 'stateful', 'state_dict', 'dataset_state']

class Noise(Callback):
    "Draw from the global generator in every training batch, as augmentations and dropout do."
    def before_batch(self, learn):
        if learn.training: xb, yb = learn.batch; learn.batch = (xb + 0.01*torch.randn_like(xb), yb)

class CrashAfterEpoch(Callback):
    "Raise `Crash` after epoch `e` (and its end-of-epoch checkpoint)."
    order = CrashAt.order
    def __init__(self, e): self.e = e
    def after_epoch(self, learn):
        if not learn.training and learn.epoch == self.e: raise Crash()

def make(kind, cbs=(), seed=0):
    x, y, xv, yv = data()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
    dls = DataLoaders(train_loader(kind, x, y), DataLoader(TensorDataset(xv, yv), batch_size=BS))
    return Learner(model, dls, lr=0.05, opt_func=torch.optim.Adam, cbs=[MetricsCB(), Noise(), DDPCB()] + list(cbs))

_refs = {}
def uninterrupted(kind):
    if kind not in _refs:
        learn = make(kind); learn.fit(EPOCHS)
        _refs[kind] = [p.detach().clone() for p in learn.model.parameters()], learn.history
    return _refs[kind]

# mid-epoch in the first, middle and last epoch; after an epoch's last batch; after an epoch's validation
KILLS = [CrashAt(3), CrashAt(8), CrashAt(16), CrashAt(6), CrashAt(18), CrashAfterEpoch(0), CrashAfterEpoch(1)]
IDS = ['step3', 'step8', 'step16', 'step6-end0', 'step18-end2', 'after-epoch0', 'after-epoch1']

# every kind at every kill point; torchdata's loader with workers (10 s a run) at one mid-epoch and one epoch-end point
CASES = [pytest.param(k, c, id=f'{k}-{i}') for k in KINDS for c, i in zip(KILLS, IDS)]
CASES += [pytest.param('stateful-workers', KILLS[i], id=f'stateful-workers-{IDS[i]}') for i in (1, 6)]

@pytest.mark.parametrize('kind,kill', CASES)
def test_killed_and_resumed_fit_is_bit_identical(tmp_path, kind, kill):
    params, history = uninterrupted(kind)
    with pytest.raises(Crash): make(kind, [CheckpointCB(tmp_path, every_n_steps=1), kill]).fit(EPOCHS)
    torch.manual_seed(1234)       # a new process: other global random state, other initial weights, a fresh loader
    learn = make(kind, [ck := CheckpointCB(tmp_path, every_n_steps=1)], seed=5)
    with warnings.catch_warnings(record=True) as ws: warnings.simplefilter('always'); learn.fit(EPOCHS, resume=True)
    assert not [str(w.message) for w in ws if 'slowlearn' in w.filename]     # nothing to warn about
    assert ck.resumed is not None
    assert all(torch.equal(a, b) for a, b in zip(learn.model.parameters(), params))
    assert learn.history == history

def test_a_loader_whose_order_cant_be_restored_warns_once_naming_it(tmp_path):
    x, y, xv, yv = data()
    class Batches:
        "A plain iterable without state, set_epoch or a sequence's order."
        def __iter__(self): return iter([(x[i:i+BS], y[i:i+BS]) for i in range(0, N, BS)])
    def mk(cbs): torch.manual_seed(0); return Learner(nn.Linear(6, 2), DataLoaders(Batches(), [(xv, yv)]), cbs=cbs)
    with pytest.raises(Crash): mk([CheckpointCB(tmp_path, every_n_steps=1), CrashAt(8)]).fit(2)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always'); mk([CheckpointCB(tmp_path, every_n_steps=1)]).fit(2, resume=True)
    msgs = [str(w.message) for w in ws if "can't be restored" in str(w.message)]
    assert len(msgs) == 1 and 'Batches' in msgs[0] and 'state_dict' in msgs[0]

@pytest.mark.parametrize('kill', [CrashAt(3), CrashAt(6), CrashAt(7), CrashAfterEpoch(1)], ids=['step3', 'step6-pass-end', 'step7', 'after-epoch1'])
@pytest.mark.parametrize('kind', ['global', 'generator', 'stateful'])
def test_virtual_epochs_over_a_torch_loader_resume_bit_identical(tmp_path, kind, kill):
    "Virtual epochs of 4 batches over passes of 6: a resume lands mid-pass, at a pass's end, or at a virtual epoch's end mid-pass."
    ref = make(kind); ref.fit(EPOCHS, steps_per_epoch=4)
    with pytest.raises(Crash): make(kind, [CheckpointCB(tmp_path, every_n_steps=1), kill]).fit(EPOCHS, steps_per_epoch=4)
    torch.manual_seed(1234)
    learn = make(kind, [CheckpointCB(tmp_path, every_n_steps=1)], seed=5); learn.fit(EPOCHS, steps_per_epoch=4, resume=True)
    assert all(torch.equal(a, b) for a, b in zip(learn.model.parameters(), ref.model.parameters()))
    assert learn.history == ref.history

def test_a_distributed_sampler_is_told_each_epoch():
    "Epoch e of a fit reads what `DistributedSampler.set_epoch(e)` orders, as torch's own recipe does."
    x, y, xv, yv = data()
    seen = []
    class Rec(Callback):
        def before_batch(self, learn):
            if learn.training: seen.append(learn.batch[0])
    Learner(nn.Linear(6, 2), DataLoaders(train_loader('distributed', x, y), [(xv, yv)]), cbs=Rec()).fit(2)
    ref = DistributedSampler(TensorDataset(x, y), num_replicas=2, rank=1, seed=3)
    for e in range(2):
        ref.set_epoch(e)
        assert torch.equal(torch.cat(seen[e*6:(e + 1)*6]), x[list(ref)])
