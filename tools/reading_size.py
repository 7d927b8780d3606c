#!/usr/bin/env python3
"""The course's reading size: words in markdown cells and non-blank lines in code cells, per lesson and in all.

    python tools/reading_size.py [nbs]

Counted the same way before and after a change, so the two totals compare. Words are whitespace-separated tokens of
the markdown source; code lines are non-blank source lines, `#|` directives included (a reader sees them). The
`main` columns count only the main text: everything before the first `## Under the hood...` or `## Exercises`."""
import json, re, sys
from pathlib import Path

def _src(c): return c['source'] if isinstance(c['source'], str) else ''.join(c['source'])

def _size(cells):
    words = sum(len(_src(c).split()) for c in cells if c['cell_type'] == 'markdown')
    lines = sum(1 for c in cells if c['cell_type'] == 'code' for l in _src(c).splitlines() if l.strip())
    return words, lines

def _main(cells):
    "The cells of the main text; a cell that starts the back matter part-way keeps its text before that heading."
    out = []
    for c in cells:
        s = _src(c)
        if c['cell_type'] == 'markdown' and (m := re.search(r'^## (Under the hood|Exercises)', s, re.M)):
            if s[:m.start()].strip(): out.append(dict(c, source=s[:m.start()]))
            break
        out.append(c)
    return out

def reading_size(path):
    "(words, code lines) of the notebook at `path`, in all and in its main text."
    cells = json.loads(Path(path).read_text())['cells']
    return _size(cells) + _size(_main(cells))

if __name__ == '__main__':
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else 'nbs')
    tot = [0] * 4
    print(f"{'':<20}{'words':>8}{'code lines':>12}{'main words':>12}{'main code':>11}")
    for p in sorted(folder.glob('*.ipynb')):
        r = reading_size(p); tot = [a + b for a, b in zip(tot, r)]
        print(f"{p.stem:<20}{r[0]:>8,}{r[1]:>12,}{r[2]:>12,}{r[3]:>11,}")
    print(f"{'total':<20}{tot[0]:>8,}{tot[1]:>12,}{tot[2]:>12,}{tot[3]:>11,}")
