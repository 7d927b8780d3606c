"`slowlearn fit --ckpt-dir D --resume` SIGKILLed at random moments, then finished: the same weights, byte for byte, and the same history as one uninterrupted run."
import csv, os, random, shutil, signal, subprocess, sys, time
import pytest

ARGS = ['fit', '--epochs', '3', '--bs', '64', '--seed', '1']   # 10 batches an epoch: 3 checkpoints, ~1 s of training

def start(data, ckpt, out):
    "Start `slowlearn fit ... --ckpt-dir ckpt --resume --out out`; its stdout is a pipe, unbuffered."
    cmd = [sys.executable, '-m', 'slowlearn.cli', *ARGS, '--data', str(data), '--ckpt-dir', str(ckpt), '--resume', '--out', str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | dict(PYTHONUNBUFFERED='1'))

def run_to_end(data, ckpt, out):
    "Run to completion; returns the seconds from the first line of the metrics table (after epoch 0's training) to the exit."
    p = start(data, ckpt, out)
    p.stdout.readline(); t0 = time.monotonic()
    _,err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    return time.monotonic() - t0

def kill_at(data, ckpt, out, delay):
    "Start a run and SIGKILL it `delay` seconds after its first output line; False if it finished before."
    p = start(data, ckpt, out)
    p.stdout.readline()              # the table's header, or '' at exit when a resumed run had nothing left to train
    try: p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL); p.communicate(); assert p.returncode == -signal.SIGKILL
        return True
    p.communicate()
    assert p.returncode == 0, p.stderr
    return False

def rows(path):
    with open(path, newline='') as f: return list(csv.reader(f))

def assert_same_run(run, ref):
    assert (run/'out'/'model.pt').read_bytes() == (ref/'out'/'model.pt').read_bytes()
    assert rows(run/'out'/'history.csv') == rows(ref/'out'/'history.csv')
    assert sorted(p.name for p in (run/'out').iterdir()) == ['history.csv', 'model.pt']    # no temporary file left
    assert not [p.name for p in (run/'ckpt').iterdir() if p.name.endswith('.tmp')]

def kill_anywhere(data, tmp_path, n_kills, seed=0):
    "SIGKILL runs at uniform random moments until `n_kills` kills landed, then let one finish; each finished run must equal the reference."
    ref,run = tmp_path/'ref',tmp_path/'run'
    t_train = run_to_end(data, ref/'ckpt', ref/'out')
    rng,kills,finished,tmp_left = random.Random(seed),0,0,0
    while True:
        if kills < n_kills:
            if kill_at(data, run/'ckpt', run/'out', rng.uniform(0, t_train)):
                kills += 1
                tmp_left += any(p.name.endswith('.tmp') for p in (run/'ckpt').glob('.*'))
                continue
        else: run_to_end(data, run/'ckpt', run/'out')
        assert_same_run(run, ref); finished += 1
        if kills == n_kills: return kills, finished, tmp_left
        shutil.rmtree(run)              # it finished before the next kill: start another run from scratch

def test_three_kills_anywhere_then_the_uninterrupted_result(tiny_fmnist, tmp_path):
    kills,finished,_ = kill_anywhere(tiny_fmnist, tmp_path, 3)
    assert kills == 3 and finished >= 1

@pytest.mark.slow
def test_twenty_kills_anywhere_then_the_uninterrupted_result(tiny_fmnist, tmp_path):
    kills,finished,tmp_left = kill_anywhere(tiny_fmnist, tmp_path, 20, seed=1)
    print(f'{kills} kills, {finished} runs finished and compared; {tmp_left} kills left a temporary file (killed mid-write)')
    assert kills == 20 and finished >= 1
