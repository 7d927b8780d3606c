"slowlearn.core: atomic writes (whole files or none, a full disk as a `WriteError` naming the file, orphans removed) and what stops `torch.compile`."
import errno, os, subprocess, sys
import pytest, torch
from slowlearn.core import atomic_write, WriteError, compile_problem
from slowlearn.checkpoint import save_checkpoint, load_checkpoint
from conftest import FillsUp

pytestmark = pytest.mark.usefixtures('one_thread')

# ---- atomic_write

def test_atomic_write_replaces_whole_files_only(tmp_path):
    f = tmp_path/'a.bin'
    atomic_write(f, lambda h: h.write(b'old'))
    with pytest.raises(RuntimeError):
        atomic_write(f, lambda h: (h.write(b'new but'), (_ for _ in ()).throw(RuntimeError('killed'))))
    assert f.read_bytes() == b'old' and [p.name for p in tmp_path.iterdir()] == ['a.bin']

def test_a_full_disk_under_torch_save_is_a_write_error_naming_the_file(tmp_path):
    f = tmp_path/'a.pt'
    save_checkpoint({'w': torch.ones(3)}, f)
    # torch.save reports the failed write as RuntimeError('[enforce fail at inline_container.cc...] unexpected pos')
    with pytest.raises(WriteError) as e: atomic_write(f, lambda h: torch.save({'w': torch.zeros(10_000)}, FillsUp(h, 5_000)))
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC and e.value.filename == str(f)
    assert str(e.value) == f'cannot write {f}: {os.strerror(errno.ENOSPC)}'
    assert [p.name for p in tmp_path.iterdir()] == ['a.pt'] and torch.equal(load_checkpoint(f)['w'], torch.ones(3))

def test_temporary_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True).stdout.strip()
    for pid in (dead, os.getppid()): (tmp_path/f'.m.pt.{pid}.tmp').write_bytes(b'half')
    (tmp_path/f'.other.pt.{dead}.tmp').write_bytes(b'half')
    atomic_write(tmp_path/'m.pt', lambda f: f.write(b'whole'))
    # the dead writer's is gone; a live process's (here: our parent, as if it were writing) and other files' stay
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f'.m.pt.{os.getppid()}.tmp', f'.other.pt.{dead}.tmp', 'm.pt'])

# ---- compile_problem

def test_missing_cpp_compiler_is_reported(monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, 'which', lambda c: None)
    assert 'C++ compiler' in compile_problem('cpu', 'inductor')
    assert compile_problem('cpu', 'aot_eager') is None
