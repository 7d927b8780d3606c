"""The training run `test_distributed.py` compares: run in-process as the 1-process reference, or as a script under
`torchrun --nproc_per_node 2 tests/ddp_train.py OUT`, where each rank saves its weights, history and printed output."""
import io, os, sys
from contextlib import redirect_stdout
from pathlib import Path
import torch
from torch import nn
from torcheval.metrics import MulticlassAccuracy
from slowlearn.learner import Learner
from slowlearn.metrics import MetricsCB, ProgressCB
from slowlearn.data import DataLoaders
from slowlearn.distributed import DDPCB

# name: (n_train, n_valid, bs). 41 = 3*12 + 5: the last batch splits 3/2 over 2 ranks; 37 = 3*12 + 1: rank 1's shard
# of the last batch is empty. The validation sets end the same two ways.
CASES = dict(uneven=(41, 23, 12), empty_shard=(37, 25, 12))

def fit(n_train, n_valid, bs, epochs=3, ddp=True):
    "Train a small MLP (no BatchNorm) with momentum SGD on fixed random data, with `DDPCB` if `ddp`; returns the learner."
    g = torch.Generator().manual_seed(0)
    x,y = torch.randn(n_train + n_valid, 6, generator=g),torch.randint(0, 3, (n_train + n_valid,), generator=g)
    dls = DataLoaders.from_tensors(x[:n_train], y[:n_train], x[n_train:], y[n_train:], bs=bs, seed=1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = lambda ps, lr: torch.optim.SGD(ps, lr, momentum=0.9)
    learn = Learner(model, dls, lr=0.1, opt_func=opt, cbs=[MetricsCB(MulticlassAccuracy()), ProgressCB(notebook=False)] + [DDPCB()]*ddp)
    learn.fit(epochs)
    return learn

if __name__ == '__main__':
    out,rank = Path(sys.argv[1]),int(os.environ['RANK'])
    for name,args in CASES.items():
        with redirect_stdout(buf := io.StringIO()): learn = fit(*args)
        torch.save(dict(weights=learn.model.state_dict(), history=learn.history, printed=buf.getvalue(),
                        plain_model=not isinstance(learn.model, nn.parallel.DistributedDataParallel)), out/f'{name}_rank{rank}.pt')
