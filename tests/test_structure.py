"The package's shape: no import cycles among slowlearn's modules (lazy imports included), no public name hiding a module."
import ast, importlib, pkgutil
from pathlib import Path
import slowlearn

PKG = Path(slowlearn.__file__).parent
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(PKG)]) if not m.name.startswith('_'))

def _imports(mod):
    "The slowlearn modules that `mod` imports anywhere in its source, inside functions too."
    tree, found = ast.parse((PKG/f'{mod}.py').read_text()), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:                                  # from .x import y / from . import x
                base = node.module.split('.')[0] if node.module else None
                names = [base] if base else [a.name for a in node.names]
            elif node.module and node.module.split('.')[0] == 'slowlearn':
                parts = node.module.split('.')
                names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
            else: continue
        elif isinstance(node, ast.Import):
            names = [a.name.split('.')[1] for a in node.names if a.name.startswith('slowlearn.')]
        else: continue
        found |= {n for n in names if n in MODULES and n != mod}
    return found

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
