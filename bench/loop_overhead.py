"""Per-batch cost of the `Learner` loop over a plain PyTorch loop.

Same tiny model, same ~900 in-memory batches of 64, trained by: a plain loop; `Learner` with no callbacks;
`Learner` with `MetricsCB(accuracy)` + `ProgressCB`; `Learner` with the default lesson set (those two +
`RecorderCB`). Runs are interleaved (A B C A B C ...) so machine noise hits every side alike; prints medians of wall
time and of process CPU time (steadier on a shared machine: time spent descheduled doesn't count), the microseconds
per batch added over the plain loop, and the ratio. Targets: bare < 10 µs/batch, default set < 60 µs/batch.
With `--least`, one more side: `LeastWork` + `ProgressCB`, the least per-batch work that exact epoch metrics need (read
each loss, keep each batch's detached predictions and targets, fold them into the metric every 409 batches) with
none of `MetricsCB`'s checks and cases: how far `MetricsCB` is from that floor.
Optional sides, run only when the package imports: fastai's `Learner` (torch's SGD through `OptimWrapper`, no progress
bar, no logging; its empty validation pass included) and Lightning's `Trainer` (no logger, checkpointing or summary;
without and with its progress bar and a logged accuracy). Neither is a slowlearn dependency: install them in a
separate environment to compare.
    python bench/loop_overhead.py [--reps 15] [--batches 900] [--no-others] [--least]
"""
import argparse, contextlib, io, os, platform, statistics, sys, tempfile, time
import torch, torch.nn.functional as F
from torch import nn
from torcheval.metrics import MulticlassAccuracy
from slowlearn.learner import Learner, Callback
from slowlearn.metrics import MetricsCB, ProgressCB
from slowlearn.sched import RecorderCB

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

class LeastWork(Callback):
    "The floor for exact epoch metrics: each batch's loss read, its detached predictions and targets kept and folded into `metric` every 409 batches (MetricsCB's interval for 64 × 10 predictions); tuple batches of 64 rows only, no checks."
    def __init__(self, metric): self.metric = metric
    def before_epoch(self, learn): self.metric.reset(); self.ps,self.ys,self.loss,self.n = [],[],0.,0
    def after_batch(self, learn):
        self.loss += learn.loss.item()*64; self.n += 64
        self.ps.append(learn.preds.detach()); self.ys.append(learn.batch[1])
        if len(self.ps) >= 409: self.flush()
    def flush(self):
        if self.ps: self.metric.update(torch.cat(self.ps), torch.cat(self.ys)); self.ps,self.ys = [],[]
    def after_epoch(self, learn):
        self.flush(); learn.history.append(dict(epoch=learn.epoch, phase='train' if learn.training else 'valid', loss=self.loss/self.n, accuracy=self.metric.compute().item()))

class Batches:
    "The batches as an iterable with a length (what fastai and Lightning accept in place of a DataLoader)."
    def __init__(self, batches): self.batches = batches
    def __iter__(self): return iter(self.batches)
    def __len__(self): return len(self.batches)

def fastai_side():
    "fastai's `Learner` on the same batches with torch's SGD, or None when fastai isn't installed."
    try:
        from fastai.learner import Learner as FastaiLearner
        from fastai.data.core import DataLoaders as FastaiDataLoaders
        from fastai.optimizer import OptimWrapper
        import fastai.callback.progress   # noqa: the default progress callback (and `no_bar`), as fastai users have it
    except ImportError: return None
    from functools import partial
    def run(model, batches):
        dls = FastaiDataLoaders(Batches(batches), Batches([]))
        learn = FastaiLearner(dls, model, loss_func=F.cross_entropy, opt_func=partial(OptimWrapper, opt=torch.optim.SGD), lr=0.01)
        with learn.no_bar(), learn.no_logging(): learn.fit(1)
    return run

def lightning_side(extras=False):
    "Lightning's `Trainer` on the same batches (with `extras`: its progress bar and a logged accuracy), or None when not installed."
    try: import lightning as Lt
    except ImportError: return None
    class Module(Lt.LightningModule):
        def __init__(self, model): super().__init__(); self.model = model
        def configure_optimizers(self): return torch.optim.SGD(self.parameters(), 0.01)
        def training_step(self, batch, i):
            xb, yb = batch
            out = self.model(xb)
            if extras: self.log('accuracy', (out.argmax(1) == yb).float().mean(), prog_bar=True)
            return F.cross_entropy(out, yb)
    def run(model, batches):
        import logging; logging.getLogger('lightning').setLevel(logging.ERROR); logging.getLogger('lightning.pytorch').setLevel(logging.ERROR)
        with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            trainer = Lt.Trainer(max_epochs=1, accelerator='cpu', devices=1, logger=Lt.pytorch.loggers.CSVLogger(d) if extras else False,
                                 enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=extras, num_sanity_val_steps=0)
            trainer.fit(Module(model), Batches(batches))
    return run

def main(reps=15, n_batches=900, others=True, least=False):
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', torch.get_num_threads())))
    batches = make_batches(n_batches)
    sides = {'plain PyTorch loop': plain,
             'Learner, no callbacks': learner(lambda: []),
             'Learner + MetricsCB + ProgressCB': learner(lambda: [MetricsCB(MulticlassAccuracy()), ProgressCB()]),
             'Learner + default lesson set': learner(lambda: [MetricsCB(MulticlassAccuracy()), ProgressCB(), RecorderCB()])}
    if least: sides['Learner + LeastWork + ProgressCB'] = learner(lambda: [LeastWork(MulticlassAccuracy()), ProgressCB()])
    if others:
        extra = {"fastai's Learner": fastai_side(), "Lightning's Trainer": lightning_side(),
                 "Lightning's Trainer + bar + log": lightning_side(extras=True)}
        for k, f in extra.items():
            if f is None: print(f'({k}: not installed, left out)')
            else: sides[k] = f
    wall, cpu = {k: [] for k in sides}, {k: [] for k in sides}
    for k, f in sides.items(): f(nn.Linear(32, 10), batches)          # warm-up
    load0 = os.getloadavg()[0]
    for _ in range(reps):
        for k, f in sides.items():
            torch.manual_seed(0); model = nn.Linear(32, 10)
            t, c = time.perf_counter(), time.process_time()
            f(model, batches)
            wall[k].append(time.perf_counter() - t); cpu[k].append(time.process_time() - c)
    print(f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, '
          f'torch {torch.__version__}, {torch.get_num_threads()} threads; {n_batches} batches of 64, median of {reps}; '
          f'load average {load0:.1f}-{os.getloadavg()[0]:.1f}')
    res = {}
    print(f'{"":36}{"wall µs/batch":>14}{"over plain":>12}{"ratio":>8}{"CPU µs/batch":>14}{"over plain":>12}')
    bw, bc = statistics.median(wall['plain PyTorch loop']), statistics.median(cpu['plain PyTorch loop'])
    for k in sides:
        mw, mc = statistics.median(wall[k]), statistics.median(cpu[k])
        res[k] = dict(wall_us=mw / n_batches * 1e6, wall_over_us=(mw - bw) / n_batches * 1e6, ratio=mw / bw,
                      cpu_us=mc / n_batches * 1e6, cpu_over_us=(mc - bc) / n_batches * 1e6)
        r = res[k]
        print(f'{k:36}{r["wall_us"]:14.1f}{r["wall_over_us"]:12.1f}{r["ratio"]:8.3f}{r["cpu_us"]:14.1f}{r["cpu_over_us"]:12.1f}')
    return res

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=15); p.add_argument('--batches', type=int, default=900)
    p.add_argument('--no-others', action='store_true', help='leave out fastai and Lightning even where installed')
    p.add_argument('--least', action='store_true', help='add the side with the least per-batch work exact metrics need')
    a = p.parse_args(); main(a.reps, a.batches, not a.no_others, a.least)
