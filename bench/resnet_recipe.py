"""The final lesson's recipe (nbs/16_resnet.ipynb): accuracy and wall time of 5 epochs, with `Learner` and as a plain loop.

slowlearn side: `resnet_learner()` + `fit_one_cycle(5)` (ResNet 16-256 channels with our compiled `BatchNorm`, channels
last, batch augmentation, AdamW + one-cycle, bfloat16 autocast via `MixedPrecisionCB`, `MetricsCB` + `ProgressCB`),
trained on 50,000 training images with 10,000 held out for validation (`fashion_mnist(valid=10_000)`); the official
10,000 test images are scored once, after training. Plain side: the same model, augmentation function, data order and
schedule in bench/plain.py's loop. Each run is a fresh subprocess; sides alternate; the time includes compiling the
BatchNorm. The goal is >= 94.0% test accuracy in under 3 minutes on a 2-core CPU; the load average is printed because a
shared machine's timings are inflated by the other jobs on it.
    python bench/resnet_recipe.py [--reps 1] [--epochs 5] [--threads N] [--no-plain]
"""
import os, platform, resource, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from two_sides import spawn, side_parser, run_one_side

def run_side(side, epochs, threads=None):
    "One run of the recipe with `side` ('learner' or 'plain'): seconds, CPU seconds, final accuracy, peak RSS in MiB."
    import torch
    if threads: torch.set_num_threads(threads)
    if side == 'learner':
        import contextlib
        from slowlearn.metrics import ProgressCB
        from slowlearn.sched import fit_one_cycle
        from slowlearn.resnet import resnet_learner
        from slowlearn.resnet import accuracy_on
        learn = resnet_learner(cbs=ProgressCB(notebook=False))
        t0, c0 = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(sys.stderr): learn.fit_one_cycle(epochs)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        acc, test_acc = learn.history[-1]['accuracy'], accuracy_on(learn.model, learn.dls.test)
    elif side == 'plain':
        import inspect
        from slowlearn.data import fashion_mnist
        from slowlearn.resnet import ResNet, random_crop_flip, resnet_learner, accuracy_on
        from plain import plain_fit
        hp = {k: v.default for k, v in inspect.signature(resnet_learner).parameters.items()}   # the recipe's settings
        dls = fashion_mnist(bs=hp['bs'], valid=10_000)
        torch.manual_seed(0)
        model = ResNet(norm=hp['norm'])
        t0, c0 = time.perf_counter(), time.process_time()
        hist = plain_fit(model, *dls.train.tensors, *dls.valid.tensors, epochs=epochs, lr_max=hp['lr'], bs=hp['bs'], wd=hp['wd'],
                         augment=random_crop_flip, amp_dtype=torch.bfloat16, channels_last=True,
                         label_smoothing=hp['label_smoothing'], log=lambda s: print(s, file=sys.stderr))
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        acc, test_acc = hist[-1]['accuracy'], accuracy_on(model, dls.test)
    else: raise ValueError(f"side must be 'learner' or 'plain', got {side!r}")
    return dict(side=side, secs=secs, cpu_secs=cpu, accuracy=acc, test_accuracy=test_acc,
                rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, threads=torch.get_num_threads())

def main(reps=1, epochs=5, threads=None, plain=True):
    "Alternate `reps` runs of each side; print and return medians (and the ratio to the plain loop when run)."
    sides = ('learner', 'plain') if plain else ('learner',)
    runs, loads = {s: [] for s in sides}, [os.getloadavg()[0]]
    for i in range(reps):
        for side in (sides[::-1] if i % 2 else sides):
            r = spawn(__file__, side, epochs, threads); runs[side].append(r); loads.append(os.getloadavg()[0])
            print(f"  {side:8} run {i+1}: {r['secs']:6.1f} s ({r['cpu_secs']:.0f} s CPU)  validation {r['accuracy']:.4f}  test {r['test_accuracy']:.4f}  "
                  f"load average now {loads[-1]:.1f}", flush=True)
    med = {s: {k: statistics.median(r[k] for r in rs) for k in ('secs', 'cpu_secs', 'accuracy', 'test_accuracy', 'rss_mib')} for s, rs in runs.items()}
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {runs['learner'][0]['threads']} threads; "
          f"load average {min(loads):.1f}-{max(loads):.1f}; {epochs} epochs, median of {reps} run(s) per side")
    print(f'{"":22}{"seconds":>9}{"CPU s":>8}{"validation":>12}{"test":>8}{"peak RSS MiB":>14}')
    for s in sides:
        m = med[s]; print(f'{"Learner" if s == "learner" else "plain PyTorch loop":22}{m["secs"]:9.1f}{m["cpu_secs"]:8.0f}{m["accuracy"]:12.4f}{m["test_accuracy"]:8.4f}{m["rss_mib"]:14.0f}')
    res = dict(secs=med['learner']['secs'], accuracy=med['learner']['accuracy'], test_accuracy=med['learner']['test_accuracy'], load=(min(loads), max(loads)))
    if plain:
        res.update(plain_secs=med['plain']['secs'], plain_accuracy=med['plain']['accuracy'], time_ratio=med['learner']['secs'] / med['plain']['secs'])
        print(f"time ratio Learner / plain: {res['time_ratio']:.3f}")
    if epochs == 5:
        ok = res['test_accuracy'] >= 0.94 and res['secs'] < 180
        print(f"goal >= 94.0% test accuracy in < 3 min: {'met' if ok else 'not met'} ({res['test_accuracy']:.2%} in {res['secs']/60:.1f} min)")
    return res

if __name__ == '__main__':
    p = side_parser(__doc__, 1, 'runs per side (default 1: each takes minutes)', 5)
    p.add_argument('--no-plain', action='store_true', help='skip the plain-PyTorch counterpart')
    a = p.parse_args()
    if a.side: run_one_side(a, run_side)
    else: main(a.reps, a.epochs, a.threads, not a.no_plain)
