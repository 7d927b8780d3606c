"Checkpoints and exact resume (also after SIGKILL), atomic writes, safe loading, early stopping, NaN, gradient accumulation, virtual epochs."
import errno, hashlib, json, os, pickle, random, shutil, signal, subprocess, sys, warnings
from pathlib import Path
import numpy as np, pytest, torch
import torch.nn.functional as F
from torch import nn
from torcheval.metrics import MulticlassAccuracy
from slowlearn.learner import Learner, Callback, CancelStepException
from slowlearn.metrics import MetricsCB
from slowlearn.data import DataLoaders
from slowlearn.checkpoint import (CheckpointCB, EarlyStoppingCB, TerminateOnNaNCB, CheckpointError,
                                  rng_states, set_rng_states, atomic_write, save_checkpoint, load_checkpoint, WriteError)
from slowlearn.optim import GradAccumCB
import slowlearn.checkpoint as C
from crash import Crash, CrashAt

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures('one_thread')

# A training job with everything that makes exact resume hard: dropout (torch RNG), an augmentation drawing
# from NumPy's and Python's generators, a one-cycle LR schedule, AdamW state, shuffled data, metrics.
JOB = r'''
import random, sys, numpy as np, torch
from torch import nn
torch.set_num_threads(1)
from torcheval.metrics import MulticlassAccuracy
from slowlearn.learner import Learner, Callback
from slowlearn.metrics import MetricsCB
from slowlearn.data import DataLoaders
from slowlearn.checkpoint import CheckpointCB

class OneCycle(Callback):
    def before_fit(self, learn):
        self.sched = torch.optim.lr_scheduler.OneCycleLR(learn.opt, 0.02, total_steps=learn.n_epochs * learn.n_steps)
    def after_step(self, learn): self.sched.step()
    def state_dict(self): return self.sched.state_dict()
    def load_state_dict(self, sd): self.sched.load_state_dict(sd)

class Jitter(Callback):
    def before_batch(self, learn):
        if learn.training:
            xb, yb = learn.batch
            learn.batch = (xb + 0.05 * float(np.random.randn()) + random.gauss(0, 0.05), yb)

class Tick(Callback):
    order = 50  # before CheckpointCB's after_batch: the parent's kill races the checkpoint write
    def before_fit(self, learn): self.said = False
    def before_epoch(self, learn):   # after CheckpointCB's before_fit has resumed (or not)
        if not self.said: print('resumed', ck.resumed if ckdir != '-' else None, flush=True); self.said = True
    def after_batch(self, learn):
        if learn.training: print(learn.train_iter, flush=True)

ckdir, out = sys.argv[1], sys.argv[2]
g = torch.Generator().manual_seed(0)
x = torch.randn(448, 20, generator=g); y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
torch.manual_seed(0); np.random.seed(0); random.seed(0)
model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
dls = DataLoaders.from_tensors(x[:384], y[:384], x[384:], y[384:], bs=16, seed=1)
cbs = [MetricsCB(MulticlassAccuracy()), Jitter(), OneCycle(), Tick()]
if ckdir != '-': cbs.append(ck := CheckpointCB(ckdir, every_n_steps=3, keep_last=2, async_save=len(sys.argv) > 3))
learn = Learner(model, dls, lr=0.02, cbs=cbs, opt_func=torch.optim.AdamW)
learn.fit(3, resume=True if ckdir != '-' else None)
torch.save(dict(model=learn.model.state_dict(), opt=learn.opt.state_dict(), history=learn.history), out)
'''
N_STEPS = 3 * 24   # 384 / 16 batches per epoch

def job(ckdir, out, kill_after=None, async_save=False):
    "Run JOB; with `kill_after`, SIGKILL it as soon as it reports that many optimizer steps. Returns (returncode, stdout lines)."
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, '-c', JOB, str(ckdir), str(out)] + ['async'] * async_save, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    lines = []
    for line in p.stdout:
        lines.append(line.strip())
        if kill_after is not None and line.strip() == str(kill_after): os.kill(p.pid, signal.SIGKILL)
    p.stdout.close()   # read to the end: on a busy machine the job can run a few steps more before the kill lands
    return p.wait(timeout=120), lines

@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp('ref')/'final.pt'
    rc, _ = job('-', out)
    assert rc == 0
    return torch.load(out, weights_only=True)

def assert_same_state(a, b):
    assert a['model'].keys() == b['model'].keys()
    for k in a['model']: assert torch.equal(a['model'][k], b['model'][k]), k
    assert a['opt']['param_groups'] == b['opt']['param_groups']
    for i, st in a['opt']['state'].items():
        for k, v in st.items(): assert torch.equal(v, b['opt']['state'][i][k]), (i, k)
    assert a['history'] == b['history']

def test_sigkilled_at_random_moments_and_resumed_run_is_bit_identical(tmp_path, uninterrupted):
    "Kill the job twice (in epoch 0 or 1, then in epoch 2), resume each time; the end state equals the uninterrupted run's."
    rng = random.Random(0)
    kills = [rng.randrange(4, 46), rng.randrange(50, N_STEPS - 2)]
    positions,reached = [],[]
    for k in kills + [None]:
        rc, lines = job(tmp_path/'ck', tmp_path/'final.pt', kill_after=k)
        assert rc == (0 if k is None else -signal.SIGKILL)
        positions.append(eval(lines[0].removeprefix('resumed ')))
        reached.append(int(lines[-1]))           # the last step it reported before the kill landed
    assert positions[0] is None and all(p['step'] <= r for p, r in zip(positions[1:], reached))
    assert any(0 < p['iter'] < 24 for p in positions[1:])       # at least one resume starts mid-epoch
    assert_same_state(torch.load(tmp_path/'final.pt', weights_only=True), uninterrupted)

def test_sigkilled_during_a_background_write_then_resumed_is_bit_identical(tmp_path, uninterrupted):
    "With async_save, SIGKILL the job while a checkpoint is being written in the background: the previous one is used."
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO))
    ck = tmp_path/'ck'
    for attempt in range(20):   # the kill must land while a write is under way; a run that ends first is run again
        p = subprocess.Popen([sys.executable, '-c', JOB, str(ck), str(tmp_path/'final.pt'), 'async'], stdout=subprocess.DEVNULL, cwd=REPO, env=env)
        while p.poll() is None and not ((ck/'index.json').exists() and list(ck.glob(f'.ckpt-*.{p.pid}.tmp'))): pass
        p.kill(); p.wait()
        if p.returncode == -signal.SIGKILL: break
        shutil.rmtree(ck)
    assert p.returncode == -signal.SIGKILL and list(ck.glob(f'.ckpt-*.{p.pid}.tmp'))     # killed in the middle of a write
    rc, lines = job(ck, tmp_path/'final.pt', async_save=True)
    resumed = eval(lines[0].removeprefix('resumed '))
    assert rc == 0 and resumed['step'] > 0
    assert_same_state(torch.load(tmp_path/'final.pt', weights_only=True), uninterrupted)

# ---- in-process helpers

class OneCycle(Callback):
    def before_fit(self, learn):
        self.sched = torch.optim.lr_scheduler.OneCycleLR(learn.opt, 0.05, total_steps=learn.n_epochs * learn.n_steps)
    def after_step(self, learn): self.sched.step()
    def state_dict(self): return self.sched.state_dict()
    def load_state_dict(self, sd): self.sched.load_state_dict(sd)

def data(n=160, nv=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + nv, 8, generator=g); y = (x[:, 0] + x[:, 1] > 0).long()
    return x[:n], y[:n], x[n:], y[n:]

def make_learn(cbs=(), bs=16, lr=0.05, dropout=0.2, seed=0, dls=None, opt_func=torch.optim.Adam, loss_func=F.cross_entropy):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 2))
    dls = dls or DataLoaders.from_tensors(*data(), bs=bs, seed=3)
    return Learner(model, dls, loss_func, lr=lr, opt_func=opt_func, cbs=[MetricsCB(MulticlassAccuracy())] + list(cbs))

def states_equal(a, b): return all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))

def crash_then_resume(tmp_path, at, n_epochs=3, make=make_learn, fit_kw={}, **ck_kw):
    with pytest.raises(Crash): make([OneCycle(), CheckpointCB(tmp_path, **ck_kw), CrashAt(at)]).fit(n_epochs, **fit_kw)
    ck = CheckpointCB(tmp_path, **ck_kw)
    learn = make([OneCycle(), ck], seed=7)      # other initial weights: everything must come from the checkpoint
    learn.fit(n_epochs, resume=True, **fit_kw)
    return learn, ck

# ---- checkpoint contents and resume

def test_rng_states_replay_the_same_draws():
    st = rng_states()
    ref = torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)]
    torch.manual_seed(1); np.random.seed(1); random.seed(1)
    set_rng_states(st)
    assert torch.equal(torch.rand(4), ref[0]) and np.array_equal(np.random.rand(4), ref[1])
    assert [random.random() for _ in range(4)] == ref[2]

def test_checkpoint_holds_the_full_state(tmp_path):
    learn = make_learn([OneCycle(), ck := CheckpointCB(tmp_path, every_n_steps=7)])
    learn.fit(2)
    first = load_checkpoint(tmp_path/ck.checkpoints[0]['file'])
    assert {'model', 'opt', 'callbacks', 'pos', 'rng', 'fit', 'data'} <= set(first)
    assert {'epoch', 'iter', 'opt_steps', 'history', 'loader'} <= set(first['pos'])
    assert (first['pos']['epoch'], first['pos']['iter'], first['pos']['opt_steps']) == (1, 4, 14)     # 10 batches an epoch: after step 14
    assert set(first['rng']) >= {'torch', 'numpy', 'python'} and set(first['callbacks']) == {'MetricsCB', 'OneCycle'}
    assert first['fit'] == dict(n_epochs=2, lr=0.05, train=True, valid=True, steps_per_epoch=None)
    assert first['data']['seed'] == 3 and first['data']['shuffle'] is True
    assert [(r['epoch'], r['phase']) for r in first['pos']['history']] == [(0, 'train'), (0, 'valid')]
    assert first['callbacks']['OneCycle']['last_epoch'] == 14 and first['callbacks']['MetricsCB']['n'] == 4 * 16

def test_only_the_main_process_writes_checkpoints(tmp_path, monkeypatch):
    "Under torchrun (RANK set, before a process group exists) ranks above 0 neither checkpoint nor save."
    monkeypatch.setenv('RANK', '1'); monkeypatch.setenv('WORLD_SIZE', '2')
    learn = make_learn([CheckpointCB(tmp_path/'ck', every_n_steps=3)]); learn.fit(1)
    learn.save(tmp_path/'model.pt')
    assert not (tmp_path/'model.pt').exists() and not any((tmp_path/'ck').glob('*.pt'))
    monkeypatch.setenv('RANK', '0')
    learn.fit(1); learn.save(tmp_path/'model.pt')
    assert (tmp_path/'model.pt').exists() and any((tmp_path/'ck').glob('*.pt'))

@pytest.mark.parametrize('at', [4, 10, 23])  # mid-epoch, right after an epoch's last step, mid-epoch of the last epoch
def test_resume_after_crash_equals_uninterrupted(tmp_path, at):
    ref = make_learn([OneCycle()]); ref.fit(3)
    learn, ck = crash_then_resume(tmp_path, at, every_n_steps=3)
    assert ck.resumed['step'] == at // 3 * 3
    assert learn.history == ref.history and states_equal(learn, ref) and learn.train_iter == ref.train_iter

def test_resume_with_a_loader_without_set_epoch(tmp_path):
    "A plain list of batches: the resumed epoch skips the batches already done."
    dls = DataLoaders(list(DataLoaders.from_tensors(*data(), bs=16, shuffle=False).train), [])
    make = lambda cbs, seed=0: make_learn(cbs, dls=dls, seed=seed)
    ref = make([OneCycle()]); ref.fit(2, valid=False)
    learn, _ = crash_then_resume(tmp_path, 13, n_epochs=2, make=make, fit_kw=dict(valid=False), every_n_steps=2, monitor=None)
    assert states_equal(learn, ref) and learn.history == ref.history

def test_resume_true_on_an_empty_folder_starts_fresh(tmp_path):
    ref = make_learn(); ref.fit(2)
    learn = make_learn([ck := CheckpointCB(tmp_path/'new')]); learn.fit(2, resume=True)
    assert ck.resumed is None and states_equal(learn, ref) and learn.history == ref.history

def test_resume_from_a_given_file(tmp_path):
    ref = make_learn([OneCycle()]); ref.fit(3)
    make_learn([OneCycle(), ck := CheckpointCB(tmp_path/'a', keep_last=5)]).fit(3)
    after_epoch0 = tmp_path/'a'/ck.checkpoints[0]['file']
    learn = make_learn([OneCycle(), CheckpointCB(tmp_path/'b')], seed=5); learn.fit(3, resume=after_epoch0)
    assert states_equal(learn, ref) and learn.history == ref.history

def test_resume_needs_a_checkpoint_callback():
    with pytest.raises(ValueError, match='resume'): make_learn().fit(1, resume=True)

def test_resume_with_other_fit_arguments_warns(tmp_path):
    make_learn([CheckpointCB(tmp_path)]).fit(1)
    with pytest.warns(UserWarning, match='n_epochs: 1 then, 3 now'): make_learn([CheckpointCB(tmp_path)]).fit(3, resume=True)

def test_fresh_fit_in_a_used_folder_warns_and_replaces_old_checkpoints(tmp_path):
    make_learn([CheckpointCB(tmp_path)]).fit(2)
    old = {p.name for p in tmp_path.glob('ckpt-*')}
    with pytest.warns(UserWarning, match='earlier fit'): make_learn([ck := CheckpointCB(tmp_path)]).fit(1)
    assert not old & {p.name for p in tmp_path.glob('ckpt-*')} and len(ck.checkpoints) == 1

# ---- keeping, atomicity, corruption, safety

class ScriptedValid(Callback):
    "Append a valid record with a scripted loss each epoch (instead of MetricsCB)."
    def __init__(self, losses): self.losses = losses
    def after_epoch(self, learn):
        if not learn.training: learn.history.append(dict(epoch=learn.epoch, phase='valid', loss=self.losses[learn.epoch]))

def test_keep_last_and_keep_best(tmp_path):
    losses = [5., 3., 4., 1., 2., 6., 2.5]
    learn = Learner(nn.Linear(8, 2), DataLoaders.from_tensors(*data(), bs=32), cbs=[ScriptedValid(losses),
                    ck := CheckpointCB(tmp_path, keep_last=2, keep_best=2)])
    learn.fit(len(losses))
    assert [e['epoch'] for e in ck.checkpoints] == [3, 4, 5, 6]     # the best two (1.0, 2.0) and the newest two
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([e['file'] for e in ck.checkpoints] + ['index.json'])
    assert ck.best_path.name == ck.checkpoints[0]['file'] and ck.last_path.name == ck.checkpoints[-1]['file']
    assert json.loads((tmp_path/'index.json').read_text())['checkpoints'] == ck.checkpoints

def test_mode_max_keeps_the_highest(tmp_path):
    learn = Learner(nn.Linear(8, 2), DataLoaders.from_tensors(*data(), bs=32), cbs=[ScriptedValid([1., 3., 2., 0.]),
                    ck := CheckpointCB(tmp_path, mode='max', keep_last=1, keep_best=1)])
    learn.fit(4)
    assert [e['epoch'] for e in ck.checkpoints] == [1, 3]

def test_a_write_that_dies_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    with pytest.raises(Crash): make_learn([ck := CheckpointCB(tmp_path), CrashAt(12)]).fit(2)
    before = (tmp_path/'index.json').read_bytes(), {p.name: p.read_bytes() for p in tmp_path.glob('ckpt-*')}
    real_save = torch.save
    def dies_halfway(obj, f):
        real_save(obj, f); f.seek(f.tell() // 2); f.truncate(); raise KeyboardInterrupt   # half written, then killed
    monkeypatch.setattr(torch, 'save', dies_halfway)
    with pytest.raises(KeyboardInterrupt): make_learn([CheckpointCB(tmp_path)]).fit(2, resume=True)
    monkeypatch.undo()
    assert (tmp_path/'index.json').read_bytes() == before[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != 'index.json'} == before[1]   # no temp file left
    load_checkpoint(tmp_path/ck.checkpoints[-1]['file'], ck.checkpoints[-1]['sha256'])

def test_atomic_write_replaces_whole_files_only(tmp_path):
    f = tmp_path/'a.bin'
    atomic_write(f, lambda h: h.write(b'old'))
    with pytest.raises(RuntimeError):
        atomic_write(f, lambda h: (h.write(b'new but'), (_ for _ in ()).throw(RuntimeError('killed'))))
    assert f.read_bytes() == b'old' and [p.name for p in tmp_path.iterdir()] == ['a.bin']

class FillsUp:
    "A file object whose disk is full after `room` bytes."
    def __init__(self, f, room): self.f,self.room = f,room
    def write(self, b):
        if len(b) > self.room: raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b); return self.f.write(b)
    def flush(self): self.f.flush()

def test_a_full_disk_under_torch_save_is_a_write_error_naming_the_file(tmp_path):
    f = tmp_path/'a.pt'
    save_checkpoint({'w': torch.ones(3)}, f)
    # torch.save reports the failed write as RuntimeError('[enforce fail at inline_container.cc...] unexpected pos')
    with pytest.raises(WriteError) as e: atomic_write(f, lambda h: torch.save({'w': torch.zeros(10_000)}, FillsUp(h, 5_000)))
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC and e.value.filename == str(f)
    assert str(e.value) == f'cannot write {f}: {os.strerror(errno.ENOSPC)}'
    assert [p.name for p in tmp_path.iterdir()] == ['a.pt'] and torch.equal(load_checkpoint(f)['w'], torch.ones(3))

def test_save_checkpoint_returns_the_sha256_of_the_bytes_on_disk(tmp_path):
    sha = save_checkpoint({'w': torch.randn(1000, 50), 'n': [1, 'a']}, tmp_path/'a.pt')
    assert sha == hashlib.sha256((tmp_path/'a.pt').read_bytes()).hexdigest()

def test_async_save_writes_the_same_checkpoints_and_resumes_exactly(tmp_path):
    "A background write saves the state of the step it was asked at, though training goes on meanwhile."
    for d, a in (('sync', False), ('async', True)):
        make_learn([OneCycle(), CheckpointCB(tmp_path/d, every_n_steps=3, keep_last=100, async_save=a)]).fit(2)
    names = sorted(p.name for p in (tmp_path/'sync').glob('ckpt-*'))
    assert len(names) == 2*10//3 + 2 and names == sorted(p.name for p in (tmp_path/'async').glob('ckpt-*'))
    for n in names:
        a, b = (load_checkpoint(tmp_path/d/n) for d in ('sync', 'async'))
        assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model']) and a['pos']['history'] == b['pos']['history']
        assert all(torch.equal(a['opt']['state'][i]['exp_avg'], b['opt']['state'][i]['exp_avg']) for i in a['opt']['state'])
    ref = make_learn([OneCycle()]); ref.fit(3)
    learn, ck = crash_then_resume(tmp_path/'crash', 14, every_n_steps=4, async_save=True)
    assert ck.resumed['step'] == 12 and learn.history == ref.history and states_equal(learn, ref)

def test_a_failed_background_write_is_the_same_write_error_at_the_next_event(tmp_path, monkeypatch):
    real = C.atomic_write
    def disk_fills_at_the_second(path, write):
        return real(path, (lambda f: write(FillsUp(f, 1000))) if path.name.startswith('ckpt-00002') else write)
    monkeypatch.setattr(C, 'atomic_write', disk_fills_at_the_second)
    learn = make_learn([CheckpointCB(tmp_path, every_n_steps=5, async_save=True)])
    with pytest.raises(WriteError, match=f'^cannot write {tmp_path}/ckpt-00002-epoch0-step10.pt: {os.strerror(errno.ENOSPC)}$'): learn.fit(3)
    assert 10 <= learn.train_iter < 15         # reported before the next checkpoint was due
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ckpt-00001-epoch0-step5.pt', 'index.json']

def test_saving_into_a_missing_or_unmakeable_folder_names_the_file(tmp_path):
    learn = make_learn()
    with pytest.raises(WriteError, match=f'cannot write {tmp_path}/gone/m.pt: {os.strerror(errno.ENOENT)}'): learn.save(tmp_path/'gone'/'m.pt')
    (tmp_path/'a_file').write_text('')
    with pytest.raises(WriteError, match=f'cannot write {tmp_path}/a_file/ck: {os.strerror(errno.ENOTDIR)}'):
        learn.fit(1, cbs=CheckpointCB(tmp_path/'a_file'/'ck'))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a_file']

def test_a_failed_index_write_keeps_the_earlier_checkpoints_and_index(tmp_path, monkeypatch):
    with pytest.raises(Crash): make_learn([CheckpointCB(tmp_path), CrashAt(12)]).fit(2)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real = C.atomic_write
    def index_fails(path, write):
        if path.name == 'index.json': raise WriteError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, write)
    monkeypatch.setattr(C, 'atomic_write', index_fails)
    with pytest.raises(WriteError, match='index.json'): make_learn([CheckpointCB(tmp_path)]).fit(2, resume=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before     # the unindexed new checkpoint is gone too

def test_resume_true_after_a_full_disk_continues_from_the_last_good_checkpoint(tmp_path, monkeypatch):
    ref = make_learn([OneCycle()]); ref.fit(3)
    real = C.atomic_write
    def disk_fills_at_the_second(path, write):     # the second checkpoint's bytes don't fit
        return real(path, (lambda f: write(FillsUp(f, 1000))) if path.name.startswith('ckpt-00002') else write)
    monkeypatch.setattr(C, 'atomic_write', disk_fills_at_the_second)
    with pytest.raises(WriteError, match=f'cannot write {tmp_path}/ckpt-00002-epoch1-step20.pt: {os.strerror(errno.ENOSPC)}'):
        make_learn([OneCycle(), CheckpointCB(tmp_path)]).fit(3)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ckpt-00001-epoch0-step10.pt', 'index.json']
    learn = make_learn([OneCycle(), ck := CheckpointCB(tmp_path)], seed=7); learn.fit(3, resume=True)
    assert ck.resumed['step'] == 10 and learn.history == ref.history and states_equal(learn, ref)

def test_temporary_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True).stdout.strip()
    for pid in (dead, os.getppid()): (tmp_path/f'.m.pt.{pid}.tmp').write_bytes(b'half')
    (tmp_path/f'.other.pt.{dead}.tmp').write_bytes(b'half')
    atomic_write(tmp_path/'m.pt', lambda f: f.write(b'whole'))
    # the dead writer's is gone; a live process's (here: our parent, as if it were writing) and other files' stay
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f'.m.pt.{os.getppid()}.tmp', f'.other.pt.{dead}.tmp', 'm.pt'])

def truncate(p): p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 3])
def flip_byte(p): b = bytearray(p.read_bytes()); b[len(b) // 2] ^= 0x10; p.write_bytes(bytes(b))
def delete(p): p.unlink()

@pytest.mark.parametrize('damage', [truncate, flip_byte, delete])
def test_damaged_newest_checkpoint_is_reported_and_the_previous_used(tmp_path, damage):
    ref = make_learn([OneCycle()]); ref.fit(3)
    with pytest.raises(Crash): make_learn([OneCycle(), ck := CheckpointCB(tmp_path, every_n_steps=4, keep_last=3), CrashAt(18)]).fit(3)
    *_, prev, newest = ck.checkpoints
    assert (prev['step'], newest['step']) == (12, 16)
    damage(tmp_path/newest['file'])
    learn = make_learn([OneCycle(), ck2 := CheckpointCB(tmp_path, every_n_steps=4, keep_last=3)])
    with pytest.warns(UserWarning) as ws: learn.fit(3, resume=True)
    msg = next(str(w.message) for w in ws if newest['file'] in str(w.message))
    assert prev['file'] in msg and ck2.resumed['step'] == prev['step']
    assert learn.history == ref.history and states_equal(learn, ref)

class Evil:
    def __reduce__(self): return (os.system, (f'touch {Evil.marker}',))

@pytest.mark.filterwarnings('ignore:Detected pickle protocol')
@pytest.mark.parametrize('write', [lambda obj, f: torch.save(obj, f), lambda obj, f: f.write_bytes(pickle.dumps(obj))])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, write):
    Evil.marker = tmp_path/'pwned'
    write(dict(format='slowlearn-model', model={'w': Evil()}), tmp_path/'evil.pt')
    learn = make_learn()
    with pytest.raises(CheckpointError, match='refusing to load .*evil.pt'): learn.load(tmp_path/'evil.pt')
    with pytest.raises(CheckpointError, match='refusing'): learn.fit(1, resume=tmp_path/'evil.pt', cbs=CheckpointCB(tmp_path/'ck'))
    assert not Evil.marker.exists()

def test_saving_state_that_needs_a_full_pickle_fails_at_save_time(tmp_path):
    class Bad(Callback):
        def state_dict(self): return {'f': lambda: 0}
        def load_state_dict(self, sd): pass
    with pytest.raises(TypeError, match=r"checkpoint\['callbacks'\]\['Bad'\]\['f'\] is a function"):
        make_learn([Bad(), CheckpointCB(tmp_path)]).fit(1)

# ---- learn.save / learn.load

def test_save_load_round_trip_with_optimizer(tmp_path):
    a = make_learn(); a.fit(1); a.save(tmp_path/'m.pt')
    b = make_learn(seed=4); b.load(tmp_path/'m.pt')
    assert states_equal(a, b)
    sa, sb = a.opt.state_dict(), b.opt.state_dict()
    assert all(torch.equal(sa['state'][i][k], sb['state'][i][k]) for i in sa['state'] for k in sa['state'][i])
    c = make_learn(seed=4); c.load(tmp_path/'m.pt', with_opt=False)
    assert c.opt is None

def test_load_into_another_architecture_lists_the_mismatched_keys(tmp_path):
    a = make_learn(); a.save(tmp_path/'m.pt', with_opt=False)
    b = Learner(nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2)), a.dls)
    with pytest.raises(CheckpointError) as e: b.load(tmp_path/'m.pt')
    msg = str(e.value)
    for part in ('missing in the file: 2.weight, 2.bias', 'not in the model: 3.weight, 3.bias',
                 '0.weight (16, 8) vs (32, 8)', '0.bias (16,) vs (32,)'): assert part in msg

def test_checkpoint_selection_loads_the_best_epoch(tmp_path):
    learn = make_learn(lr=0.3); learn.fit(6, cbs=(ck := CheckpointCB(tmp_path, keep_last=1)))
    vl = [r['loss'] for r in learn.history if r['phase'] == 'valid']
    learn.load(ck.best_path)
    learn.fit(1, train=False)
    assert learn.history[0]['loss'] == pytest.approx(min(vl), rel=1e-6)

# ---- early stopping, NaN

def test_early_stopping_stops_after_patience_and_restores_best(tmp_path):
    losses = [5., 3., 3.5, 3., 4., 1., 0.5]
    snaps = {}
    class Snap(Callback):
        order = 10
        def after_epoch(self, learn):
            if not learn.training: snaps[learn.epoch] = [p.detach().clone() for p in learn.model.parameters()]
    es = EarlyStoppingCB(patience=3)
    learn = Learner(nn.Linear(8, 2), DataLoaders.from_tensors(*data(), bs=32), cbs=[ScriptedValid(losses), es, Snap()])
    learn.fit(len(losses))
    assert (es.best, es.best_epoch, es.stopped_epoch) == (3., 1, 4)        # 3.5, 3.0 (not better), 4.0: three epochs
    assert learn.history[-1]['epoch'] == 4
    assert all(torch.equal(p, q) for p, q in zip(learn.model.parameters(), snaps[1]))

def test_early_stopping_min_delta_mode_and_no_restore():
    es = EarlyStoppingCB(monitor='valid_loss', mode='max', patience=2, min_delta=0.5, restore_best=False)
    learn = Learner(nn.Linear(8, 2), DataLoaders.from_tensors(*data(), bs=32), cbs=[ScriptedValid([1., 1.4, 2., 2.2, 2.4, 9.]), es])
    w_at_stop = []
    class Last(Callback):
        def after_epoch(self, learn): w_at_stop[:] = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(6, cbs=Last())
    assert (es.best, es.best_epoch, es.stopped_epoch) == (2., 2, 4)     # 1.4 < 1 + 0.5; 2.2, 2.4 < 2 + 0.5
    assert learn.history[-1]['epoch'] == 4
    assert all(torch.equal(p, q) for p, q in zip(learn.model.parameters(), w_at_stop))

def test_early_stopping_resumes_where_it_left(tmp_path):
    losses = [5., 3., 3.5, 3., 4., 1., 0.5]
    def make(cbs, seed=0):
        torch.manual_seed(seed)
        return Learner(nn.Linear(8, 2), DataLoaders.from_tensors(*data(), bs=32), cbs=[ScriptedValid(losses), EarlyStoppingCB(patience=3)] + cbs)
    ref = make([]); ref.fit(7)
    with pytest.raises(Crash): make([CheckpointCB(tmp_path), CrashAt(17)]).fit(7)      # in epoch 3
    learn = make([CheckpointCB(tmp_path)], seed=1); learn.fit(7, resume=True)
    assert learn.cbs[1].stopped_epoch == 4 and learn.history == ref.history and states_equal(learn, ref)

def test_terminate_on_nan_stops_before_the_step_and_writes_no_broken_checkpoint(tmp_path):
    class NaNAt(Callback):      # a corrupt input at the sixth training batch
        def before_batch(self, learn):
            if learn.training and learn.train_iter == 5: learn.batch = (learn.batch[0] * float('nan'), learn.batch[1])
    learn = make_learn([NaNAt(), nan := TerminateOnNaNCB(), ck := CheckpointCB(tmp_path, every_n_steps=1, keep_last=10)])
    with pytest.warns(UserWarning, match='loss is nan at epoch 0, batch 5'): learn.fit(3)
    assert nan.stopped_at == dict(epoch=0, iter=5, phase='train') and learn.train_iter == 5
    assert [e['step'] for e in ck.checkpoints] == [1, 2, 3, 4, 5]
    last = load_checkpoint(ck.last_path)['model']
    assert all(torch.equal(last[k], v) for k, v in learn.model.state_dict().items())   # the weights before the NaN batch

def test_checkpoint_refuses_non_finite_weights(tmp_path):
    class Poison(Callback):
        def after_step(self, learn):
            if learn.train_iter == 3: learn.model[0].weight.data[0, 0] = float('inf')
    with pytest.warns(UserWarning, match='no checkpoint written'):
        make_learn([Poison(), ck := CheckpointCB(tmp_path, every_n_steps=1, keep_last=10)]).fit(1, valid=False)
    assert [e['step'] for e in ck.checkpoints] == [1, 2]

# ---- gradient accumulation

def accum_pair(n_acc, bs, n=200, epochs=2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n + 16, 8, generator=g); y = torch.randint(0, 3, (n + 16,), generator=g)
    def make(bs, cbs):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
        dls = DataLoaders.from_tensors(x[:n], y[:n], x[n:], y[n:], bs=bs, seed=2)
        return Learner(model, dls, lr=0.1, opt_func=lambda p, lr: torch.optim.SGD(p, lr, momentum=0.9, weight_decay=1e-3),
                       cbs=[OneCycle(), MetricsCB()] + cbs)
    small, big = make(bs, [GradAccumCB(n_acc)]), make(bs * n_acc, [])
    small.fit(epochs); big.fit(epochs)
    return small, big

def test_grad_accumulation_equals_big_batches_with_a_shorter_last_group():
    small, big = accum_pair(4, 16)      # 200 = 3 x 64 + 8: the last group is one batch of 8
    for p, q in zip(small.model.parameters(), big.model.parameters()): torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    assert small.train_iter == big.train_iter == 2 * 4 and small.n_steps == 4
    assert small.cbs[0].sched.get_last_lr() == pytest.approx(big.cbs[0].sched.get_last_lr(), rel=1e-12)
    assert [r['phase'] for r in small.history] == [r['phase'] for r in big.history]

def test_grad_accumulation_with_a_group_of_several_short_batches():
    small, big = accum_pair(3, 10, n=175)   # 18 batches of 10 (last 5): groups of 3; big batches of 30 (last 25)
    for p, q in zip(small.model.parameters(), big.model.parameters()): torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)

def test_grad_accumulation_steps_counted_by_callbacks_and_checkpoints(tmp_path):
    steps = []
    class Count(Callback):
        def after_step(self, learn): steps.append((learn.epoch, learn.iter))
    make = lambda cbs, seed=0: make_learn([GradAccumCB(3)] + cbs, seed=seed, dropout=0.)
    make([Count(), ck := CheckpointCB(tmp_path/'a', every_n_steps=2, keep_last=10, monitor=None)]).fit(1, valid=False)
    assert steps == [(0, 2), (0, 5), (0, 8), (0, 9)]                      # 10 batches: groups of 3, 3, 3, 1
    assert [(e['step'], e['batch']) for e in ck.checkpoints if not e['end']] == [(2, 6), (4, 10)]
    ref = make([OneCycle()]); ref.fit(2)
    learn, _ = crash_then_resume(tmp_path/'b', 5, n_epochs=2, make=make, every_n_steps=2)
    assert states_equal(learn, ref) and learn.history == ref.history

def test_grad_accumulation_with_fit_one_cycle_equals_big_batches():
    "slowlearn.sched's one-cycle schedules by optimizer steps (learn.train_iter / learn.n_steps): same LRs, same weights."
    import slowlearn.sched   # adds Learner.fit_one_cycle
    g = torch.Generator().manual_seed(1)
    x = torch.randn(216, 8, generator=g); y = torch.randint(0, 3, (216,), generator=g)
    def make(bs):
        torch.manual_seed(0)
        return Learner(nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)),
                       DataLoaders.from_tensors(x[:200], y[:200], x[200:], y[200:], bs=bs, seed=2), opt_func=torch.optim.Adam)
    small, big = make(16), make(64)
    small.fit_one_cycle(2, 0.01, cbs=GradAccumCB(4)); big.fit_one_cycle(2, 0.01)
    for p, q in zip(small.model.parameters(), big.model.parameters()): torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    assert small.opt.param_groups[0]['lr'] == pytest.approx(big.opt.param_groups[0]['lr'], rel=1e-12)

def test_resume_restores_scheduler_and_recorder_callbacks(tmp_path):
    from slowlearn.sched import BatchSchedulerCB, RecorderCB
    def make(cbs, seed=0):
        return make_learn([BatchSchedulerCB(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.05, total_steps=30),
                           RecorderCB(lr='lr')] + cbs, seed=seed)
    ref = make([]); ref.fit(3)
    with pytest.raises(Crash): make([CheckpointCB(tmp_path, every_n_steps=4), CrashAt(18)]).fit(3)
    learn = make([CheckpointCB(tmp_path, every_n_steps=4)], seed=9); learn.fit(3, resume=True)
    assert learn.cbs[2]['lr'] == ref.cbs[2]['lr'] and learn.cbs[2]['loss'] == ref.cbs[2]['loss'] and len(ref.cbs[2]['lr']) == 30
    assert states_equal(learn, ref) and learn.history == ref.history

# ---- virtual epochs

def test_virtual_epochs_run_the_repeated_loader():
    seen = []
    class Seen(Callback):
        def before_batch(self, learn):
            if learn.training: seen.append((learn.epoch, learn.iter, learn.batch[0][:, 0].clone()))
    x, y, xv, yv = data(80)
    dls = DataLoaders.from_tensors(x, y, xv, yv, bs=16, seed=5)      # 5 batches per pass
    learn = make_learn([Seen()], dls=dls); learn.fit(3, steps_per_epoch=7)
    stream = [x[dls.train.order(e)[i:i + 16], 0] for e in range(5) for i in range(0, 80, 16)]
    assert [(e, i) for e, i, _ in seen] == [(e, i) for e in range(3) for i in range(7)]
    assert all(torch.equal(b, s) for (_, _, b), s in zip(seen, stream))
    assert [(r['epoch'], r['phase']) for r in learn.history] == [(e, p) for e in range(3) for p in ('train', 'valid')]
    assert learn.n_iter == 7 and learn.train_iter == 21

def test_virtual_epochs_resume_and_early_stop(tmp_path):
    ref = make_learn([OneCycle()]); ref.fit(4, steps_per_epoch=6)
    learn, ck = crash_then_resume(tmp_path, 17, n_epochs=4, fit_kw=dict(steps_per_epoch=6), every_n_steps=4)
    assert (ck.resumed['epoch'], ck.resumed['iter'], ck.resumed['step']) == (2, 4, 16)     # mid virtual epoch
    assert states_equal(learn, ref) and learn.history == ref.history
    losses = [3., 2., 2.5, 2.6, 2.7, 1.]
    es = EarlyStoppingCB(patience=2)
    Learner(nn.Linear(8, 2), DataLoaders.from_tensors(*data(), bs=32), cbs=[ScriptedValid(losses), es]).fit(6, steps_per_epoch=2)
    assert es.stopped_epoch == 3

# ---- bad arguments

@pytest.mark.parametrize('make, name', [
    (lambda: CheckpointCB('x', every_n_epochs=0), 'every_n_epochs'), (lambda: CheckpointCB('x', every_n_steps=1.5), 'every_n_steps'),
    (lambda: CheckpointCB('x', keep_last=0), 'keep_last'), (lambda: CheckpointCB('x', keep_best=-1), 'keep_best'),
    (lambda: CheckpointCB('x', monitor='loss'), 'monitor'), (lambda: CheckpointCB('x', mode='lowest'), 'mode'),
    (lambda: EarlyStoppingCB(patience=-1), 'patience'), (lambda: EarlyStoppingCB(min_delta=-0.1), 'min_delta'),
    (lambda: EarlyStoppingCB(monitor='valid loss'), 'monitor'), (lambda: GradAccumCB(0), 'n_acc'),
    (lambda: GradAccumCB(2.), 'n_acc'), (lambda: make_learn().fit(1, steps_per_epoch=0), 'steps_per_epoch')])
def test_bad_arguments_name_the_argument(make, name):
    with pytest.raises(ValueError, match=name): make()

def test_async_save_must_be_a_bool():
    with pytest.raises(TypeError, match='async_save must be True or False'): CheckpointCB('x', async_save=1)

def test_unknown_monitor_names_the_available_keys(tmp_path):
    with pytest.raises(ValueError, match=r"no 'acc'.*'accuracy'"): make_learn([EarlyStoppingCB(monitor='valid_acc')]).fit(1)

# ---- slowlearn fit --ckpt-dir / --resume / --patience / --accumulate

def write_idx(fname, arr):
    import gzip, struct
    with gzip.open(fname, 'wb') as f:
        f.write(struct.pack('>I', 2048 + arr.ndim) + struct.pack(f'>{arr.ndim}I', *arr.shape) + arr.astype(np.uint8).tobytes())

@pytest.fixture
def tiny_fmnist(tmp_path):
    rng = np.random.default_rng(0)
    for split, (fx, fy), n in (('train', ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'), 160),
                               ('valid', ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'), 32)):
        y = rng.integers(0, 10, n); x = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(y): x[i, 2 * c:2 * c + 8, 2 * c:2 * c + 8] = 255
        write_idx(tmp_path/fx, x); write_idx(tmp_path/fy, y)
    return tmp_path

def test_cli_run_killed_after_a_checkpoint_resumes_to_the_same_model(tiny_fmnist, tmp_path, monkeypatch):
    from slowlearn import cli, experiments
    args = ['fit', '--data', str(tiny_fmnist), '--epochs', '2', '--bs', '32', '--accumulate', '2', '--patience', '5']
    cli.main(args + ['--out', str(tmp_path/'ref')])
    class DiesAfterEpoch0(CheckpointCB):
        def after_epoch(self, learn):
            super().after_epoch(learn)
            if not learn.training and learn.epoch == 0: raise KeyboardInterrupt
    monkeypatch.setattr(experiments, 'CheckpointCB', DiesAfterEpoch0)   # the CLI trains with fit_config
    with pytest.raises(KeyboardInterrupt): cli.main(args + ['--out', str(tmp_path/'run'), '--ckpt-dir', str(tmp_path/'ck')])
    monkeypatch.undo()
    cli.main(args + ['--out', str(tmp_path/'run'), '--ckpt-dir', str(tmp_path/'ck'), '--resume'])
    ref, run = (torch.load(tmp_path/d/'model.pt', weights_only=True) for d in ('ref', 'run'))
    assert all(torch.equal(ref[k], run[k]) for k in ref)
    assert (tmp_path/'ref'/'history.csv').read_text() == (tmp_path/'run'/'history.csv').read_text()
    assert len((tmp_path/'run'/'history.csv').read_text().splitlines()) == 1 + 2 * 2

@pytest.mark.parametrize('args, msg', [(['--accumulate', '0'], '--accumulate'), (['--patience', '-1'], '--patience'),
                                       (['--resume'], '--resume needs --ckpt-dir')])
def test_cli_bad_checkpoint_options_exit_2(tiny_fmnist, tmp_path, capsys, args, msg):
    from slowlearn import cli
    with pytest.raises(SystemExit) as e: cli.main(['fit', '--data', str(tiny_fmnist), '--out', str(tmp_path/'o'), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err and len(err.strip().splitlines()) == 1

# ---- learner support

def test_a_callback_attribute_named_like_a_step_is_not_a_step():
    class WithData(Callback):
        def __init__(self): self.step,self.predict = 3,'x'     # plain attributes, not step replacements
    learn = make_learn([WithData()]); learn.fit(1)
    assert learn.train_iter == 10
