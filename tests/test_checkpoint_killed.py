"`slowlearn fit --ckpt-dir D --resume` SIGKILLed at random moments and in the middle of its writes, then finished: the same weights, byte for byte, and the same history as one uninterrupted run."
import csv, os, random, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest

ARGS = ['fit', '--epochs', '3', '--bs', '64', '--seed', '1']   # 10 batches an epoch: 3 checkpoints, ~1 s of training
CLI = [sys.executable, '-m', 'slowlearn.cli']
DL_CLI = [sys.executable, str(Path(__file__).parent/'dl_cli.py')]   # the same, training on a shuffled DataLoader with workers

def start(data, ckpt, out, cli=CLI):
    "Start `slowlearn fit ... --ckpt-dir ckpt --resume --out out`; its stdout is a pipe, unbuffered."
    cmd = [*cli, *ARGS, '--data', str(data), '--ckpt-dir', str(ckpt), '--resume', '--out', str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | dict(PYTHONUNBUFFERED='1'))

def run_to_end(data, ckpt, out, cli=CLI):
    "Run to completion; returns the seconds from the first line of the metrics table (after epoch 0's training) to the exit."
    p = start(data, ckpt, out, cli)
    p.stdout.readline(); t0 = time.monotonic()
    _,err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    return time.monotonic() - t0

def temp_files(pid, *folders):
    "The temporary files process `pid` is writing (`atomic_write` names them `.NAME.PID.tmp`)."
    return [p for d in folders if d.is_dir() for p in d.iterdir() if p.name.endswith(f'.{pid}.tmp')]

def kill_at(data, ckpt, out, when, cli=CLI):
    "Start a run and SIGKILL it `when` seconds after its first output line, or with `when='mid-write'` as soon as one of its writes has begun; returns (killed, whether it left a temporary file)."
    p = start(data, ckpt, out, cli)
    if when == 'mid-write':
        while p.poll() is None and not temp_files(p.pid, ckpt, out): time.sleep(0.001)
    else:
        p.stdout.readline()          # the table's header, or '' at exit when a resumed run had nothing left to train
        try: p.wait(timeout=when)
        except subprocess.TimeoutExpired: pass
    p.send_signal(signal.SIGKILL)    # a no-op if it has already exited
    _,err = p.communicate()
    assert p.returncode in (0, -signal.SIGKILL), err[-3000:]
    return p.returncode != 0, bool(temp_files(p.pid, ckpt, out))

def rows(path):
    with open(path, newline='') as f: return list(csv.reader(f))

def assert_same_run(run, ref):
    assert (run/'out'/'model.pt').read_bytes() == (ref/'out'/'model.pt').read_bytes()
    assert rows(run/'out'/'history.csv') == rows(ref/'out'/'history.csv')
    assert sorted(p.name for p in (run/'out').iterdir()) == ['config.json', 'history.csv', 'loss.png', 'lr.png', 'model.pt']  # no temporary file left
    assert not [p.name for p in (run/'ckpt').iterdir() if p.name.endswith('.tmp')]

def kill_anywhere(data, tmp_path, n_kills, seed=0, cli=CLI):
    "SIGKILL runs until `n_kills` kills landed, then let one finish; a run that finishes is compared with the reference and started afresh."
    ref,run = tmp_path/'ref',tmp_path/'run'
    t_train = run_to_end(data, ref/'ckpt', ref/'out', cli)
    rng,kills,mid_write,finished = random.Random(seed),0,0,0
    while True:
        if kills < n_kills:
            # every other kill waits for a write to begin: a uniform random moment rarely falls in one
            killed,left_temp = kill_at(data, run/'ckpt', run/'out', 'mid-write' if kills % 2 else rng.uniform(0, t_train), cli)
            kills += killed; mid_write += left_temp
            if killed: continue
        else: run_to_end(data, run/'ckpt', run/'out', cli)
        assert_same_run(run, ref); finished += 1
        if kills == n_kills: return kills, mid_write, finished
        shutil.rmtree(run)              # it finished before the next kill: start another run from scratch

def test_three_kills_anywhere_then_the_uninterrupted_result(tiny_fmnist, tmp_path):
    kills,mid_write,finished = kill_anywhere(tiny_fmnist, tmp_path, 3)
    assert kills == 3 and finished >= 1

def test_three_kills_anywhere_on_a_shuffled_dataloader_with_workers(tiny_fmnist, tmp_path):
    kills,mid_write,finished = kill_anywhere(tiny_fmnist, tmp_path, 3, seed=2, cli=DL_CLI)
    assert kills == 3 and finished >= 1

@pytest.mark.slow
def test_twenty_kills_anywhere_then_the_uninterrupted_result(tiny_fmnist, tmp_path):
    kills,mid_write,finished = kill_anywhere(tiny_fmnist, tmp_path, 20, seed=1)
    print(f'{kills} kills, {mid_write} of them in the middle of a write; {finished} finished runs compared')
    assert kills == 20 and mid_write >= 1 and finished >= 1
