"""Generate README.md from nbs/index.ipynb (nbdev's own `nbdev_readme` needs Quarto, which has no offline install).
  python .ci/readme.py          # write README.md
  python .ci/readme.py --check  # exit 1 if README.md is out of date"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nb = json.loads((root/'nbs'/'index.ipynb').read_text())
parts = []
for c in nb['cells']:
    src = ''.join(c['source']).strip()
    if not src or src.startswith('#|'): continue
    if c['cell_type'] == 'markdown': parts.append(src)
    else:
        parts.append(f'```python\n{src}\n```')
        for o in c.get('outputs', []):
            txt = ''.join(o.get('text', '') or o.get('data', {}).get('text/plain', '')).strip()
            if txt: parts.append(f'```\n{txt}\n```')
text = '<!-- Generated from nbs/index.ipynb by .ci/readme.py: edit the notebook, not this file. -->\n\n' + '\n\n'.join(parts) + '\n'
readme = root/'README.md'
if '--check' in sys.argv:
    if not readme.exists() or readme.read_text() != text: sys.exit('README.md is out of date: run python .ci/readme.py')
else: readme.write_text(text)
