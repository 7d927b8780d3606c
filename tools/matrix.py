"""Run the test suite under the machine matrix: CPU kernel levels x torch thread counts.

    python tools/matrix.py                      # nbdev_test and pytest, every kernel level, 1 and 2 threads
    python tools/matrix.py --slow               # nbdev_test with --flags slow (the lessons' long cells) too
    python tools/matrix.py --kernels avx2 --threads 2 --only nbdev   # one setting, one half
    python tools/matrix.py --only pytest -- -k checkpoint -x         # arguments after -- go to pytest

Floating-point results differ in their last bits between CPU kernel levels (AVX-512, AVX2, plain C++), thread
counts and BLAS paths, so an assert with a margin measured on one machine can fail on another. This forces the
kernels on this machine the way another CPU would pick them:

- `native`: what torch picks here (`ATEN_CPU_CAPABILITY`, `MKL_ENABLE_INSTRUCTIONS`, `ONEDNN_MAX_CPU_ISA` unset);
- `avx2`: AVX2 kernels in ATen, MKL and oneDNN, as on a CPU without AVX-512 (most laptops, older servers);
- `default`: ATen's portable kernels (no vector extensions), with MKL and oneDNN held to SSE4.

Run it before committing a change to an assert, a tolerance or a lesson's claim. It prints one line per setting and
exits non-zero if any failed; each run's log is kept under `--logs` (default `/tmp/slowlearn-matrix`)."""
import argparse, os, subprocess, sys, time
from pathlib import Path

KERNELS = {
    'native':  {},
    'avx2':    dict(ATEN_CPU_CAPABILITY='avx2', MKL_ENABLE_INSTRUCTIONS='AVX2', ONEDNN_MAX_CPU_ISA='AVX2'),
    'default': dict(ATEN_CPU_CAPABILITY='default', MKL_ENABLE_INSTRUCTIONS='SSE4_2', ONEDNN_MAX_CPU_ISA='SSE41'),
}
_KERNEL_VARS = ('ATEN_CPU_CAPABILITY', 'MKL_ENABLE_INSTRUCTIONS', 'ONEDNN_MAX_CPU_ISA')

def matrix_env(kernels, threads, base=None):
    "The environment for one setting: `kernels` (a key of `KERNELS`) and `threads` torch threads per process."
    if kernels not in KERNELS: raise ValueError(f"kernels must be one of {list(KERNELS)}, got {kernels!r}")
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _KERNEL_VARS}
    env.update(KERNELS[kernels], OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), MPLBACKEND='agg')
    return env

def _commands(only, slow, pytest_args):
    nb = ['nbdev_test'] + (['--flags', 'slow'] if slow else [])
    py = [sys.executable, '-m', 'pytest', 'tests', '-q', '-p', 'no:cacheprovider'] + pytest_args
    return [(n, c) for n, c in (('nbdev', nb), ('pytest', py)) if only in (None, n)]

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--kernels', default=','.join(KERNELS), help='comma-separated: ' + ', '.join(KERNELS))
    p.add_argument('--threads', default='1,2', help='comma-separated torch thread counts')
    p.add_argument('--only', choices=['nbdev', 'pytest'], help='run only one half of the suite')
    p.add_argument('--slow', action='store_true', help='nbdev_test --flags slow (the lessons\' long cells)')
    p.add_argument('--logs', default='/tmp/slowlearn-matrix', help='folder for one log per run')
    args, rest = p.parse_known_args(argv)
    pytest_args = rest[1:] if rest[:1] == ['--'] else rest
    if 'SLOWLEARN_DATA' not in os.environ and (d := Path(__file__).resolve().parents[2]/'shared'/'data').is_dir():
        os.environ['SLOWLEARN_DATA'] = str(d)
    logs = Path(args.logs); logs.mkdir(parents=True, exist_ok=True)
    failed = []
    for k in args.kernels.split(','):
        for t in args.threads.split(','):
            env = matrix_env(k, int(t))
            for name, cmd in _commands(args.only, args.slow, pytest_args):
                log = logs/f'{name}-{k}-{t}threads.log'
                start = time.time()
                with open(log, 'w') as f: rc = subprocess.call(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
                tail = [l for l in log.read_text().splitlines() if l.strip()][-1:] or ['']
                print(f"{name:6} kernels={k:7} threads={t}: {'ok  ' if rc == 0 else 'FAIL'} {time.time()-start:6.0f} s"
                      f"  {tail[0][:90]}  ({log})", flush=True)
                if rc: failed.append(f'{name} {k} {t}')
    if failed: print('failed:', '; '.join(failed)); return 1
    return 0

if __name__ == '__main__': sys.exit(main())
