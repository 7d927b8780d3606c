"""Steps per second of the GPT lesson's training with the `Learner` against the same training as a plain PyTorch loop.

Both sides train the model of the lesson's slow cell (`GPT`: 4 layers, 4 heads, 128 wide, context 64, `nn.LayerNorm`;
`TIE`, `BF16` and `TOTAL` below are the cell's choices) on tiny Shakespeare with batches of 16 windows in the same
order, AdamW (betas 0.9/0.99, weight decay 0.1 on the weight matrices only), warm-up cosine over `TOTAL` steps,
gradient clipping at norm 1, bfloat16 autocast if `BF16`. Sides:
- `plain`: the loop written out with `torch.optim.AdamW`, `LambdaLR` and `clip_grad_norm_`;
- `learner`: `gpt_learner(...)` with `MetricsCB` and `RecorderCB`, as the lesson trains it (slowlearn's `AdamW`);
- `learner+torch AdamW`: the same `Learner` with `torch.optim.AdamW`, to tell the loop's cost from the optimizer's.
Short runs of `--steps` steps, the sides interleaved (A B C A B C ...), the first round dropped as warm-up; prints the
median steps/s of each side and its ratio to the plain loop. Never asserts.

    python bench/gpt.py [--steps 60] [--reps 5] [--threads 2]
    python bench/gpt.py --full [--total TOTAL]   # the plain loop's whole run: validation loss and wall time
"""
import argparse, contextlib, io, math, os, platform, statistics, time
from functools import partial
import torch
from torch import nn
from torch.nn.utils import clip_grad_norm_
from slowlearn.data import tiny_shakespeare
from slowlearn.optim import weight_decay_groups
from slowlearn.sched import warmup_cosine, RecorderCB
from slowlearn.metrics import MetricsCB
from slowlearn.gpt import GPT, lm_loss, gpt_learner

TIE, BF16, TOTAL = True, False, 7500   # as in the slow cell of nbs/19_gpt.ipynb
CFG = dict(ctx=64, d=128, n_layers=4, n_heads=4, norm=nn.LayerNorm, tie=TIE)
LR, WD, BETAS, CLIP = 3e-3, 0.1, (0.9, 0.99), 1.

def make_model(vocab, seed=0):
    torch.manual_seed(seed)
    return GPT(vocab, **CFG)

@torch.no_grad()
def valid_loss(model, dl):
    "Mean loss per character over the validation windows (under bfloat16 autocast if `BF16`)."
    model.eval(); tot, n = 0., 0
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=BF16):
        for xb, yb in dl: tot += lm_loss(model(xb), yb).item() * yb.numel(); n += yb.numel()
    model.train()
    return tot / n

def plain(model, dls, steps, total, warmup):
    "The plain PyTorch loop: `steps` steps of a `total`-step warm-up cosine schedule."
    opt = torch.optim.AdamW(weight_decay_groups(model, WD), lr=LR, betas=BETAS)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(1., warmup, total))
    dls.train.set_epoch(0)
    for i, (xb, yb) in zip(range(steps), dls.train):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=BF16): loss = lm_loss(model(xb), yb)
        loss.backward()
        clip_grad_norm_(model.parameters(), CLIP)
        opt.step(); sched.step(); opt.zero_grad()
    return model

def learner(model, dls, steps, total, warmup, opt_func=None):
    "The lesson's `Learner`: `steps` steps of a `total`-step schedule, no validation."
    learn = gpt_learner(model, dls, lr=LR, total_steps=total, warmup_steps=warmup, wd=WD, clip=CLIP, betas=BETAS, bf16=BF16,
                        cbs=[MetricsCB(), RecorderCB()])
    if opt_func: learn.opt_func = partial(opt_func, betas=BETAS)
    with contextlib.redirect_stdout(io.StringIO()): learn.fit(1, steps_per_epoch=steps, valid=False)
    return model

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=60); p.add_argument('--reps', type=int, default=5)
    p.add_argument('--threads', type=int, default=None); p.add_argument('--full', action='store_true')
    p.add_argument('--total', type=int, default=TOTAL)
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    dls = tiny_shakespeare(ctx=CFG['ctx'], bs=16)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if a.full:
        t0 = time.perf_counter()
        model = plain(make_model(len(dls.vocab)), dls, a.total, a.total, 100)
        train_s = time.perf_counter() - t0
        print(f"plain loop, {a.total} steps: validation loss {valid_loss(model, dls.valid):.4f} nats/char, "
              f"{train_s/60:.2f} min training, {(time.perf_counter() - t0)/60:.2f} min with the validation pass")
        return
    sides = {'plain': plain, 'learner': learner, 'learner+torch AdamW': partial(learner, opt_func=torch.optim.AdamW)}
    times = {k: [] for k in sides}
    for r in range(a.reps + 1):
        for k, f in sides.items():
            model = make_model(len(dls.vocab), seed=r)
            t0 = time.perf_counter(); f(model, dls, a.steps, a.total, 100); dt = time.perf_counter() - t0
            if r: times[k].append(dt)   # round 0: warm-up
    base = a.steps / statistics.median(times['plain'])
    print(f"{'side':22}{'steps/s':>9}{'ms/step':>9}{'vs plain':>10}   ({a.reps} interleaved runs of {a.steps} steps, medians)")
    for k, ts in times.items():
        sps = a.steps / statistics.median(ts)
        print(f"{k:22}{sps:9.2f}{1e3/sps:9.1f}{sps/base:10.3f}")

if __name__ == '__main__': main()
