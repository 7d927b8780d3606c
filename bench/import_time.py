"""How long `import slowlearn` takes next to `import torch` alone, each in a fresh interpreter.

    python bench/import_time.py            # 10 interleaved runs of each side
    python bench/import_time.py --reps 20

slowlearn imports torch, so the difference is what slowlearn itself (and fastcore, torcheval, fastprogress) adds.
matplotlib.pyplot is imported only where a plot is drawn, so it is not part of either figure; the script checks that.
"""
import argparse, os, platform, statistics, subprocess, sys
import torch

def _time(stmt):
    "Seconds for `stmt` in a fresh interpreter, measured inside it (interpreter start-up excluded)."
    code = f"import time; t = time.perf_counter(); {stmt}; dt = time.perf_counter() - t; import sys; print(dt, 'matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), out[1] == 'True'

def main(reps=10):
    print(f'python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}')
    sides = {'import torch': [], 'import slowlearn': []}
    pyplot = False
    for _ in range(reps):                       # interleaved: A B A B ...
        for stmt, ts in sides.items():
            t, p = _time(stmt); ts.append(t); pyplot |= p
    med = {k: statistics.median(v) for k,v in sides.items()}
    for k,v in med.items(): print(f'{k:18s} median {v*1e3:7.0f} ms  (min {min(sides[k])*1e3:.0f}, max {max(sides[k])*1e3:.0f}, {reps} runs)')
    print(f'slowlearn adds {(med["import slowlearn"] - med["import torch"])*1e3:.0f} ms, ratio {med["import slowlearn"]/med["import torch"]:.2f}; '
          f'matplotlib.pyplot imported: {pyplot}')
    return med

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--reps', type=int, default=10)
    main(p.parse_args().reps)
