"`DDPCB`: 2 gloo processes under torchrun against 1 process with the same global batch, sharding, clean exits, and the no-op case."
import importlib.util, io, json, os, socket, subprocess, sys
from contextlib import redirect_stdout
from pathlib import Path
import pytest, torch
from torch.testing import assert_close
from slowlearn.distributed import DDPCB, shard_bounds
from slowlearn.core import is_main_process

HERE = Path(__file__).parent
spec = importlib.util.spec_from_file_location('ddp_train', HERE/'ddp_train.py')
ddp_train = importlib.util.module_from_spec(spec); spec.loader.exec_module(ddp_train)
LAUNCHES = ('standalone', 'static')   # torchrun's agent hosts the rendezvous / the README's several-machines form

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def torchrun(script, *args, launch='static', nproc=2, timeout=300):
    "Run `script` under torchrun with `nproc` CPU processes talking over 127.0.0.1, launched `--standalone` or `static`."
    env = {k: v for k,v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    env.update(OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    if sys.platform == 'linux': env['GLOO_SOCKET_IFNAME'] = 'lo'
    for _ in range(5):
        where = ['--standalone'] if launch == 'standalone' else ['--master_addr', '127.0.0.1', '--master_port', str(free_port())]
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--nnodes', '1', '--nproc_per_node', str(nproc), *where, str(script), *map(str, args)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        # the free port was taken before torchrun bound it: the rendezvous failed before any worker started, so retry
        if 'EADDRINUSE' not in res.stderr: return res
    return res

def assert_clean_exit(res, out, mode, initialized=False):
    "Every rank exited with 0, nothing aborted or warned, and at exit the process group was (not) still up."
    assert res.returncode == 0, res.stderr[-4000:]
    # an abort at exit, and torch's warning about a group never destroyed (it names destroy_process_group)
    for bad in ('terminate called', 'Abort', 'destroy_process_group', 'NOT been destroyed'): assert bad not in res.stderr, res.stderr[-4000:]
    for r in range(2): assert json.loads((out/f'{mode}_exit_rank{r}.json').read_text()) == dict(initialized=initialized)

@pytest.fixture(scope='module', params=LAUNCHES)
def two_ranks(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f'ddp_{request.param}')
    res = torchrun(HERE/'ddp_train.py', out, launch=request.param)
    assert_clean_exit(res, out, 'cases')     # the group DDPCB started served both fits, then was destroyed at exit
    return {name: [torch.load(out/f'{name}_rank{r}.pt', weights_only=False) for r in range(2)] for name in ddp_train.CASES}

@pytest.fixture(scope='module')
def one_rank():
    "The same runs in this process (no torchrun: DDPCB does nothing)."
    res = {}
    for name,args in ddp_train.CASES.items():
        with redirect_stdout(buf := io.StringIO()): learn = ddp_train.fit(*args)
        res[name] = dict(weights=learn.model.state_dict(), history=learn.history, printed=buf.getvalue())
    return res

@pytest.mark.parametrize('case', list(ddp_train.CASES))
def test_two_processes_end_with_the_weights_of_one(two_ranks, one_rank, case):
    for r in two_ranks[case]: assert_close(r['weights'], one_rank[case]['weights'], rtol=0, atol=1e-5)

@pytest.mark.parametrize('case', list(ddp_train.CASES))
def test_two_processes_report_the_history_of_one(two_ranks, one_rank, case):
    ref = one_rank[case]['history']
    for r in two_ranks[case]:
        assert [(h['epoch'], h['phase']) for h in r['history']] == [(h['epoch'], h['phase']) for h in ref]
        for a,b in zip(r['history'], ref):
            assert a['loss'] == pytest.approx(b['loss'], abs=1e-5) and a['accuracy'] == pytest.approx(b['accuracy'], abs=1e-5)

def test_only_rank_0_prints(two_ranks, one_rank):
    r0,r1 = two_ranks['uneven']
    assert r1['printed'] == ''
    lines = r0['printed'].splitlines()
    assert len(lines) == len(one_rank['uneven']['printed'].splitlines()) == 1 + 2*3   # header + (train, valid) x 3 epochs
    assert lines[0].split() == ['accuracy', 'loss', 'epoch', 'train', 'time']

def test_the_model_is_left_unwrapped(two_ranks):
    assert all(r['plain_model'] for rs in two_ranks.values() for r in rs)

def test_ddpcb_does_nothing_without_torchrun(monkeypatch):
    for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK'): monkeypatch.delenv(k, raising=False)
    with redirect_stdout(io.StringIO()):
        ref,learn = [ddp_train.fit(*ddp_train.CASES['uneven'], ddp=ddp) for ddp in (False, True)]
    assert not torch.distributed.is_initialized()
    assert_close(learn.model.state_dict(), ref.model.state_dict(), rtol=0, atol=0)
    assert learn.history == ref.history

def test_shards_are_torch_tensor_split():
    for n in range(14):
        for world in (1, 2, 3, 4):
            parts = torch.tensor_split(torch.arange(n), world)
            assert [list(range(*shard_bounds(n, r, world))) for r in range(world)] == [p.tolist() for p in parts]

def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match='rank must be in'): shard_bounds(5, 2, 2)
    with pytest.raises(ValueError, match='backend must be'): DDPCB(backend='mpi')

def test_is_main_process_reads_torchrun_rank_before_the_process_group_exists(monkeypatch):
    monkeypatch.delenv('RANK', raising=False); assert is_main_process()
    monkeypatch.setenv('RANK', '0'); assert is_main_process()
    monkeypatch.setenv('RANK', '1'); assert not is_main_process()

def test_a_torchrun_job_killed_and_resumed_ends_like_one_uninterrupted_process(tmp_path):
    with redirect_stdout(io.StringIO()): ref = ddp_train.fit_with_checkpoints(tmp_path/'ref_ckpt', ddp=False)
    res = torchrun(HERE/'ddp_train.py', tmp_path, 'kill')
    assert res.returncode != 0                                            # rank 0 was SIGKILLed in epoch 2
    assert [e['epoch'] for e in json.loads((tmp_path/'ckpt'/'index.json').read_text())['checkpoints']] == [0, 1]
    res = torchrun(HERE/'ddp_train.py', tmp_path, 'resume')
    assert_clean_exit(res, tmp_path, 'resume')
    for r in range(2):
        got = torch.load(tmp_path/f'resumed_rank{r}.pt', weights_only=False)
        assert_close(got['weights'], ref.model.state_dict(), rtol=0, atol=1e-5)
        assert [(h['epoch'], h['phase']) for h in got['history']] == [(h['epoch'], h['phase']) for h in ref.history]
        for a,b in zip(got['history'], ref.history):
            assert a['loss'] == pytest.approx(b['loss'], abs=1e-5) and a['accuracy'] == pytest.approx(b['accuracy'], abs=1e-5)

@pytest.fixture(scope='module', params=[7, 10])   # after step 7: mid-epoch 1 (resumed from step 6, batch 2 of 5); 10: its last batch
def sampler_runs(request, tmp_path_factory):
    "Each rank reads its DistributedSampler share: the uninterrupted job, and one killed after step `kill_after` then resumed."
    out,kill_after = tmp_path_factory.mktemp('sampler'),request.param
    assert_clean_exit(torchrun(HERE/'ddp_train.py', out, 'sampler_ref'), out, 'sampler_ref')
    res = torchrun(HERE/'ddp_train.py', out, 'sampler_kill', kill_after)
    assert res.returncode != 0                                            # rank 0 was SIGKILLed
    steps = [e['step'] for e in json.loads((out/'ckpt'/'index.json').read_text())['checkpoints']]
    assert max(steps) == kill_after - kill_after % 2                     # the last checkpoint before the kill
    assert_clean_exit(torchrun(HERE/'ddp_train.py', out, 'sampler_resume'), out, 'sampler_resume')
    return [[torch.load(out/f'{n}_rank{r}.pt', weights_only=False) for r in range(2)] for n in ('sampler_ref', 'sampler_resumed')]

def test_a_distributed_sampler_job_killed_mid_epoch_and_resumed_ends_with_the_same_weights(sampler_runs):
    for ref,got in zip(*sampler_runs):
        assert ref['weights'].keys() == got['weights'].keys()
        for k in ref['weights']: assert torch.equal(got['weights'][k], ref['weights'][k]), k

def test_a_distributed_sampler_job_killed_mid_epoch_and_resumed_reports_the_same_history(sampler_runs):
    "Each rank's running sums of the resumed epoch come back from the checkpoint (rank 0 gathered them), so the history is the same."
    for ref,got in zip(*sampler_runs): assert len(ref['history']) == 6 and got['history'] == ref['history']

@pytest.mark.parametrize('launch', LAUNCHES)
def test_a_process_group_the_script_started_is_left_to_the_script(tmp_path, one_rank, launch):
    res = torchrun(HERE/'ddp_train.py', tmp_path, 'user_group', launch=launch)
    assert_clean_exit(res, tmp_path, 'user_group', initialized=True)   # still up when DDPCB's fit and hooks were done
    for r in range(2):
        got = torch.load(tmp_path/f'user_group_rank{r}.pt', weights_only=False)
        assert_close(got['weights'], one_rank['uneven']['weights'], rtol=0, atol=1e-5)
