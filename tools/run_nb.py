"""Re-run lesson notebooks in place, top to bottom, and stamp each code cell with its run order.

    python tools/run_nb.py nbs/10_sched.ipynb [more notebooks] [--slow]

`#| eval: false` cells never run. `#| slow` cells run only with `--slow`; without it they keep the outputs of their
last run, but only if their source is unchanged since (otherwise their outputs are dropped and you are told to run
with `--slow`). Each code cell gets `metadata.ran = {"n": k, "src": hash of its source}`, which `nbdev_clean` keeps
(settings.ini: `allowed_cell_metadata_keys = ran`) and `tests/test_notebooks.py` checks: every output comes from the
cell's current source, in top-to-bottom order. Run `nbdev_clean` afterwards, as before every commit.

    python tools/run_nb.py --list-slow     # the notebooks that have slow cells, as `a|b|c` (CI runs them with --flags slow)"""
import hashlib, json, os, re, sys
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

def _text(src): return src if isinstance(src, str) else ''.join(src)
def src_hash(src): return hashlib.sha256(_text(src).encode()).hexdigest()[:12]
def is_slow(src): return re.search(r'^#\|\s*slow\b', _text(src), re.M) is not None
def never_runs(src): return re.search(r'^#\|\s*eval:\s*false', _text(src), re.M) is not None

def slow_notebooks(folder='nbs'):
    "The notebooks in `folder` with at least one `#| slow` cell, by name without `.ipynb` (what CI runs with `--flags slow`)."
    return [p.stem for p in sorted(Path(folder).glob('*.ipynb'))
            if any(c['cell_type'] == 'code' and is_slow(c['source']) for c in json.loads(p.read_text())['cells'])]

def run_nb(path, slow=False):
    nb = read_nb(path)
    later = lambda s: not slow and is_slow(s)
    kept = {}
    for i,c in enumerate(nb.cells):
        if c.cell_type != 'code' or not (never_runs(c.source) or later(c.source)): continue
        old = c.get('metadata', {}).get('ran', {})
        if never_runs(c.source) or old.get('src') in (None, src_hash(c.source)): kept[i] = c.get('outputs', [])  # None: never stamped
        else:
            kept[i] = []
            print(f"{path}: cell {i} is slow and changed since its last run: its outputs are dropped; run with --slow")
    for i in kept: nb.cells[i].source, nb.cells[i]._orig = 'pass', nb.cells[i].source
    cwd = os.getcwd(); os.chdir(os.path.dirname(os.path.abspath(path)))
    try: CaptureShell().run_all(nb, exc_stop=True)
    finally: os.chdir(cwd)
    for i,o in kept.items(): nb.cells[i].source, nb.cells[i].outputs = nb.cells[i]._orig, o
    n = 0
    for c in nb.cells:
        c.pop('_orig', None)
        if c.cell_type != 'code': continue
        c.execution_count = None
        c.setdefault('metadata', {})['ran'] = {'n': (n := n+1), 'src': src_hash(c.source)}
    write_nb(nb, path)

if __name__ == '__main__':
    if sys.argv[1:] == ['--list-slow']: print('|'.join(slow_notebooks())); sys.exit()
    args = [a for a in sys.argv[1:] if a != '--slow']
    if not args: sys.exit(__doc__)
    for p in args: run_nb(p, slow='--slow' in sys.argv); print('ran', p)
