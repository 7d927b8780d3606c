"""Variants of the GPT lesson's 5,000-step recipe against the issue's goal (validation loss <= 1.55 nats/char).

A plain PyTorch loop with flags for each difference from the lesson's recipe (defaults: the lesson's, as in
`bench/gpt.py --full`): the model (`ours`: `slowlearn.gpt.GPT`, its `LayerNorm` or `nn.LayerNorm`; `nano`: an
independent nanoGPT `model.py` written out, `nn.LayerNorm`, bias or not), tied head, which weights decay, the
optimizer, learning rate, betas, warm-up, the floor of the cosine, batch size, batches drawn as the lesson's loader
does (shuffled windows) or as nanoGPT's `get_batch` does (`torch.randint`), `torch.compile`. Prints the validation
loss (the lesson's: every character of the last 10%, windows of 64) every `--eval_every` steps and the seconds per
step; one line of JSON at the end. Compare variants by loss at a fixed number of steps, and their cost per step by
`--time` (steps of the variants interleaved one by one, medians), not by the wall time of whole runs on a shared machine. Never asserts.

    python bench/gpt_recipe.py [--model nano] [--bs 32] [--steps 5000] [--untie] [--decay all2d] ...
    python bench/gpt_recipe.py --time '' ' --ln torch' ' --compile' ... [--time_steps 100]   # each variant: flags with a space
"""
import argparse, json, math, os, shlex, statistics, time
import torch, torch.nn as nn, torch.nn.functional as F
from slowlearn.data import tiny_shakespeare
from slowlearn.optim import AdamW as SLAdamW, weight_decay_groups
from slowlearn.layers import LayerNorm
from slowlearn.gpt import GPT, lm_loss

class NanoBlock(nn.Module):
    "nanoGPT's `Block`: pre-norm attention and MLP, `nn.LayerNorm` with or without bias."
    def __init__(self, d, h, bias):
        super().__init__()
        self.h,self.ln_1,self.ln_2 = h,nn.LayerNorm(d, bias=bias),nn.LayerNorm(d, bias=bias)
        self.c_attn,self.c_proj = nn.Linear(d, 3*d, bias=bias),nn.Linear(d, d, bias=bias)
        self.c_fc,self.mlp_proj = nn.Linear(d, 4*d, bias=bias),nn.Linear(4*d, d, bias=bias)

    def attn(self, x):
        B,T,C = x.shape
        q,k,v = self.c_attn(x).split(C, dim=2)
        q,k,v = (t.view(B, T, self.h, C//self.h).transpose(1, 2) for t in (q, k, v))
        return self.c_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(B, T, C))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

class NanoGPT(nn.Module):
    "nanoGPT's `GPT`: token and position embeddings, blocks, final `nn.LayerNorm`, head tied to `wte` if `tie`, its init."
    def __init__(self, vocab, ctx=64, d=128, n_layers=4, n_heads=4, bias=False, tie=True):
        super().__init__()
        self.ctx,self.wte,self.wpe = ctx,nn.Embedding(vocab, d),nn.Embedding(ctx, d)
        self.blocks = nn.Sequential(*[NanoBlock(d, n_heads, bias) for _ in range(n_layers)])
        self.ln_f,self.lm_head = nn.LayerNorm(d, bias=bias),nn.Linear(d, vocab, bias=False)
        if tie: self.wte.weight = self.lm_head.weight
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)): nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None: nn.init.zeros_(m.bias)
        for n,p in self.named_parameters():
            if n.endswith(('c_proj.weight', 'mlp_proj.weight')): nn.init.normal_(p, std=0.02/math.sqrt(2*n_layers))

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[-1]))
        return self.lm_head(self.ln_f(self.blocks(x)))

def make_model(a, vocab):
    torch.manual_seed(a.seed)
    if a.model == 'nano': return NanoGPT(vocab, bias=a.bias, tie=not a.untie)
    return GPT(vocab, ctx=64, d=128, n_layers=4, n_heads=4, norm=nn.LayerNorm if a.ln == 'torch' else LayerNorm, tie=not a.untie)

def param_groups(model, a):
    "The lesson's groups (decay on weight matrices, not embeddings), or nanoGPT's (`all2d`: every 2-d parameter decays)."
    if a.decay == 'matrices': return weight_decay_groups(model, a.wd)
    ps = list(model.parameters())
    return [dict(params=[p for p in ps if p.ndim >= 2], weight_decay=a.wd), dict(params=[p for p in ps if p.ndim < 2], weight_decay=0.)]

def lr_at(a, step):
    "Linear warm-up from 0, then cosine from `lr` down to `lr*min_lr` at `steps`."
    if step < a.warmup: return a.lr * step/a.warmup
    c = (1 + math.cos(math.pi*min(1., (step - a.warmup)/max(1, a.steps - a.warmup))))/2
    return a.lr * (a.min_lr + (1 - a.min_lr)*c)

def batches(a, dls):
    "Training batches: the lesson's loader (shuffled windows, epoch after epoch), or nanoGPT's `get_batch` (`randint`)."
    if a.sampler == 'shuffle':
        ep = 0
        while True:
            dls.train.set_epoch(ep); ep += 1
            for b in dls.train: yield b
    data, g = dls.train.data, torch.Generator().manual_seed(a.seed)
    offs = torch.arange(65)
    while True:
        w = data[torch.randint(len(data) - 64, (a.bs,), generator=g)[:, None] + offs]
        yield w[:, :-1], w[:, 1:]

@torch.no_grad()
def valid_loss(model, dl):
    "Mean loss per character over the validation windows, under bfloat16 autocast."
    model.eval(); tot, n = 0., 0
    with torch.autocast('cpu', dtype=torch.bfloat16):
        for xb, yb in dl: tot += lm_loss(model(xb), yb).item() * yb.numel(); n += yb.numel()
    model.train()
    return tot / n

def setup(a):
    "The data, model, optimizer, forward (compiled or not) and batch iterator of variant `a`."
    dls = tiny_shakespeare(ctx=64, bs=a.bs, seed=a.seed)
    model = make_model(a, len(dls.vocab))
    opt_cls = torch.optim.AdamW if a.opt == 'torch' else SLAdamW
    opt = opt_cls(param_groups(model, a), lr=a.lr, betas=(0.9, a.beta2))
    return dls, model, opt, torch.compile(model) if a.compile else model, batches(a, dls)

def step(a, model, opt, fwd, it, i):
    "Training step `i`: the learning rate, a batch, forward and backward under autocast, clipping, AdamW."
    for g in opt.param_groups: g['lr'] = lr_at(a, i)
    xb, yb = next(it)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=not a.fp32): loss = lm_loss(fwd(xb), yb)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), a.clip)
    opt.step(); opt.zero_grad()
    return loss

def train(a):
    dls, model, opt, fwd, it = setup(a)
    t0, vt, res = time.perf_counter(), 0., dict(args=vars(a), valid={})
    for i in range(a.steps):
        loss = step(a, model, opt, fwd, it, i)
        if (i + 1) % a.eval_every == 0 or i + 1 == a.steps:
            tv = time.perf_counter()
            res['valid'][i + 1] = v = valid_loss(model, dls.valid)
            print(f"step {i+1:5d}  train {loss.item():.3f}  valid {v:.4f}  {1e3*(tv - t0 - vt)/(i+1):.1f} ms/step  "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            vt += time.perf_counter() - tv   # the validation passes don't count
    res['train_s'] = time.perf_counter() - t0 - vt
    return res

def time_steps(vs, n, warm=5):
    "Median seconds per step of each variant in `vs`, their steps interleaved one by one (A B C A B C ...), `warm` first steps not counted."
    runs = {k: setup(va) for k, va in vs.items()}
    ts = {k: [] for k in vs}
    for i in range(n + warm):
        for k, (dls, model, opt, fwd, it) in runs.items():
            t0 = time.perf_counter(); step(vs[k], model, opt, fwd, it, i); dt = time.perf_counter() - t0
            if i >= warm: ts[k].append(dt)
    return {k: statistics.median(t) for k, t in ts.items()}

def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    A = p.add_argument
    A('--model', choices=['ours', 'nano'], default='ours'); A('--ln', choices=['ours', 'torch'], default='ours')
    A('--bias', action='store_true', help='nano: biases in Linear and LayerNorm'); A('--untie', action='store_true')
    A('--decay', choices=['matrices', 'all2d'], default='matrices'); A('--wd', type=float, default=0.1)
    A('--opt', choices=['sl', 'torch'], default='torch'); A('--lr', type=float, default=3e-3)
    A('--beta2', type=float, default=0.99); A('--warmup', type=int, default=100); A('--min_lr', type=float, default=0.)
    A('--bs', type=int, default=16); A('--steps', type=int, default=5000); A('--clip', type=float, default=1.)
    A('--sampler', choices=['shuffle', 'randint'], default='shuffle'); A('--compile', action='store_true')
    A('--fp32', action='store_true'); A('--seed', type=int, default=0); A('--eval_every', type=int, default=1000)
    A('--threads', type=int, default=1); A('--time', nargs='+', default=None, help='variants (flag strings) to time')
    A('--time_steps', type=int, default=100); A('--out', default=None)
    return p

def main():
    p = parser(); a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.time:
        vs = {s: p.parse_args(shlex.split(s) + ['--threads', str(a.threads)]) for s in a.time}
        med = time_steps(vs, a.time_steps)
        base = med[a.time[0]]
        print(f"{a.time_steps} steps of each, interleaved one by one, median step; load {os.getloadavg()[0]:.1f}, {a.threads} threads")
        for s, t in med.items(): print(f"{t/base:6.3f}x  {1e3*t:7.1f} ms/step  {s or '(lesson)'}")
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}; {vars(a)}", flush=True)
    res = train(a)
    print(json.dumps(res))
    if a.out:
        with open(a.out, 'w') as f: json.dump(res, f)

if __name__ == '__main__': main()
