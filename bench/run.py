"""slowlearn's benchmark suite: every figure of bench/README.md in one run, each next to plain PyTorch measured in the same run.

    python bench/run.py                    # everything (about 20 minutes on 2 idle cores; the ResNet recipe takes most)
    python bench/run.py --skip-resnet      # all but the final lesson's recipe
    python bench/run.py --only loop,data   # some figures: loop, optim, data, tta, resnet, bn, ckpt
    python bench/run.py --quick            # fewer repetitions, a smoke test of the suite

Figures (each script also runs alone, with its own options):
  1. loop overhead     bench/loop_overhead.py    Learner vs plain loop, µs per batch, bare and with the lesson callbacks
  2. optimizer step    bench/optim_step.py       our AdamW/Adam vs torch.optim for-loop, foreach, fused
  3. data loading      bench/data_loading.py     fashion_mnist batches vs DataLoader(TensorDataset)
  4. time to accuracy  bench/time_to_accuracy.py the 90% recipe with Learner vs as a plain loop
  5. peak memory       bench/time_to_accuracy.py peak RSS of those same runs
  6. ResNet recipe     bench/resnet_recipe.py    the final lesson: accuracy and time of 5 epochs, vs a plain loop
  7. BatchNorm         bench/batchnorm.py        a ResNet training step with our BatchNorm (eager, compiled) vs nn.BatchNorm2d
  9. checkpoint stall  bench/checkpoint.py       CheckpointCB's stall (sync, async_save) vs a bare torch.save, ~12/114/458 MB
Within each benchmark the sides alternate (A B A B ...) and medians are reported. Needs the data: set SLOWLEARN_DATA.
"""
import argparse, contextlib, datetime, io, os, platform, re, sys, time, traceback
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch

class _Tee(io.StringIO):
    "Capture what a benchmark prints while still showing it."
    def write(self, s): sys.__stdout__.write(s); sys.__stdout__.flush(); return super().write(s)

def _run(name, f):
    "Run benchmark `f`, printing its output under a heading; returns (result, captured text) or (None, error text)."
    print(f'\n== {name} ' + '=' * max(0, 100 - len(name)), flush=True)
    out = _Tee()
    try:
        with contextlib.redirect_stdout(out): res = f()
        return res, out.getvalue()
    except Exception:
        err = traceback.format_exc(); print(err, file=sys.stderr)
        return None, err

def _num(pattern, text, group=1):
    m = re.search(pattern, text, re.M)
    return float(m.group(group)) if m else None

def bench_loop(quick):
    import loop_overhead
    return loop_overhead.main(reps=5 if quick else 15)

def bench_optim(quick):
    import optim_step
    optim_step.main(**({'reps': 10} if quick else {}))

def bench_data(quick):
    import data_loading
    data_loading.main(**({'reps': 3} if quick else {}))

def bench_tta(quick, threads):
    import time_to_accuracy
    return time_to_accuracy.main(reps=1 if quick else 3, threads=threads)

def bench_bn(quick):
    import batchnorm
    return batchnorm.main(**({'reps': 3} if quick else {}))

def bench_resnet(quick, threads):
    import resnet_recipe
    return resnet_recipe.main(reps=1, epochs=1 if quick else 5, threads=threads, plain=True)

def bench_ckpt(quick):
    import checkpoint
    return checkpoint.main(reps=3 if quick else 7)

def main(only, quick=False, threads=None):
    if threads: torch.set_num_threads(threads); os.environ['OMP_NUM_THREADS'] = str(threads)
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    header = (f"{datetime.date.today()}  {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
              f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(header)
    rows = []   # (figure, slowlearn, plain PyTorch, ratio, target)
    def row(*r): rows.append(tuple('n/a' if v is None else v for v in r))
    fail = lambda n, err: row(n, 'failed: ' + err.strip().splitlines()[-1][:60], '', '', '')

    if 'loop' in only:
        res, txt = _run('1. loop overhead', lambda: bench_loop(quick))
        if res:
            for k, nm, tgt in (('Learner, no callbacks', '1. loop overhead, bare', '< 10 µs/batch'),
                               ('Learner + default lesson set', '1. loop overhead, lesson cbs', '< 60 µs/batch')):
                r, p = res[k], res['plain PyTorch loop']
                row(nm, f"+{r['wall_over_us']:.1f} µs/batch (CPU +{r['cpu_over_us']:.1f})", f"{p['wall_us']:.0f} µs/batch",
                    f"{r['ratio']:.3f}", tgt)
        else: fail('1. loop overhead', txt)
    if 'optim' in only:
        _, txt = _run('2. optimizer step', lambda: bench_optim(quick))
        ms = lambda k: _num(rf'^{re.escape(k)}\s+([\d.]+)', txt)
        aw, taw, a, fa, ta = ms('slowlearn AdamW'), ms('torch AdamW foreach=False'), ms('slowlearn Adam'), ms('torch Adam fused=True'), ms('torch Adam foreach=False')
        if aw and taw: row('2. AdamW step', f'{aw:.2f} ms', f'{taw:.2f} ms (for-loop)', f'{aw / taw:.2f}', '')
        if a and ta: row('2. Adam step', f'{a:.2f} ms', f'{ta:.2f} ms (for-loop)', f'{a / ta:.2f}', '')
        if a and fa: row('2. Adam step vs fused', f'{a:.2f} ms', f'{fa:.2f} ms (fused)', f'{a / fa:.2f}', '')
        ac, awc = ms('slowlearn Adam, compiled'), ms('slowlearn AdamW, compiled')
        if ac and fa: row('2. Adam(compile=True) vs fused', f'{ac:.2f} ms', f'{fa:.2f} ms (fused)', f'{ac / fa:.2f}', '<= 1.2')
        if awc and fa: row('2. AdamW(compile=True) vs fused', f'{awc:.2f} ms', f'{fa:.2f} ms (fused Adam)', f'{awc / fa:.2f}', '')
        if not (aw or a): fail('2. optimizer step', txt)
    if 'data' in only:
        _, txt = _run('3. data loading', lambda: bench_data(quick))
        ours, ref = _num(r'^slowlearn TensorLoader\s+([\d.]+)', txt), _num(r'^DataLoader\(TensorDataset\)\s+([\d.]+)', txt)
        if ours and ref: row('3. data, 1 epoch bs 512', f'{ours:.1f} ms', f'{ref:.1f} ms', f'{ref / ours:.1f}x faster', '>= 10x')
        else: fail('3. data loading', txt)
    if 'tta' in only:
        res, txt = _run('4-5. time to accuracy and peak memory', lambda: bench_tta(quick, threads))
        if res:
            (sl, sp), (al, ap), (rl, rp) = res['secs'], res['accuracy'], res['rss_mib']
            row('4. time to 90% recipe', f'{sl:.1f} s, {al:.2%}', f'{sp:.1f} s, {ap:.2%}', f"{res['time_ratio']:.3f}", '<= 1.05, same acc.')
            row('5. peak RSS of that fit', f'{rl:.0f} MiB', f'{rp:.0f} MiB', f"{res['rss_ratio']:.3f}", '')
        else: fail('4. time to accuracy', txt)
    if 'resnet' in only:
        res, txt = _run('6. final lesson: ResNet recipe', lambda: bench_resnet(quick, threads))
        if res:
            row(f"6. ResNet, {1 if quick else 5} epochs", f"{res['secs']:.0f} s, test {res['test_accuracy']:.2%}",
                f"{res['plain_secs']:.0f} s, valid {res['plain_accuracy']:.2%}", f"{res['time_ratio']:.3f}", '>= 94.0% test in < 180 s')
        else: fail('6. ResNet recipe', txt)
    if 'bn' in only:
        res, txt = _run('7. BatchNorm in a ResNet step', lambda: bench_bn(quick))
        if res:
            med, first = res
            ref = med['nn.BatchNorm2d']
            for k in [k for k in med if k != 'nn.BatchNorm2d']:
                row(f'7. step with {k}', f'{med[k] * 1e3:.0f} ms', f'{ref * 1e3:.0f} ms (nn.BatchNorm2d)', f'{med[k] / ref:.2f}', '<= 1.1' if 'compiled' in k else '')
        else: fail('7. BatchNorm', txt)

    if 'ckpt' in only:
        res, txt = _run('9. checkpoint stall', lambda: bench_ckpt(quick))
        if res:
            for mb, r in res.items():
                for k in ('CheckpointCB', 'CheckpointCB async'):
                    row(f'9. {k}, {mb} MB', f'{r[k][0]:.3f} s', f"{r['torch.save'][0]:.3f} s (torch.save)", f'{r[k][1]:.2f}', '<= 1.3')
        else: fail('9. checkpoint stall', txt)

    print('\n== summary ' + '=' * 90)
    print(header)
    print(f'load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; suite took {(time.perf_counter() - t_start) / 60:.1f} min')
    w = [max(len(str(r[i])) for r in rows + [('figure', 'slowlearn', 'plain PyTorch', 'ratio', 'target')]) for i in range(5)]
    for r in [('figure', 'slowlearn', 'plain PyTorch', 'ratio', 'target')] + rows:
        print('  '.join(str(v).ljust(n) for v, n in zip(r, w)))
    return rows

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('--only', default='loop,optim,data,tta,resnet,bn,ckpt', help='comma-separated figures: loop, optim, data, tta, resnet, bn, ckpt')
    p.add_argument('--skip-resnet', action='store_true', help='skip the final lesson recipe (the longest part)')
    p.add_argument('--quick', action='store_true', help='fewer repetitions (and 1 ResNet epoch): a smoke test')
    p.add_argument('--threads', type=int, default=None, help="torch threads for every benchmark (default: torch's own)")
    a = p.parse_args()
    only = {s.strip() for s in a.only.split(',') if s.strip()}
    if bad := only - {'loop', 'optim', 'data', 'tta', 'resnet', 'bn', 'ckpt'}: p.error(f'unknown figures {sorted(bad)}; choose from loop, optim, data, tta, resnet, bn, ckpt')
    if a.skip_resnet: only.discard('resnet')
    main(only, a.quick, a.threads)
