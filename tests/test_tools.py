"tools/matrix.py: the environments it runs the suite in, checked in real subprocesses."
import importlib.util, os, subprocess, sys
from pathlib import Path
import pytest

_spec = importlib.util.spec_from_file_location('matrix', Path(__file__).parent.parent/'tools'/'matrix.py')
matrix = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(matrix)

def _py(env, code): return subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, check=True).stdout.split()

@pytest.mark.parametrize('kernels,want', [('native', None), ('avx2', 'AVX2'), ('default', 'DEFAULT')])
def test_each_kernel_level_is_what_torch_runs(kernels, want):
    env = matrix.matrix_env(kernels, 2, base={**os.environ, 'ATEN_CPU_CAPABILITY': 'avx2'})   # a stale setting is dropped
    cap, threads = _py(env, "import torch; print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())")
    assert threads == '2'
    if want: assert cap == want
    else: assert 'ATEN_CPU_CAPABILITY' not in env and 'MKL_ENABLE_INSTRUCTIONS' not in env

def test_kernel_levels_never_share_an_inductor_cache():
    dirs = {k: matrix.matrix_env(k, 1, base={})['TORCHINDUCTOR_CACHE_DIR'] for k in matrix.KERNELS}
    assert len(set(dirs.values())) == len(matrix.KERNELS)

def test_seed_offset_shifts_every_seed_a_program_sets():
    code = ("import torch, random; torch.manual_seed(5); a = torch.initial_seed(); random.seed(5); "
            "b = random.random(); random.seed(6); print(a, b == random.random())")
    assert _py(matrix.matrix_env('native', 1, seed=0, base=dict(os.environ)), code) == ['5', 'False']
    assert _py(matrix.matrix_env('native', 1, seed=1, base=dict(os.environ)), code) == ['6', 'False']
    # random.seed(5) shifted by 1 is random.seed(6): the same stream as the unshifted seed 6 would give
    shifted = _py(matrix.matrix_env('native', 1, seed=1, base=dict(os.environ)), "import random; random.seed(5); print(random.random())")
    plain = _py(matrix.matrix_env('native', 1, base=dict(os.environ)), "import random; random.seed(6); print(random.random())")
    assert shifted == plain

def test_bad_kernel_level_is_refused():
    with pytest.raises(ValueError, match='kernels must be one of'): matrix.matrix_env('avx512', 1)
