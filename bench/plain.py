"""Plain PyTorch counterparts of slowlearn's recipes, for the benchmarks: the loop a careful PyTorch user writes by hand.

No slowlearn training code here: in-memory batches by indexing, `torch.optim.AdamW`, the one-cycle schedule written
out, per-epoch metrics accumulated as tensors. It takes the same data order as slowlearn's `TensorLoader` (a
permutation seeded per epoch), so that both sides see the same batches and reach the same accuracy.
"""
import math, time
import torch, torch.nn.functional as F
from slowlearn.data import epoch_seed

def _cos(a, b, p): return a + (1 + math.cos(math.pi * (1 - p))) * (b - a) / 2

def one_cycle(pos, lr_max, pct_start=0.25, div=25., div_final=1e5, moms=(0.95, 0.85, 0.95)):
    "Learning rate and momentum at `pos` in [0, 1]: cosine warm-up from `lr_max/div`, cosine down to `lr_max/div_final`."
    if pos < pct_start: p = pos / pct_start; return _cos(lr_max / div, lr_max, p), _cos(moms[0], moms[1], p)
    p = (pos - pct_start) / (1 - pct_start)
    return _cos(lr_max, lr_max / div_final, p), _cos(moms[1], moms[2], p)

def plain_fit(model, xt, yt, xv, yv, epochs, lr_max, bs=512, wd=1e-2, seed=0, augment=None, amp_dtype=None,
              channels_last=False, val_bs=None, label_smoothing=0., log=print):
    "Train `model` with AdamW + one-cycle for `epochs`; returns the per-epoch records (train loss, valid loss and accuracy)."
    opt = torch.optim.AdamW(model.parameters(), lr=lr_max / 25, weight_decay=wd)
    n, nb = len(xt), math.ceil(len(xt) / bs)
    total, step, hist = epochs * nb, 0, []
    if channels_last: model = model.to(memory_format=torch.channels_last)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
        tl = torch.zeros((), dtype=torch.float64)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            xb, yb = xt.index_select(0, idx), yt.index_select(0, idx)
            lr, mom = one_cycle(min(step / total, 1.), lr_max)
            for g in opt.param_groups: g['lr'], g['betas'] = lr, (mom, g['betas'][1])
            if augment is not None: xb = augment(xb)
            with torch.autocast('cpu', dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            loss.backward(); opt.step(); opt.zero_grad()
            tl += loss.detach() * len(xb)
            step += 1
        model.eval()
        vl, correct, vbs = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.long), val_bs or bs
        with torch.no_grad(), torch.autocast('cpu', dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            for i in range(0, len(xv), vbs):
                xb, yb = xv[i:i + vbs], yv[i:i + vbs]
                out = model(xb)
                vl += F.cross_entropy(out, yb, label_smoothing=label_smoothing).double() * len(xb)
                correct += (out.argmax(1) == yb).sum()
        rec = dict(epoch=epoch, train_loss=(tl / n).item(), valid_loss=(vl / len(xv)).item(), accuracy=(correct / len(xv)).item())
        hist.append(rec)
        if log: log(f"{epoch:3d}  train {rec['train_loss']:.4f}  valid {rec['valid_loss']:.4f}  accuracy {rec['accuracy']:.4f}  "
                    f"{time.perf_counter() - t0:.1f} s")
    return hist
