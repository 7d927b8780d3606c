"""Shift every seed a program sets by `$SLOWLEARN_SEED_OFFSET` (for `tools/matrix.py --seeds`).

On `PYTHONPATH`, Python imports this at start-up. With the variable set, `torch.manual_seed(s)`, `random.seed(s)` and
`numpy.random.seed(s)` seed with `s + offset` instead, so a notebook or test that fixes its seeds runs with other
ones, unchanged: a claim that holds only for the seed it was written with fails here. Without the variable it does
nothing."""
import os
_off = os.environ.get('SLOWLEARN_SEED_OFFSET')
if _off and int(_off):
    import random, torch
    _off = int(_off)
    def _shift(f):
        def seed(s=None, *args, **kwargs): return f(None if s is None else (int(s) + _off) % 2**32, *args, **kwargs)
        return seed
    torch.manual_seed = torch.random.manual_seed = _shift(torch.manual_seed)
    random.seed = _shift(random.seed)
    try:
        import numpy
        numpy.random.seed = _shift(numpy.random.seed)
    except ImportError: pass
