"""Per-batch cost of the `Learner` loop over a plain PyTorch loop.

Same tiny model, same ~900 in-memory batches of 64, trained by: a plain loop; `Learner` with no callbacks;
`Learner` with `MetricsCB(accuracy)` + `ProgressCB`. Runs are interleaved (A B C A B C ...) so machine noise
hits every side alike; prints medians, the microseconds per batch added over the plain loop, and the ratio.
    python bench/loop_overhead.py [--reps 15] [--batches 900]
"""
import argparse, contextlib, io, os, platform, statistics, sys, time
import torch, torch.nn.functional as F
from torch import nn
from torcheval.metrics import MulticlassAccuracy
from slowlearn.learner import Learner
from slowlearn.metrics import MetricsCB, ProgressCB

def make_batches(n, bs=64, ni=32, nc=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, ni, generator=g), torch.randint(0, nc, (bs,), generator=g)) for _ in range(n)]

class DLs:
    def __init__(self, train): self.train,self.valid = train,[]

def plain(model, batches):
    opt = torch.optim.SGD(model.parameters(), 0.01)
    for xb, yb in batches:
        loss = F.cross_entropy(model(xb), yb)
        loss.backward(); opt.step(); opt.zero_grad()

def learner(cbs):
    def run(model, batches):
        with contextlib.redirect_stdout(io.StringIO()):
            Learner(model, DLs(batches), lr=0.01, cbs=cbs()).fit(1, valid=False)
    return run

def main(reps=15, n_batches=900):
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', torch.get_num_threads())))
    batches = make_batches(n_batches)
    sides = {'plain PyTorch loop': plain,
             'Learner, no callbacks': learner(lambda: []),
             'Learner + MetricsCB + ProgressCB': learner(lambda: [MetricsCB(MulticlassAccuracy()), ProgressCB()])}
    times = {k: [] for k in sides}
    for k, f in sides.items(): f(nn.Linear(32, 10), batches)          # warm-up
    for _ in range(reps):
        for k, f in sides.items():
            torch.manual_seed(0); model = nn.Linear(32, 10)
            t = time.perf_counter(); f(model, batches); times[k].append(time.perf_counter() - t)
    print(f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, '
          f'torch {torch.__version__}, {torch.get_num_threads()} threads; {n_batches} batches of 64, median of {reps}')
    base = statistics.median(times['plain PyTorch loop'])
    print(f'{"":36}{"µs/batch":>10}{"over plain":>12}{"ratio":>8}')
    for k, ts in times.items():
        m = statistics.median(ts)
        print(f'{k:36}{m / n_batches * 1e6:10.1f}{(m - base) / n_batches * 1e6:12.1f}{m / base:8.3f}')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=15); p.add_argument('--batches', type=int, default=900)
    a = p.parse_args(); main(a.reps, a.batches)
