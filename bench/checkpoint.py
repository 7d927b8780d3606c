"""What a checkpoint stalls the training loop for: `CheckpointCB` (synchronous, and `async_save=True`) against a bare
`torch.save` of the same model and optimizer state.

The model is `n` Linear(1024, 1024) layers with Adam's state (weights + two moments: ~12.6 MB per layer); the
default sizes, 1, 9 and 36 layers, are ~12, ~114 and ~458 MB of state. Sides, interleaved (A B C D E F A B ...):
  torch.save            `torch.save(dict(model=..., opt=...), f)` to a file: no fsync, no hash, nothing else
  torch.save + fsync    the same, then `fsync`: what making the bytes durable costs, the floor of any save that
                        survives a crash of the machine (a synchronous checkpoint can't stall less than this)
  hash by re-reading    the previous `save_checkpoint`: atomic write (with fsync), then a second full read for SHA-256
  save_checkpoint       today's: atomic write (with fsync), SHA-256 computed on the bytes as they are written
  CheckpointCB          the stall of `CheckpointCB.after_batch` saving a checkpoint: the state (model, optimizer,
                        RNG, position), atomic write with fsync, SHA-256 hashed while writing, the index, old files deleted
  CheckpointCB async    the same with `async_save=True`: the stall is the snapshot (tensors copied) and starting the
                        thread; the write itself is waited for outside the timer, before the next side runs
Prints the median seconds per side and each side's ratio to torch.save. On a shared machine read the ratios.
    python bench/checkpoint.py [--reps 7] [--layers 1,9,36] [--dir DIR]
"""
import argparse, os, platform, shutil, statistics, tempfile, time
from pathlib import Path
import torch
from torch import nn
from slowlearn.learner import Learner
from slowlearn.data import DataLoaders, ResumableLoader
from slowlearn.checkpoint import CheckpointCB, save_checkpoint, _sha256
from slowlearn.core import atomic_write

def make_learner(n_layers):
    "A learner in the middle of a fit, as `CheckpointCB` sees it, with Adam's state for every weight."
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(1024, 1024) for _ in range(n_layers)])
    x = torch.randn(8, 1024)
    learn = Learner(model, DataLoaders([(x, x)], [(x, x)]), opt_func=torch.optim.Adam, lr=1e-3)
    learn.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for p in model.parameters(): p.grad = torch.randn_like(p)
    learn.opt.step(); learn.opt.zero_grad(set_to_none=True)
    learn._data,learn.resume,learn.history = ResumableLoader(learn.dls.train),None,[]
    learn.epoch,learn.iter,learn.opt_steps,learn.training = 0,0,1,True
    learn.fit_args = dict(n_epochs=1, lr=1e-3, train=True, valid=True, steps_per_epoch=None)
    return learn

def nbytes(learn):
    sd = learn.opt.state_dict()['state']
    return sum(t.numel()*t.element_size() for t in learn.model.state_dict().values()) + \
           sum(v.numel()*v.element_size() for s in sd.values() for v in s.values() if v.dim())

def main(reps=7, layers=(1, 9, 36), folder=None):
    folder = Path(folder or tempfile.mkdtemp(prefix='bench-ckpt-'))
    print(f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, '
          f'torch {torch.__version__}, {torch.get_num_threads()} threads; files in {folder}; median of {reps} reps')
    res = {}
    for n in layers:
        learn = make_learner(n)
        cbs = {k: CheckpointCB(folder/f'{n}-{k}', every_n_steps=1, keep_last=1, monitor=None, async_save=a) for k,a in (('sync', False), ('async', True))}
        for cb in cbs.values(): cb.before_fit(learn)
        def bare(): torch.save(dict(model=learn.model.state_dict(), opt=learn.opt.state_dict()), folder/f'{n}-bare.pt')
        def durable():
            with open(folder/f'{n}-durable.pt', 'wb') as f:
                torch.save(dict(model=learn.model.state_dict(), opt=learn.opt.state_dict()), f); f.flush(); os.fsync(f.fileno())
        def reread():
            atomic_write(folder/f'{n}-reread.pt', lambda f: torch.save(dict(model=learn.model.state_dict(), opt=learn.opt.state_dict()), f))
            _sha256(folder/f'{n}-reread.pt')
        def hashed(): save_checkpoint(dict(model=learn.model.state_dict(), opt=learn.opt.state_dict()), folder/f'{n}-hashed.pt')
        def ckpt(k):
            def f(): cbs[k]._stepped = True; cbs[k].after_batch(learn)
            return f
        sides = {'torch.save': bare, 'torch.save + fsync': durable, 'hash by re-reading': reread, 'save_checkpoint': hashed, 'CheckpointCB': ckpt('sync'), 'CheckpointCB async': ckpt('async')}
        times = {k: [] for k in sides}
        for r in range(reps + 1):       # the first round warms the files and caches and is not counted
            for k, f in sides.items():
                t = time.perf_counter(); f(); dt = time.perf_counter() - t
                cbs['async']._wait()       # the background write finishes outside the timed stall
                if r: times[k].append(dt)
        med = {k: statistics.median(v) for k, v in times.items()}
        mb = nbytes(learn) / 1e6
        print(f'\n{n} layers, {mb:.0f} MB of model + optimizer state')
        for k, v in med.items(): print(f'  {k:<20}{v:8.3f} s  {v / med["torch.save"]:6.2f}x torch.save')
        res[round(mb)] = {k: (v, v / med['torch.save']) for k, v in med.items()}
        for cb in cbs.values(): cb.cleanup_fit(learn)
        del learn
    shutil.rmtree(folder, ignore_errors=True)
    return res

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('--reps', type=int, default=7)
    p.add_argument('--layers', default='1,9,36', help='comma-separated numbers of Linear(1024, 1024) layers')
    p.add_argument('--dir', default=None, help='where to write (default: a temporary folder, removed at the end)')
    a = p.parse_args()
    main(a.reps, tuple(int(s) for s in a.layers.split(',')), a.dir)
