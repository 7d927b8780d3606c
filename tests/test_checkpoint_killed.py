"""Training processes SIGKILLed at random moments and in the middle of their writes, then resumed: the same weights, byte
for byte, and the same history as one uninterrupted run. A script with everything that makes resume hard, and `slowlearn fit --ckpt-dir D --resume`."""
import csv, os, random, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch

REPO = Path(__file__).resolve().parents[1]


ARGS = ['fit', '--epochs', '3', '--bs', '64', '--seed', '1']   # 10 batches an epoch: 3 checkpoints, ~1 s of training
CLI = [sys.executable, '-m', 'slowlearn.cli']
DL_CLI = [sys.executable, str(Path(__file__).parent/'dl_cli.py')]   # the same, training on a shuffled DataLoader with workers

def start(data, ckpt, out, cli=CLI):
    "Start `slowlearn fit ... --ckpt-dir ckpt --resume --out out`; its stdout is a pipe, unbuffered."
    cmd = [*cli, *ARGS, '--data', str(data), '--ckpt-dir', str(ckpt), '--resume', '--out', str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | dict(PYTHONUNBUFFERED='1'))

def run_to_end(data, ckpt, out, cli=CLI):
    "Run to completion; returns the seconds from the first line of the metrics table (after epoch 0's training) to the exit."
    p = start(data, ckpt, out, cli)
    p.stdout.readline(); t0 = time.monotonic()
    _,err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    return time.monotonic() - t0

def temp_files(pid, *folders):
    "The temporary files process `pid` is writing (`atomic_write` names them `.NAME.PID.tmp`)."
    return [p for d in folders if d.is_dir() for p in d.iterdir() if p.name.endswith(f'.{pid}.tmp')]

def kill_at(data, ckpt, out, when, cli=CLI):
    "Start a run and SIGKILL it `when` seconds after its first output line, or with `when='mid-write'` as soon as one of its writes has begun; returns (killed, whether it left a temporary file)."
    p = start(data, ckpt, out, cli)
    if when == 'mid-write':
        while p.poll() is None and not temp_files(p.pid, ckpt, out): time.sleep(0.001)
    else:
        p.stdout.readline()          # the table's header, or '' at exit when a resumed run had nothing left to train
        try: p.wait(timeout=when)
        except subprocess.TimeoutExpired: pass
    p.send_signal(signal.SIGKILL)    # a no-op if it has already exited
    _,err = p.communicate()
    assert p.returncode in (0, -signal.SIGKILL), err[-3000:]
    return p.returncode != 0, bool(temp_files(p.pid, ckpt, out))

def rows(path):
    with open(path, newline='') as f: return list(csv.reader(f))

def assert_same_run(run, ref):
    assert (run/'out'/'model.pt').read_bytes() == (ref/'out'/'model.pt').read_bytes()
    assert rows(run/'out'/'history.csv') == rows(ref/'out'/'history.csv')
    assert sorted(p.name for p in (run/'out').iterdir()) == ['config.json', 'history.csv', 'loss.png', 'lr.png', 'model.pt']  # no temporary file left
    assert not [p.name for p in (run/'ckpt').iterdir() if p.name.endswith('.tmp')]

def kill_anywhere(data, tmp_path, n_kills, seed=0, cli=CLI):
    "SIGKILL runs until `n_kills` kills landed, then let one finish; a run that finishes is compared with the reference and started afresh."
    ref,run = tmp_path/'ref',tmp_path/'run'
    t_train = run_to_end(data, ref/'ckpt', ref/'out', cli)
    rng,kills,mid_write,finished = random.Random(seed),0,0,0
    while True:
        if kills < n_kills:
            # every other kill waits for a write to begin: a uniform random moment rarely falls in one
            killed,left_temp = kill_at(data, run/'ckpt', run/'out', 'mid-write' if kills % 2 else rng.uniform(0, t_train), cli)
            kills += killed; mid_write += left_temp
            if killed: continue
        else: run_to_end(data, run/'ckpt', run/'out', cli)
        assert_same_run(run, ref); finished += 1
        if kills == n_kills: return kills, mid_write, finished
        shutil.rmtree(run)              # it finished before the next kill: start another run from scratch

def test_three_kills_anywhere_then_the_uninterrupted_result(tiny_fashion_mnist, tmp_path):
    kills,mid_write,finished = kill_anywhere(tiny_fashion_mnist, tmp_path, 3)
    assert kills == 3 and finished >= 1

def test_three_kills_anywhere_on_a_shuffled_dataloader_with_workers(tiny_fashion_mnist, tmp_path):
    kills,mid_write,finished = kill_anywhere(tiny_fashion_mnist, tmp_path, 3, seed=2, cli=DL_CLI)
    assert kills == 3 and finished >= 1

@pytest.mark.slow
def test_twenty_kills_anywhere_then_the_uninterrupted_result(tiny_fashion_mnist, tmp_path):
    kills,mid_write,finished = kill_anywhere(tiny_fashion_mnist, tmp_path, 20, seed=1)
    print(f'{kills} kills, {mid_write} of them in the middle of a write; {finished} finished runs compared')
    assert kills == 20 and mid_write >= 1 and finished >= 1

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
sys.path.insert(0, 'tests')
from conftest import OneCycle

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
cbs = [MetricsCB(MulticlassAccuracy()), Jitter(), OneCycle(0.02), Tick()]
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

@pytest.mark.usefixtures('one_thread')
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

@pytest.mark.usefixtures('one_thread')
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
