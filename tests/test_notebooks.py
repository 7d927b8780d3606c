"The committed notebooks: no error output or traceback, and no image shown twice in one notebook (a stale or copied output)."
import hashlib, json
from pathlib import Path
import pytest

NBS = sorted((Path(__file__).parent.parent/'nbs').glob('*.ipynb'))

def _outputs(nb):
    for i,c in enumerate(nb['cells']):
        for o in c.get('outputs', []): yield i, o

def _text(o): return ''.join(o.get('text', '')) + ''.join(o.get('data', {}).get('text/plain', ''))

@pytest.mark.parametrize('path', NBS, ids=lambda p: p.name)
def test_no_committed_errors(path):
    nb = json.loads(path.read_text())
    bad = [i for i,o in _outputs(nb) if o['output_type'] == 'error' or 'Traceback (most recent call last)' in _text(o)]
    assert not bad, f"{path.name}: cells {bad} show an error; fix the cell or re-run the notebook"

@pytest.mark.parametrize('path', NBS, ids=lambda p: p.name)
def test_no_image_shown_twice(path):
    seen, dup = {}, []
    for i,o in _outputs(json.loads(path.read_text())):
        if png := o.get('data', {}).get('image/png'):
            h = hashlib.sha256(''.join(png).encode()).hexdigest()
            if h in seen: dup.append((seen[h], i))
            seen.setdefault(h, i)
    assert not dup, f"{path.name}: cells {dup} show byte-identical images: one of them is not its own cell's output"

def test_checks_see_images_and_errors():
    "The notebooks have images to compare, so the duplicate check is not vacuous."
    assert sum(1 for p in NBS for _,o in _outputs(json.loads(p.read_text())) if 'image/png' in o.get('data', {})) > 10
