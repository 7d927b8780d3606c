"""Time of one optimizer step: slowlearn's Adam/AdamW against torch.optim.Adam (for-loop, foreach, fused).

The model is 30 x (Linear(256,256) + LayerNorm(256)): 1,989,120 parameters in 120 tensors, with fixed random
gradients. Each side gets its own copy. Sides are interleaved (A B C ... A B C ...) so machine noise hits
every side alike; each rep times `--steps` consecutive steps. Prints the median ms per step and the ratios to
torch's for-loop Adam (`foreach=False`, the CPU default) and to its fused Adam, and our compiled AdamW over torch's fused AdamW. Our unchunked Adam (one
`_foreach` call per op over all 120 tensors) and torch's for-loop AdamW are there for reference. Our compiled
steps (`compile=True`: torch.compile + Inductor, which needs a C++ compiler) are timed after their first step,
whose time (the compilation) is printed separately; `--no-compile` leaves them out.
On a shared machine, compare the ratios rather than the milliseconds; OMP_NUM_THREADS sets the thread count.
    python bench/optim_step.py [--reps 30] [--steps 10] [--device cpu] [--no-compile]
"""
import argparse, copy, os, platform, statistics, time
from functools import partial
import torch
from torch import nn
from slowlearn.optim import Adam, AdamW

def make_model(device):
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(30) for m in (nn.Linear(256, 256), nn.LayerNorm(256))]).to(device)
    for p in model.parameters(): p.grad = torch.randn_like(p) * 1e-3
    return model

def unchunked(opt): opt.chunk_numel = float('inf'); return opt

def main(reps=30, steps=10, device='cpu', compile=True):
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', torch.get_num_threads())))
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    base = make_model(device)
    sides = {
        'slowlearn Adam': lambda ps: Adam(ps, lr=1e-3),
        'slowlearn AdamW': lambda ps: AdamW(ps, lr=1e-3),
        'slowlearn Adam, unchunked': lambda ps: unchunked(Adam(ps, lr=1e-3)),
        'torch Adam foreach=False': partial(torch.optim.Adam, lr=1e-3, foreach=False),
        'torch Adam foreach=True': partial(torch.optim.Adam, lr=1e-3, foreach=True),
        'torch Adam fused=True': partial(torch.optim.Adam, lr=1e-3, fused=True),
        'torch AdamW foreach=False': partial(torch.optim.AdamW, lr=1e-3, foreach=False),  # AdamW's extra decay pass
        'torch AdamW fused=True': partial(torch.optim.AdamW, lr=1e-3, fused=True),
    }
    if compile: sides.update({'slowlearn Adam, compiled': partial(Adam, lr=1e-3, compile=True),
                              'slowlearn AdamW, compiled': partial(AdamW, lr=1e-3, compile=True)})
    opts, first = {}, {}
    for k, make in sides.items():
        model = copy.deepcopy(base)
        for p, q in zip(model.parameters(), base.parameters()): p.grad = q.grad.clone()
        opts[k] = make(model.parameters())
        t = time.perf_counter(); opts[k].step(); first[k] = time.perf_counter() - t   # compiles, for the compiled sides
        for _ in range(2): opts[k].step()  # state created, warm caches
    times = {k: [] for k in opts}
    for _ in range(reps):
        for k, opt in opts.items():
            sync(); t = time.perf_counter()
            for _ in range(steps): opt.step()
            sync(); times[k].append((time.perf_counter() - t) / steps)
    n_params = sum(p.numel() for p in base.parameters())
    print(f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, '
          f'torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}')
    print(f'{n_params:,} params in {len(list(base.parameters()))} tensors; median of {reps} reps of {steps} steps')
    med = {k: statistics.median(ts) for k, ts in times.items()}
    loop, fused = med['torch Adam foreach=False'], med['torch Adam fused=True']
    print(f'{"":28}{"ms/step":>9}{"/ torch loop":>14}{"/ torch fused":>15}')
    for k, m in med.items(): print(f'{k:28}{m * 1e3:9.2f}{m / loop:14.2f}{m / fused:15.2f}')
    for k in sides:
        if 'compiled' in k: print(f'{k}: first step (compiling) {first[k]:.1f} s')
    if compile: print(f"slowlearn AdamW, compiled / torch AdamW fused=True: {med['slowlearn AdamW, compiled'] / med['torch AdamW fused=True']:.3f}")
    print(f'load average {os.getloadavg()[0]:.1f} (other jobs on the machine inflate the times)')
    return med, first

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=30); p.add_argument('--steps', type=int, default=10)
    p.add_argument('--device', default='cpu')
    p.add_argument('--no-compile', action='store_true', help='leave out the compiled steps (no compilation wait)')
    a = p.parse_args(); main(a.reps, a.steps, a.device, not a.no_compile)
