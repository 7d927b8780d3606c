"""Time to accuracy and peak memory: the scheduler lesson's 90% recipe with `Learner` against the same recipe as a plain loop.

Recipe (nbs/10_sched.ipynb): `fashion_mnist_cnn()`, Fashion-MNIST in batches of 512, AdamW (weight decay 0.01), one-cycle
with peak LR 1e-2 over 6 epochs. slowlearn side: `Learner` + `MetricsCB(accuracy)` + `ProgressCB` +
`fit_one_cycle`. Plain side: bench/plain.py (torch.optim.AdamW, the same schedule and data order, per-epoch
metrics). Every run is a fresh subprocess, so its peak RSS is its own; sides alternate (A B A B ...). Prints the
median wall time of the fit, the final validation accuracy, peak RSS and the ratios.
    python bench/time_to_accuracy.py [--reps 3] [--epochs 6] [--threads N]
    python bench/time_to_accuracy.py --side learner --json     # one run, as the driver does
"""
import os, platform, resource, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from two_sides import spawn, side_parser, run_one_side

def run_side(side, epochs, threads=None):
    "Train once with `side` ('learner' or 'plain'); returns seconds, final accuracy and peak RSS in MiB."
    import torch
    if threads: torch.set_num_threads(threads)
    from slowlearn.models import fashion_mnist_cnn
    if side == 'learner':
        import contextlib, io
        from torcheval.metrics import MulticlassAccuracy
        from slowlearn.learner import Learner
        from slowlearn.metrics import MetricsCB, ProgressCB
        from slowlearn.data import fashion_mnist
        from slowlearn.optim import AdamW
        from slowlearn.sched import fit_one_cycle
        dls = fashion_mnist(bs=512)
        torch.manual_seed(0)
        learn = Learner(fashion_mnist_cnn(), dls, opt_func=AdamW, cbs=[MetricsCB(MulticlassAccuracy()), ProgressCB(notebook=False)])
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr): learn.fit_one_cycle(epochs, 1e-2)
        secs, acc = time.perf_counter() - t0, learn.history[-1]['accuracy']
    elif side == 'plain':
        from slowlearn.data import load_fashion_mnist
        from plain import plain_fit
        data = load_fashion_mnist()
        torch.manual_seed(0)
        model = fashion_mnist_cnn()
        t0 = time.perf_counter()
        hist = plain_fit(model, *data, epochs=epochs, lr_max=1e-2, bs=512, log=lambda s: print(s, file=sys.stderr))
        secs, acc = time.perf_counter() - t0, hist[-1]['accuracy']
    else: raise ValueError(f"side must be 'learner' or 'plain', got {side!r}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux
    return dict(side=side, secs=secs, accuracy=acc, rss_mib=rss, threads=torch.get_num_threads())

def main(reps=3, epochs=6, threads=None):
    "Alternate `reps` runs of each side in subprocesses; print and return the medians and ratios."
    runs = {'learner': [], 'plain': []}
    loads = [os.getloadavg()[0]]
    for i in range(reps):
        for side in ('plain', 'learner') if i % 2 else ('learner', 'plain'):
            runs[side].append(spawn(__file__, side, epochs, threads)); loads.append(os.getloadavg()[0])
            r = runs[side][-1]
            print(f"  {side:8} run {i+1}: {r['secs']:6.1f} s  accuracy {r['accuracy']:.4f}  peak RSS {r['rss_mib']:.0f} MiB", flush=True)
    med = {s: {k: statistics.median(r[k] for r in rs) for k in ('secs', 'accuracy', 'rss_mib')} for s, rs in runs.items()}
    L, P = med['learner'], med['plain']
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {runs['learner'][0]['threads']} threads; "
          f"load average {min(loads):.1f}-{max(loads):.1f}; {epochs} epochs, median of {reps} runs per side")
    print(f'{"":22}{"seconds":>9}{"accuracy":>10}{"peak RSS MiB":>14}')
    for k, m in (('Learner', L), ('plain PyTorch loop', P)): print(f'{k:22}{m["secs"]:9.1f}{m["accuracy"]:10.4f}{m["rss_mib"]:14.0f}')
    res = dict(time_ratio=L['secs'] / P['secs'], accuracy=(L['accuracy'], P['accuracy']), rss_ratio=L['rss_mib'] / P['rss_mib'],
               secs=(L['secs'], P['secs']), rss_mib=(L['rss_mib'], P['rss_mib']), load=(min(loads), max(loads)))
    print(f"time ratio Learner / plain: {res['time_ratio']:.3f} (target <= 1.05); "
          f"peak RSS ratio {res['rss_ratio']:.3f} ({L['rss_mib'] - P['rss_mib']:+.0f} MiB)")
    return res

if __name__ == '__main__':
    a = side_parser(__doc__, 3, 'runs per side (default 3)', 6, 'epochs per run (default 6, the recipe)').parse_args()
    if a.side: run_one_side(a, run_side)
    else: main(a.reps, a.epochs, a.threads)
