"""The training runs `test_distributed.py` compares: run in-process as the 1-process reference, or as a script under
`torchrun --nproc_per_node 2 tests/ddp_train.py OUT [cases|kill|resume|user_group|sampler_ref|sampler_kill|sampler_resume]`, where each rank saves what it
ended with, and, as the very last thing before it exits, whether a process group was still up."""
import atexit, io, json, os, signal, sys
from contextlib import redirect_stdout
from pathlib import Path
import torch
from torch import nn
from torcheval.metrics import MulticlassAccuracy
import torch.distributed as dist
from torch.utils.data import DataLoader, TensorDataset, DistributedSampler
from slowlearn.learner import Learner, Callback
from slowlearn.metrics import MetricsCB, ProgressCB
from slowlearn.data import DataLoaders
from slowlearn.checkpoint import CheckpointCB
from slowlearn.distributed import DDPCB
from slowlearn.core import is_main_process

# name: (n_train, n_valid, bs). 41 = 3*12 + 5: the last batch splits 3/2 over 2 ranks; 37 = 3*12 + 1: rank 1's shard
# of the last batch is empty. The validation sets end the same two ways.
CASES = dict(uneven=(41, 23, 12), empty_shard=(37, 25, 12))

def fit(n_train, n_valid, bs, epochs=3, ddp=True, cbs=(), resume=None):
    "Train a small MLP (no BatchNorm) with momentum SGD on fixed random data, with `DDPCB` if `ddp`; returns the learner."
    g = torch.Generator().manual_seed(0)
    x,y = torch.randn(n_train + n_valid, 6, generator=g),torch.randint(0, 3, (n_train + n_valid,), generator=g)
    dls = DataLoaders.from_tensors(x[:n_train], y[:n_train], x[n_train:], y[n_train:], bs=bs, seed=1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = lambda ps, lr: torch.optim.SGD(ps, lr, momentum=0.9)
    learn = Learner(model, dls, lr=0.1, opt_func=opt,
                    cbs=[MetricsCB(MulticlassAccuracy()), ProgressCB(notebook=False)] + [DDPCB()]*ddp + list(cbs))
    learn.fit(epochs, resume=resume)
    return learn

class KillCB(Callback):
    "SIGKILL rank 0 at the start of epoch `epoch`, after the previous epoch's checkpoint is written."
    order = 200
    def __init__(self, epoch): self.epoch = epoch
    def before_epoch(self, learn):
        if learn.epoch == self.epoch and learn.training and os.environ.get('RANK') == '0': os.kill(os.getpid(), signal.SIGKILL)

def fit_with_checkpoints(ckpt_dir, kill_at=None, resume=None, ddp=True):
    "The 'uneven' case for 4 epochs, checkpointing every epoch into `ckpt_dir`."
    # every rank needs a CheckpointCB to resume, but only rank 0 may write (CheckpointCB doesn't check the rank itself)
    ckpt = CheckpointCB(ckpt_dir, every_n_epochs=1 if is_main_process() else None)
    cbs = [ckpt] + ([KillCB(kill_at)] if kill_at is not None else [])
    return fit(*CASES['uneven'], epochs=4, ddp=ddp, cbs=cbs, resume=resume)

class KillAfterStep(Callback):
    "SIGKILL rank 0 right after optimizer step `step`, once the callbacks before it (a checkpoint) are done."
    order = 200
    def __init__(self, step): self.step = step
    def after_batch(self, learn):
        if learn.training and learn.opt_steps == self.step and os.environ.get('RANK') == '0': os.kill(os.getpid(), signal.SIGKILL)

def fit_sampled(ckpt_dir, kill_after=None, resume=None):
    "Each rank reads its `DistributedSampler` share of a shuffled `DataLoader` (5 batches an epoch), 3 epochs, a checkpoint every 2 steps."
    g = torch.Generator().manual_seed(0)
    x,y = torch.randn(96, 6, generator=g),torch.randint(0, 3, (96,), generator=g)
    ds = TensorDataset(x[:80], y[:80])
    # the sampler is built before DDPCB starts the process group, as a script does: rank and world from torchrun's env
    sampler = DistributedSampler(ds, num_replicas=int(os.environ['WORLD_SIZE']), rank=int(os.environ['RANK']), shuffle=True, seed=3)
    dls = DataLoaders(DataLoader(ds, batch_size=8, sampler=sampler), DataLoader(TensorDataset(x[80:], y[80:]), batch_size=8))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    cbs = [MetricsCB(MulticlassAccuracy()), DDPCB(), CheckpointCB(ckpt_dir, every_n_steps=2)] + ([KillAfterStep(kill_after)] if kill_after else [])
    learn = Learner(model, dls, lr=0.1, opt_func=lambda ps, lr: torch.optim.SGD(ps, lr, momentum=0.9), cbs=cbs)
    learn.fit(3, resume=resume)
    return learn

def save(learn, fname, printed=''):
    torch.save(dict(weights=learn.model.state_dict(), history=learn.history, printed=printed,
                    plain_model=not isinstance(learn.model, nn.parallel.DistributedDataParallel)), fname)

def record_exit(fname):
    "Write whether a process group is still up; registered before DDPCB's hook, it runs after it (atexit is LIFO)."
    Path(fname).write_text(json.dumps(dict(initialized=dist.is_initialized())))

if __name__ == '__main__':
    out,rank,mode = Path(sys.argv[1]),int(os.environ['RANK']),(sys.argv[2:] or ['cases'])[0]
    if mode == 'user_group':    # the script starts the group itself, and ends it itself after everything else,
        dist.init_process_group('gloo')     # as torch advises: all ranks meet, then each destroys its group
        atexit.register(lambda: (dist.barrier(), dist.destroy_process_group()))
    atexit.register(record_exit, out/f'{mode}_exit_rank{rank}.json')
    if mode == 'cases':
        for name,args in CASES.items():
            with redirect_stdout(buf := io.StringIO()): learn = fit(*args)
            save(learn, out/f'{name}_rank{rank}.pt', buf.getvalue())
    elif mode == 'kill': fit_with_checkpoints(out/'ckpt', kill_at=2)
    elif mode == 'resume': save(fit_with_checkpoints(out/'ckpt', resume=True), out/f'resumed_rank{rank}.pt')
    elif mode == 'sampler_ref': save(fit_sampled(out/'ref_ckpt'), out/f'sampler_ref_rank{rank}.pt')
    elif mode == 'sampler_kill': fit_sampled(out/'ckpt', kill_after=int(sys.argv[3]))
    elif mode == 'sampler_resume': save(fit_sampled(out/'ckpt', resume=True), out/f'sampler_resumed_rank{rank}.pt')
    elif mode == 'user_group':
        with redirect_stdout(io.StringIO()): learn = fit(*CASES['uneven'])
        save(learn, out/f'user_group_rank{rank}.pt')
        assert dist.is_initialized(), "DDPCB destroyed a process group the script created"
