"""Time of one ResNet training step with our BatchNorm (eager and compiled) against torch's nn.BatchNorm2d.

The final recipe's setting: `ResNet()` (16-256 channels) in channels-last memory format, a batch of 256
Fashion-MNIST-sized images, forward and loss under bfloat16 autocast, backward, AdamW step. Sides are
interleaved (A B C A B C ...); each rep times `--steps` consecutive steps; medians and the ratio to
nn.BatchNorm2d are printed, with the first steps of the compiled side (compilation) timed separately.
On a shared machine, compare the ratios rather than the milliseconds; OMP_NUM_THREADS sets the thread count.
    python bench/batchnorm.py [--reps 7] [--steps 3] [--bs 256] [--no-compile]
"""
import argparse, os, platform, statistics, time
from functools import partial
import torch, torch.nn.functional as F
from torch import nn
from slowlearn.layers import BatchNorm
from slowlearn.optim import AdamW
from slowlearn.resnet import ResNet

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
    if compile: sides['slowlearn BatchNorm, compiled'] = partial(BatchNorm, compile=True)
    fns, first = {}, {}
    for k, norm in sides.items():
        fns[k] = make_step(norm, bs)
        t = time.perf_counter(); fns[k](); fns[k](); first[k] = time.perf_counter() - t   # compiles forward and backward
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            for _ in range(steps): f()
            times[k].append((time.perf_counter() - t) / steps)
    print(f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, '
          f'torch {torch.__version__}, {torch.get_num_threads()} threads; batch {bs}, channels last, bfloat16 autocast')
    print(f'median of {reps} reps of {steps} steps')
    med = {k: statistics.median(ts) for k, ts in times.items()}
    ref = med['nn.BatchNorm2d']
    print(f'{"":32}{"ms/step":>9}{"/ nn.BatchNorm2d":>18}{"first 2 steps s":>17}')
    for k, m in med.items(): print(f'{k:32}{m * 1e3:9.0f}{m / ref:18.2f}{first[k]:17.1f}')
    print(f'load average {os.getloadavg()[0]:.1f} (other jobs on the machine inflate the times)')
    return med, first

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=7); p.add_argument('--steps', type=int, default=3)
    p.add_argument('--bs', type=int, default=256)
    p.add_argument('--no-compile', action='store_true', help='leave out the compiled side (no compilation wait)')
    a = p.parse_args(); main(a.reps, a.steps, a.bs, not a.no_compile)
