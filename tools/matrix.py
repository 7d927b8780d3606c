"""Run the test suite under the machine matrix: CPU kernel levels x torch thread counts.

    python tools/matrix.py                      # nbdev_test and pytest, every kernel level, 1 and 2 threads
    python tools/matrix.py --slow               # nbdev_test with --flags slow (the lessons' long cells) too
    python tools/matrix.py --kernels avx2 --threads 2 --only nbdev   # one setting, one half
    python tools/matrix.py --only pytest -- -k checkpoint -x         # arguments after -- go to pytest
    python tools/matrix.py --only nbdev --kernels native --threads 1 --seeds 1,2,3   # other seeds, unchanged code

Floating-point results differ in their last bits between CPU kernel levels (AVX-512, AVX2, plain C++), thread
counts and BLAS paths, so an assert with a margin measured on one machine can fail on another. This forces the
kernels on this machine the way another CPU would pick them:

- `native`: what torch picks here (`ATEN_CPU_CAPABILITY`, `MKL_ENABLE_INSTRUCTIONS`, `ONEDNN_MAX_CPU_ISA` unset);
- `avx2`: AVX2 kernels in ATen, MKL and oneDNN, as on a CPU without AVX-512 (most laptops, older servers);
- `default`: ATen's portable kernels (no vector extensions), with MKL and oneDNN held to SSE4.

`--seeds 1,2,3` also shifts every seed the notebooks and tests set (`torch.manual_seed`, `random.seed`,
`numpy.random.seed`) by that offset (`tools/seed_offset/sitecustomize.py`): a claim that holds only for the seed it
was written with, read off one training run or one noisy curve, fails there. Offset 0 is the code as written.

Run it before committing a change to an assert, a tolerance or a lesson's claim. It prints one line per setting and
exits non-zero if any failed; each run's log is kept under `--logs` (default `/tmp/slowlearn-matrix`)."""
import argparse, os, subprocess, sys, tempfile, time
from pathlib import Path

KERNELS = {
    'native':  {},
    'avx2':    dict(ATEN_CPU_CAPABILITY='avx2', MKL_ENABLE_INSTRUCTIONS='AVX2', ONEDNN_MAX_CPU_ISA='AVX2'),
    'default': dict(ATEN_CPU_CAPABILITY='default', MKL_ENABLE_INSTRUCTIONS='SSE4_2', ONEDNN_MAX_CPU_ISA='SSE41'),
}
_KERNEL_VARS = ('ATEN_CPU_CAPABILITY', 'MKL_ENABLE_INSTRUCTIONS', 'ONEDNN_MAX_CPU_ISA')

SEED_HOOK = Path(__file__).resolve().parent/'seed_offset'

def matrix_env(kernels, threads, seed=0, base=None):
    "The environment for one setting: `kernels` (a key of `KERNELS`), `threads` torch threads, seeds shifted by `seed`."
    if kernels not in KERNELS: raise ValueError(f"kernels must be one of {list(KERNELS)}, got {kernels!r}")
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _KERNEL_VARS}
    env.update(KERNELS[kernels], OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), MPLBACKEND='agg')
    # Inductor's on-disk cache does not tell kernels built for one forced ISA from another's: reusing them across
    # kernel levels gave wrong optimizer steps and heap corruption (torch 2.13), so each level gets its own cache
    root = env.get('TORCHINDUCTOR_CACHE_DIR') or str(Path(tempfile.gettempdir())/'slowlearn-inductor')
    env['TORCHINDUCTOR_CACHE_DIR'] = f'{root}-{kernels}'
    if seed:
        env.update(SLOWLEARN_SEED_OFFSET=str(seed))
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(SEED_HOOK), env.get('PYTHONPATH')]))
    return env

def _commands(only, slow, nbs, pytest_args):
    nb = ['nbdev_test'] + (['--flags', 'slow'] if slow else []) + (['--file_re', f"^({nbs.replace(',', '|')})\\.ipynb$"] if nbs else [])
    files = [a for a in pytest_args if not a.startswith('-') and Path(a.split('::')[0]).exists()]
    py = [sys.executable, '-m', 'pytest'] + ([] if files else ['tests']) + ['-q', '-p', 'no:cacheprovider'] + pytest_args
    return [(n, c) for n, c in (('nbdev', nb), ('pytest', py)) if only in (None, n)]

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--kernels', default=','.join(KERNELS), help='comma-separated: ' + ', '.join(KERNELS))
    p.add_argument('--threads', default='1,2', help='comma-separated torch thread counts')
    p.add_argument('--seeds', default='0', help='comma-separated seed offsets (0: the seeds as written)')
    p.add_argument('--only', choices=['nbdev', 'pytest'], help='run only one half of the suite')
    p.add_argument('--nbs', help='comma-separated notebook names without .ipynb (default: all)')
    p.add_argument('--slow', action='store_true', help='nbdev_test --flags slow (the lessons\' long cells)')
    p.add_argument('--logs', default='/tmp/slowlearn-matrix', help='folder for one log per run')
    args, rest = p.parse_known_args(argv)
    pytest_args = rest[1:] if rest[:1] == ['--'] else rest
    if 'SLOWLEARN_DATA' not in os.environ and (d := Path(__file__).resolve().parents[2]/'shared'/'data').is_dir():
        os.environ['SLOWLEARN_DATA'] = str(d)
    logs = Path(args.logs); logs.mkdir(parents=True, exist_ok=True)
    failed = []
    settings = [(k, int(t), int(sd)) for k in args.kernels.split(',') for t in args.threads.split(',')
                for sd in args.seeds.split(',')]
    for k, t, sd in settings:
        env = matrix_env(k, t, sd)
        for name, cmd in _commands(args.only, args.slow, args.nbs, pytest_args):
            log = logs/(f'{name}-{k}-{t}threads' + (f'-seed{sd}' if sd else '') + '.log')
            start = time.time()
            with open(log, 'w') as f: rc = subprocess.call(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
            tail = [l for l in log.read_text().splitlines() if l.strip()][-1:] or ['']
            what = f"{name:6} kernels={k:7} threads={t}" + (f" seed+{sd}" if sd else '')
            print(f"{what}: {'ok  ' if rc == 0 else 'FAIL'} {time.time()-start:5.0f} s  {tail[0][:80]}  ({log})", flush=True)
            if rc: print('    ' + '\n    '.join(log.read_text().splitlines()[-40:]))   # the failure, for CI logs
            if rc: failed.append(what.split(maxsplit=1)[0] + ' ' + what.split(maxsplit=1)[1].strip())
    if failed: print('failed:', '; '.join(failed)); return 1
    return 0

if __name__ == '__main__': sys.exit(main())
