#!/usr/bin/env python3
"""List the numbers in a lesson's prose that appear in none of its outputs and none of its code.

A number typed into a markdown cell (a decimal, or an integer of three or more digits) should come from a cell:
printed by it, or asserted by it. Maths ($...$), inline code, code blocks and links are skipped, and so are
four-digit years (the citations' "(He et al., 2015)"). In the `## Exercises` section a number may also come from the
exercise's solution and check in `tests/test_exercises_*.py`, where the solutions live. `EXCEPTIONS` lists the few
numbers that are right without a cell behind them, each with its reason. `tests/test_notebooks.py` runs this on every
lesson.

usage: prose_numbers.py [NOTEBOOK_OR_FOLDER ...]   (default: nbs/)
exit status: 0 when none is found, 1 otherwise."""
import json, re, sys
from pathlib import Path

NUM = re.compile(r'(?<![\w.,])(\d+\.\d+|\d{1,3}(?:,\d{3})+|\d{3,})(?![\w.]|,\d)')
SOLUTIONS = sorted((Path(__file__).parent.parent/'tests').glob('test_exercises_*.py'))

# (lesson name without its number, number as written): why it needs no cell; by name, so renumbering keeps them
_FASHION_MNIST = "the size of Fashion-MNIST's training set, a fact of the dataset that the data lesson prints"
EXCEPTIONS = {('sched', '60,000'): _FASHION_MNIST, ('resnet', '60,000'): _FASHION_MNIST}

def _src(c): return c['source'] if isinstance(c['source'], str) else ''.join(c['source'])

def text_of(nb):
    "Every output's text and every code cell's source, as one string without thousands separators."
    parts = []
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        parts.append(_src(c))
        for o in c.get('outputs', []):
            parts.append(''.join(o.get('text', '')))
            for k in ('text/plain', 'text/markdown', 'text/html'): parts.append(''.join(o.get('data', {}).get(k, '')))
    return _plain('\n'.join(parts))

def _plain(s): return re.sub(r'(?<=\d)[,_](?=\d{3})', '', s)     # 10,000 and 10_000 read as 10000

def prose(s):
    "Markdown `s` without maths, code and links."
    s = re.sub(r'```.*?```', '', s, flags=re.S)
    s = re.sub(r'\$\$.*?\$\$|\$[^$]*\$', '', s, flags=re.S)
    s = re.sub(r'`[^`]*`', '', s)
    return re.sub(r'\]\([^)]*\)|https?://\S+', '', s)

def unbacked(path, solutions=None):
    "`(cell index, number, context)` for each number in the prose of the notebook at `path` that nothing backs."
    path = Path(path); nb = json.loads(path.read_text()); hay = text_of(nb)
    sol = _plain(solutions if solutions is not None else '\n'.join(f.read_text() for f in SOLUTIONS))
    found, in_exercises = [], False
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'markdown': continue
        s = prose(_src(c))
        for line in s.splitlines():
            if line.startswith('## '): in_exercises = line.strip() == '## Exercises'
            for m in NUM.finditer(line):
                x = m.group(1); v = _plain(x)
                if re.fullmatch(r'(19|20)\d\d', x) or (re.sub(r'^\d+[a-z]?_', '', path.stem), x) in EXCEPTIONS: continue
                if v in hay or (in_exercises and v in sol): continue
                found.append((i, x, line[max(0, m.start() - 50):m.end() + 30]))
    return found

if __name__ == '__main__':
    args = sys.argv[1:] or ['nbs']
    paths = [q for a in args for q in (sorted(Path(a).glob('*.ipynb')) if Path(a).is_dir() else [Path(a)])]
    total = 0
    for p in paths:
        for i, x, ctx in unbacked(p):
            total += 1; print(f"{p.name} cell {i}: {x}  ...{ctx}...")
    print(f"{total} number(s) in prose found in no output or code")
    sys.exit(1 if total else 0)
