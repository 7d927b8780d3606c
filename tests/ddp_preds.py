"""What `test_predict.py` compares under torchrun: run in-process as the 1-process reference, or as a script under
`torchrun --nproc_per_node 2 tests/ddp_preds.py OUT`, where each rank saves what `get_preds`, `tta` and `predict_batch` returned."""
import io, os, sys
from contextlib import redirect_stdout
from pathlib import Path
import torch
from torch import nn
from torcheval.metrics import MulticlassAccuracy
from slowlearn.learner import Learner
from slowlearn.metrics import MetricsCB
from slowlearn.data import DataLoaders
from slowlearn.distributed import DDPCB
import slowlearn.predict

# name: (n_valid, bs). 23 = 12 + 11: the last batch splits 6/5 over 2 ranks; 25 = 2*12 + 1: rank 1's shard of the
# last batch is empty.
CASES = dict(uneven=(23, 12), empty_shard=(25, 12))

def results(n_valid, bs, ddp=True):
    "Train a small image classifier for 1 epoch (with `DDPCB` if `ddp`), then predict on the validation set in every way."
    g = torch.Generator().manual_seed(0)
    n = 40 + n_valid
    x,y = torch.randn(n, 1, 3, 4, generator=g),torch.randint(0, 3, (n,), generator=g)
    dls = DataLoaders.from_tensors(x[:40], y[:40], x[40:], y[40:], bs=bs, seed=1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))
    learn = Learner(model, dls, lr=0.1, cbs=[MetricsCB(MulticlassAccuracy())] + [DDPCB()]*ddp)
    learn.fit(1)
    batches = [(x[40+i:40+i+5], y[40+i:40+i+5]) for i in range(0, n_valid, 5)]   # a plain list of batches, 5 per batch
    dicts = [dict(input=a, labels=b) for a, b in batches]                          # sharded and gathered like tuples
    return dict(preds=learn.get_preds(with_input=True, with_loss=True), listed=learn.get_preds(batches), dicts=learn.get_preds(dicts, with_input=True),
                tta=learn.tta(), batch=learn.predict_batch(x[40:47]), item=learn.predict_batch(x[40]),
                history=learn.history)

if __name__ == '__main__':
    out,rank = Path(sys.argv[1]),int(os.environ['RANK'])
    for name,args in CASES.items():
        with redirect_stdout(io.StringIO()): res = results(*args)
        torch.save(res, out/f'{name}_rank{rank}.pt')
