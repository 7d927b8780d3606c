"""One shuffled epoch of Fashion-MNIST training batches (bs 512): slowlearn's `fashion_mnist` loader (whole-batch
indexing) vs `torch.utils.data.DataLoader(TensorDataset(...), batch_size=512, shuffle=True)` on the same tensors.
Runs the two in turn (A B A B ...) and prints the medians and the ratio. Needs the data: set SLOWLEARN_DATA or pass --data.
    python bench/data_loading.py [--reps 7] [--data FOLDER] [--threads N]
On a busy machine (load average above the core count) torch's multi-threaded gather stalls waiting for descheduled
threads and the timings mean little: the script prints the load average; `--threads 1` shows the single-thread case."""
import argparse, os, platform, statistics, time
import torch
from torch.utils.data import DataLoader, TensorDataset
from slowlearn.data import fashion_mnist

def epoch_seconds(dl):
    "Seconds to draw every batch of one epoch from `dl`."
    t0 = time.perf_counter()
    for xb, yb in dl: pass
    return time.perf_counter() - t0

def main(reps=7, data=None, bs=512, threads=None):
    if threads: torch.set_num_threads(threads)
    t0 = time.perf_counter()
    dls = fashion_mnist(bs=bs, path=data)
    load_s = time.perf_counter() - t0
    ours = dls.train
    ref = DataLoader(TensorDataset(*ours.tensors), batch_size=bs, shuffle=True)
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    load = os.getloadavg()[0]
    print(f"load average {load:.1f}" + (" (busy machine: timings unreliable)" if load > (os.cpu_count() or 1) else ""))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(ours.tensors[0]):,} items, bs {bs}, "
          f"{len(ours)} batches/epoch; fashion_mnist() load {load_s:.2f} s")
    epoch_seconds(ours); epoch_seconds(ref)       # warm-up
    a, b = [], []
    for _ in range(reps): a.append(epoch_seconds(ours)); b.append(epoch_seconds(ref))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"slowlearn TensorLoader     {ma*1e3:8.1f} ms/epoch (median of {reps})")
    print(f"DataLoader(TensorDataset)  {mb*1e3:8.1f} ms/epoch (median of {reps})")
    print(f"ratio: ours is {mb/ma:.1f}x faster (target >= 10x)")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=7, help='epochs per side (default 7)')
    p.add_argument('--data', default=None, help='folder with the four IDX .gz files (default: $SLOWLEARN_DATA/fashion_mnist)')
    p.add_argument('--bs', type=int, default=512, help='batch size (default 512)')
    p.add_argument('--threads', type=int, default=None, help="torch threads (default: torch's own default)")
    args = p.parse_args()
    main(args.reps, args.data, args.bs, args.threads)
