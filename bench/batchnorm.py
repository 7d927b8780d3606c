"""Time of one ResNet training step with our BatchNorm (eager and compiled) against torch's nn.BatchNorm2d.

The final recipe's network and setting: `ResNet()` (16-256 channels, 15 BatchNorm layers of 5 shapes) in
channels-last memory format, a batch of 256 Fashion-MNIST-sized images, forward and loss under bfloat16
autocast, backward, AdamW step. Compiled sides: `BatchNorm(compile=True)` as the library runs it (a graph per
layer, batch size symbolic, channel and spatial sizes fixed) and, for comparison, the same with every size
symbolic. Sides are interleaved (A B C A B C ...); each rep times `--steps` consecutive steps; medians of wall
and process CPU time and their ratios to nn.BatchNorm2d are printed, with the first steps of the compiled sides
(compilation) timed separately. On a shared machine, compare the ratios rather than the milliseconds, and
prefer the CPU-time ratio with one thread (OMP_NUM_THREADS=1): waiting for a core counts in wall time only.
    python bench/batchnorm.py [--reps 7] [--steps 3] [--bs 256] [--no-compile]
"""
import argparse, os, platform, statistics, time
from functools import partial
import torch, torch.nn.functional as F
from torch import nn
from slowlearn.layers import BatchNorm
from slowlearn.optim import AdamW
from slowlearn.resnet import ResNet

class AllSymbolicBatchNorm(BatchNorm):
    "`BatchNorm(compile=True)` with every size of the input symbolic, not only the batch size."
    def _train_fn(self, x):
        for i in range(x.ndim): torch._dynamo.maybe_mark_dynamic(x, i)
        return super()._train_fn(x)

def make_step(norm, bs):
    "A closure running one training step of a fresh channels-last ResNet with `norm` on a fixed batch."
    torch.manual_seed(0)
    model = ResNet(norm=norm).to(memory_format=torch.channels_last)
    opt = AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(bs, 1, 28, 28, generator=g).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (bs,), generator=g)
    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16): loss = F.cross_entropy(model(x), y)
        loss.backward(); opt.step(); opt.zero_grad()
    return step

def main(reps=7, steps=3, bs=256, compile=True):
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', torch.get_num_threads())))
    sides = {'nn.BatchNorm2d': nn.BatchNorm2d, 'slowlearn BatchNorm': BatchNorm}
    if compile: sides.update({'slowlearn BatchNorm, compiled': partial(BatchNorm, compile=True),
                              'compiled, all sizes symbolic': partial(AllSymbolicBatchNorm, compile=True)})
    fns, first = {}, {}
    for k, norm in sides.items():
        fns[k] = make_step(norm, bs)
        t = time.perf_counter(); fns[k](); fns[k](); first[k] = time.perf_counter() - t   # compiles forward and backward
    times, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t, c = time.perf_counter(), time.process_time()
            for _ in range(steps): f()
            times[k].append((time.perf_counter() - t) / steps); cpu[k].append((time.process_time() - c) / steps)
    print(f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, '
          f'torch {torch.__version__}, {torch.get_num_threads()} threads; batch {bs}, channels last, bfloat16 autocast')
    print(f'median of {reps} reps of {steps} steps')
    med, mcpu = {k: statistics.median(ts) for k, ts in times.items()}, {k: statistics.median(ts) for k, ts in cpu.items()}
    ref, rcpu = med['nn.BatchNorm2d'], mcpu['nn.BatchNorm2d']
    print(f'{"":32}{"ms/step":>9}{"/ nn.BatchNorm2d":>18}{"CPU ms/step":>13}{"/ nn.BatchNorm2d":>18}{"first 2 steps s":>17}')
    for k, m in med.items(): print(f'{k:32}{m * 1e3:9.0f}{m / ref:18.2f}{mcpu[k] * 1e3:13.0f}{mcpu[k] / rcpu:18.2f}{first[k]:17.1f}')
    print(f'load average {os.getloadavg()[0]:.1f} (other jobs on the machine inflate the times)')
    return med, first

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=7); p.add_argument('--steps', type=int, default=3)
    p.add_argument('--bs', type=int, default=256)
    p.add_argument('--no-compile', action='store_true', help='leave out the compiled sides (no compilation wait)')
    a = p.parse_args(); main(a.reps, a.steps, a.bs, not a.no_compile)
