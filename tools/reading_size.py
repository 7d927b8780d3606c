#!/usr/bin/env python3
"""The course's reading size: words in markdown cells and non-blank lines in code cells, per lesson and in all.

    python tools/reading_size.py [nbs]

Counted the same way before and after a change, so the two totals compare. Words are whitespace-separated tokens of
the markdown source; code lines are non-blank source lines, `#|` directives included (a reader sees them)."""
import json, sys
from pathlib import Path

def _src(c): return c['source'] if isinstance(c['source'], str) else ''.join(c['source'])

def reading_size(path):
    "(words in markdown cells, non-blank code lines) of the notebook at `path`."
    cells = json.loads(Path(path).read_text())['cells']
    words = sum(len(_src(c).split()) for c in cells if c['cell_type'] == 'markdown')
    lines = sum(1 for c in cells if c['cell_type'] == 'code' for l in _src(c).splitlines() if l.strip())
    return words, lines

if __name__ == '__main__':
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else 'nbs')
    tw = tl = 0
    for p in sorted(folder.glob('*.ipynb')):
        w, l = reading_size(p); tw += w; tl += l
        print(f"{p.stem:<20} {w:>7,} words {l:>6,} code lines")
    print(f"{'total':<20} {tw:>7,} words {tl:>6,} code lines")
