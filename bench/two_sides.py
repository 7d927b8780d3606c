"What the benchmarks that run a slowlearn side and a plain side in fresh processes share: spawning one run, and their command line."
import argparse, json, subprocess, sys

def spawn(script, side, epochs, threads):
    "Run `script --side side --json` in a fresh process (so its peak RSS is its own) and return its result."
    cmd = [sys.executable, script, '--side', side, '--json', '--epochs', str(epochs)] + (['--threads', str(threads)] if threads else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f"{side} run failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def side_parser(doc, reps, reps_help, epochs, epochs_help=None):
    "The options of such a benchmark: `--reps`, `--epochs`, `--threads`, and `--side`/`--json` to run one side once."
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument('--reps', type=int, default=reps, help=reps_help)
    p.add_argument('--epochs', type=int, default=epochs, help=epochs_help)
    p.add_argument('--threads', type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument('--side', choices=['learner', 'plain'], help='run one side once, in this process')
    p.add_argument('--json', action='store_true', help='with --side: print the result as one JSON line')
    return p

def run_one_side(a, run_side):
    "Run side `a.side` once in this process and print its result (one JSON line with `--json`)."
    r = run_side(a.side, a.epochs, a.threads)
    print(json.dumps(r) if a.json else r)
