"The package's shape: no import cycles among slowlearn's modules (lazy imports included), no public name hiding a module."
import ast, importlib, pkgutil
from pathlib import Path
import slowlearn

PKG = Path(slowlearn.__file__).parent
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(PKG)]) if not m.name.startswith('_'))

def _slowlearn_imports(tree):
    "The slowlearn modules an AST imports anywhere (inside functions too), relative imports included; '*' for the package itself."
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or '').split('.')
            if node.level: parts = ['slowlearn'] + [p for p in parts if p]           # from .x import y / from . import x
            if parts[0] != 'slowlearn': continue
            found |= {parts[1]} if len(parts) > 1 else {a.name if a.name in MODULES else '*' for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {(a.name.split('.') + ['*'])[1] for a in node.names if a.name.split('.')[0] == 'slowlearn'}
    return found

def _imports(mod):
    "The slowlearn modules that `mod` imports anywhere in its source, inside functions too."
    return (_slowlearn_imports(ast.parse((PKG/f'{mod}.py').read_text())) & set(MODULES)) - {mod}

def _cycle(graph):
    "One import cycle in `graph` as a list of modules, or None."
    state, stack = {}, []
    def visit(m):
        state[m] = 'open'; stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 'open': return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)): return c
        state[m] = 'done'; stack.pop()
    for m in sorted(graph):
        if m not in state and (c := visit(m)): return c

def test_cycle_finder_sees_a_lazy_import_cycle():
    assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert _cycle({'a': {'b'}, 'b': set()}) is None

def test_no_import_cycles_among_modules():
    graph = {m: _imports(m) for m in MODULES}
    assert 'learner' in graph['metrics']                  # the parser does see the package's imports
    assert (c := _cycle(graph)) is None, f"import cycle: {' -> '.join(c)}"

def test_no_public_name_hides_a_module():
    for m in MODULES: importlib.import_module(f'slowlearn.{m}')
    hidden = [n for n in slowlearn.__all__ if n in MODULES]
    assert not hidden, f"slowlearn.{hidden[0]} is a module, but the package re-exports a name {hidden[0]!r} over it"
    for m in MODULES:
        assert type(getattr(slowlearn, m)).__name__ == 'module', f"slowlearn.{m} is not the module"

NBS = Path(__file__).parent.parent/'nbs'

def _nb_code(path):
    import json
    for c in json.loads(path.read_text())['cells']:
        if c['cell_type'] == 'code': yield c['source'] if isinstance(c['source'], str) else ''.join(c['source'])

def _nb_uses(path):
    "The notebook's `default_exp` module and the slowlearn modules its code cells import (a package import: all of them)."
    import re
    exp, used = None, set()
    for src in _nb_code(path):
        if m := re.search(r'^#\|\s*default_exp\s+(\S+)', src, re.M): exp = m.group(1)
        try: tree = ast.parse('\n'.join(l for l in src.splitlines() if not l.lstrip().startswith(('%', '!'))))
        except SyntaxError: continue
        used |= _slowlearn_imports(tree)
    return exp, used

def reading_order_problems(nbs):
    "For notebooks `nbs` (in reading order), each use of a slowlearn module that a later notebook (or none) exports."
    uses = {p.stem: _nb_uses(p) for p in nbs}
    made = {exp: nb for nb,(exp,_) in uses.items() if exp}
    bad, before = [], set()
    for nb,(exp,used) in uses.items():
        for m in sorted(used - {exp}):
            if m == '*' and exp != '__init__': bad.append(f"{nb} imports the whole package (`import slowlearn`), which later lessons build")
            elif m != '*' and m not in before: bad.append(f"{nb} imports slowlearn.{m}, " + (f"made later by {made[m]}" if m in made else "which no notebook exports"))
        if exp: before.add(exp)
    return bad

def test_each_lesson_uses_only_what_earlier_lessons_built():
    nbs = sorted(p for p in NBS.glob('*.ipynb') if p.stem != 'index')
    uses = {p.stem: _nb_uses(p) for p in nbs}
    assert uses['02_learner'][0] == 'learner' and 'data' in uses['02_learner'][1]   # the parser sees the notebooks
    assert not (bad := reading_order_problems(nbs)), '; '.join(bad)

def test_reading_order_check_sees_a_forward_import(tmp_path):
    import json
    def nb(name, *srcs):
        cells = [dict(cell_type='code', source=s, metadata={}, outputs=[], execution_count=None) for s in srcs]
        (tmp_path/f'{name}.ipynb').write_text(json.dumps(dict(cells=cells)))
        return tmp_path/f'{name}.ipynb'
    a = nb('01_a', '#| default_exp data', 'from slowlearn.learner import Learner')
    b = nb('02_b', '#| default_exp learner', 'from slowlearn.data import DataLoaders\nimport slowlearn')
    assert reading_order_problems([a, b]) == ["01_a imports slowlearn.learner, made later by 02_b",
                                              "02_b imports the whole package (`import slowlearn`), which later lessons build"]

TESTS = Path(__file__).parent
REPO_WIDE = {'notebooks', 'structure', 'tools', 'exercises'}   # tests of the lessons, the package's shape and tools/, not of one module

def test_one_test_file_per_module_and_none_too_long():
    "Each module has `test_<module>.py`; every test file is named after its module (`test_<module>_<topic>.py` where one file would grow too long) or is repo-wide, and none is over 450 lines."
    files = sorted(TESTS.glob('test_*.py'))
    assert files and not [m for m in MODULES if not (TESTS/f'test_{m}.py').exists()]
    for p in files:
        stem = p.stem.removeprefix('test_')
        assert any(stem == m or stem.startswith(m + '_') for m in [*MODULES, *REPO_WIDE]), f"{p.name} is named after no module"
        assert (n := len(p.read_text().splitlines())) <= 450, f"{p.name} has {n} lines: split it by topic"
