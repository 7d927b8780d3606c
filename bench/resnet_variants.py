"""Variants of the ResNet recipe (nbs/16_resnet.ipynb), chosen on the held-out split: validation accuracy and time.

Each variant is `resnet_learner(**settings)` (optionally with `EMACB`) trained with `fit_one_cycle(epochs)` on the
50,000 training images; what is printed is the accuracy on the 10,000 held out from them. The test images are scored
only with `--test`, once, for the variant picked on validation. One variant per process (`--variant`), so runs can go
one at a time on an idle machine or side by side with `--threads 1` when only the accuracy matters.
    python bench/resnet_variants.py --variant base|ls|lr3|pad2|ema|mixup [--epochs 5] [--threads N] [--test]
"""
import argparse, contextlib, json, os, sys, time
import torch

VARIANTS = dict(base={}, ls=dict(label_smoothing=0.1), lr3=dict(lr=3e-2), pad2=dict(pad=2), ema={}, mixup={})

def run(variant, epochs=5, threads=None, test=False):
    "Train `variant` for `epochs`; a dict of its settings, seconds, CPU seconds, validation (and test) accuracy."
    if threads: torch.set_num_threads(threads)
    from slowlearn.resnet import resnet_learner, accuracy_on
    from slowlearn.metrics import ProgressCB
    from slowlearn.callbacks import EMACB, MixUpCB
    cbs = [ProgressCB(notebook=False)] + ([EMACB(0.998)] if variant == 'ema' else []) + ([MixUpCB(0.2)] if variant == 'mixup' else [])
    learn = resnet_learner(cbs=cbs, **VARIANTS[variant])
    t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    with contextlib.redirect_stdout(sys.stderr): learn.fit_one_cycle(epochs)
    res = dict(variant=variant, settings=VARIANTS[variant], epochs=epochs, threads=torch.get_num_threads(),
               secs=round(time.perf_counter() - t0, 1), cpu_secs=round(time.process_time() - c0, 1),
               valid_acc=learn.history[-1]['accuracy'], load=(load0, os.getloadavg()[0]))
    if test: res['test_acc'] = accuracy_on(learn.model, learn.dls.test)
    return res

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--variant', choices=list(VARIANTS), default='base'); p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--threads', type=int, default=None); p.add_argument('--test', action='store_true')
    a = p.parse_args()
    print(json.dumps(run(a.variant, a.epochs, a.threads, a.test)))
