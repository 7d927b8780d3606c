"`slowlearn fit` end to end on a small Fashion-MNIST-shaped slice, its usage errors, disks that fail under it, the checkpoint options and `--config`."
import csv, errno, json, os, resource, shutil, signal, subprocess, sys, time
from contextlib import contextmanager, nullcontext
import pytest, torch
from conftest import FILES, SMALL
from slowlearn.learner import Callback
from slowlearn.checkpoint import CheckpointCB
from slowlearn.models import fashion_mnist_cnn
from slowlearn.experiments import TrainConfig, fit_config
from slowlearn.cli import main

def slowlearn(*args, **kw):
    return subprocess.run([sys.executable, '-m', 'slowlearn.cli', *args], capture_output=True, text=True, **kw)

def test_fit_writes_model_and_history(tiny_fashion_mnist, tmp_path):
    out = tmp_path / 'run'
    r = slowlearn('fit', '--data', str(tiny_fashion_mnist), '--epochs', '2', '--bs', '64', '--out', str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'accuracy' in r.stdout and '\r' not in r.stdout
    model = fashion_mnist_cnn(); model.load_state_dict(torch.load(out / 'model.pt', weights_only=True))
    rows = list(csv.DictReader(open(out / 'history.csv')))
    assert list(rows[0]) == ['epoch', 'phase', 'loss', 'accuracy']
    assert [(r['epoch'], r['phase']) for r in rows] == [('0', 'train'), ('0', 'valid'), ('1', 'train'), ('1', 'valid')]
    assert float(rows[-1]['accuracy']) > 0.5   # the squares are easy to tell apart

def test_options_and_the_equivalent_config_file_make_the_same_run(tiny_fashion_mnist, tmp_path):
    opts = ['--epochs', '2', '--bs', '64', '--lr', '0.02', '--wd', '0.05', '--seed', '3', '--accumulate', '2', '--patience', '1',
            '--n-train', '320', '--n-valid', '96']
    r = slowlearn('fit', '--data', str(tiny_fashion_mnist), *opts, '--out', str(tmp_path/'flags'), timeout=300)
    assert r.returncode == 0, r.stderr
    TrainConfig(data=str(tiny_fashion_mnist), epochs=2, bs=64, lr=0.02, wd=0.05, seed=3, accumulate=2, patience=1, n_train=320, n_valid=96,
                checkpoint=False).save(tmp_path/'cfg.json')
    r = slowlearn('fit', '--config', str(tmp_path/'cfg.json'), '--out', str(tmp_path/'config'), timeout=300)
    assert r.returncode == 0, r.stderr
    for f in ('history.csv', 'model.pt', 'config.json'): assert (tmp_path/'flags'/f).read_bytes() == (tmp_path/'config'/f).read_bytes(), f
    assert len(csv_rows(tmp_path/'flags'/'history.csv')) == 1 + 2*2
    assert sorted(p.name for p in (tmp_path/'flags').iterdir()) == ['config.json', 'history.csv', 'loss.png', 'lr.png', 'model.pt']

@pytest.mark.parametrize('args, msg', [(['--epochs', '-1'], '--epochs'), (['--bs', '0'], '--bs'), (['--lr', 'fast'], '--lr'),
                                       (['--data', '/no/such/folder'], '/no/such/folder'), (['--nope'], '--nope')])
def test_bad_options_give_one_line_and_exit_2(args, msg):
    r = slowlearn('fit', *args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr
    assert 'Traceback' not in r.stderr

def test_corrupt_data_folder_gives_one_line_and_exit_2(tiny_fashion_mnist, tmp_path):
    (tiny_fashion_mnist / FILES['train'][0]).write_bytes(b'not a gzip file')
    r = slowlearn('fit', '--data', str(tiny_fashion_mnist), '--out', str(tmp_path / 'run'))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and FILES['train'][0] in r.stderr

def test_help_explains_every_option():
    r = slowlearn('fit', '--help')
    assert r.returncode == 0
    for opt in ('--epochs', '--lr', '--bs', '--data', '--out', '--seed', '--n-train', '--n-valid'): assert opt in r.stdout

def file_size_limit(n):
    "A `preexec_fn` limiting the size of every file the child writes to `n` bytes: a disk that fills up."
    def f():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # else the kernel kills the writer instead of failing its write
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    return f

@contextmanager
def read_only(folder):
    "Yield a command prefix under which `folder` is read-only: chmod for a normal user; for root, whom chmod doesn't stop, a read-only bind mount in a new user and mount namespace."
    if os.geteuid():
        folder.chmod(0o555)
        try: yield [], errno.EACCES
        finally: folder.chmod(0o755)
        return
    if not shutil.which('unshare') or subprocess.run(['unshare', '-rm', 'true'], capture_output=True).returncode:
        pytest.skip('running as root without user namespaces (unshare -rm): no way to make a folder read-only')
    yield ['unshare', '-rm', 'sh', '-c', 'mount --bind -o ro "$0" "$0" && exec "$@"', str(folder)], errno.EROFS

def csv_rows(path):
    with open(path, newline='') as f: return list(csv.reader(f))

@pytest.mark.parametrize('failure', ['full disk', 'read-only folder'])
def test_a_failing_disk_gives_one_line_exit_1_and_the_same_resume_then_succeeds(tiny_fashion_mnist, tmp_path, failure):
    ck = tmp_path/'ckpt'
    fit = ['fit', '--data', str(tiny_fashion_mnist), '--epochs', '2', '--bs', '64', '--ckpt-dir', str(ck)]
    assert slowlearn(*fit, '--out', str(tmp_path/'whole'), timeout=300).returncode == 0
    # restart from the end of epoch 0; the checkpoint of epoch 1 is where the disk fails
    again = [*fit, '--resume', str(ck/'ckpt-00001-epoch0-step10.pt'), '--out', str(tmp_path/'again')]
    before = {p.name: p.read_bytes() for p in ck.iterdir()}
    with read_only(ck) if failure == 'read-only folder' else nullcontext(([], errno.EFBIG)) as (prefix, err):
        r = subprocess.run([*prefix, sys.executable, '-m', 'slowlearn.cli', *again], capture_output=True, text=True, timeout=300,
                           preexec_fn=file_size_limit(500_000) if failure == 'full disk' else None)
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines() == [f'slowlearn fit: error: cannot write {ck}/ckpt-00003-epoch1-step20.pt: {os.strerror(err)}']
    assert {p.name: p.read_bytes() for p in ck.iterdir()} == before       # no temporary file; checkpoints and index intact
    assert sorted(p.name for p in (tmp_path/'again').iterdir()) == ['config.json', 'history.csv']   # no model.pt, no temporary file
    r = slowlearn(*again, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path/'again'/'model.pt').read_bytes() == (tmp_path/'whole'/'model.pt').read_bytes()
    assert csv_rows(tmp_path/'again'/'history.csv') == csv_rows(tmp_path/'whole'/'history.csv')

@pytest.mark.parametrize('config', [False, True])
def test_an_out_folder_that_cannot_be_made_gives_one_line_and_exit_1(tmp_path, config):
    from slowlearn.experiments import TrainConfig
    (tmp_path/'a_file').write_text('')
    if config: TrainConfig().save(tmp_path/'cfg.json')
    r = slowlearn('fit', *(['--config', str(tmp_path/'cfg.json')] if config else []), '--out', str(tmp_path/'a_file'/'run'), timeout=300)
    assert r.returncode == 1 and r.stderr.splitlines() == [f"slowlearn fit: error: cannot write {tmp_path}/a_file/run: {os.strerror(errno.ENOTDIR)}"]

def test_profile_writes_a_chrome_trace_and_prints_the_top_operators(tiny_fashion_mnist, tmp_path):
    out = tmp_path/'run'
    r = slowlearn('fit', '--data', str(tiny_fashion_mnist), '--epochs', '1', '--bs', '64', '--profile', '--out', str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    trace = json.loads((out/'trace.json').read_text())
    steps = {e['name'] for e in trace['traceEvents'] if e.get('name', '').startswith('ProfilerStep#')}
    assert len(steps) == 5                                   # ProfilerCB's default: wait 1, warm up 1, record 5 steps
    assert {'forward', 'backward', 'step'} <= {e.get('name') for e in trace['traceEvents']}
    assert 'aten::convolution_backward' in r.stdout and 'aten::convolution_backward' in (out/'ops.txt').read_text()

def test_profile_is_allowed_with_a_config_file(tiny_fashion_mnist, tmp_path):
    TrainConfig(data=str(tiny_fashion_mnist), epochs=1, bs=64, checkpoint=False).save(tmp_path/'cfg.json')
    r = slowlearn('fit', '--config', str(tmp_path/'cfg.json'), '--profile', '--out', str(tmp_path/'run'), timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path/'run'/'trace.json').is_file()

def test_label_smoothing_goes_from_the_option_to_the_loss(tiny_fashion_mnist):
    from slowlearn.cli import parser, _flag_config
    from slowlearn.experiments import fit_config
    import torch.nn.functional as F
    cfg = _flag_config(parser().parse_args(['fit', '--label-smoothing', '0.2', '--data', str(tiny_fashion_mnist), '--epochs', '0']), 'slowlearn fit')
    assert cfg.label_smoothing == 0.2
    learn = fit_config(cfg, progress=False)
    pred, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    assert torch.equal(learn.loss_func(pred, y), F.cross_entropy(pred, y, label_smoothing=0.2))
    r = slowlearn('fit', '--label-smoothing', '1')
    assert r.returncode == 2 and 'label_smoothing must be a number in [0, 1)' in r.stderr

# --- a user's model and data, named in the config

def user_env(user_module, **extra):
    return {**os.environ, 'PYTHONPATH': os.pathsep.join([str(user_module), os.environ.get('PYTHONPATH', '')]), **extra}

def user_config(path, **kw):
    TrainConfig(**{**dict(model='exp_mod:make_net', model_kwargs=dict(width=16), data='exp_mod:make_dls', data_kwargs=dict(n=512),
                          epochs=4, bs=32, lr=1e-2, opt='torch.optim:AdamW', metrics=['torcheval.metrics:MulticlassAccuracy']), **kw}).save(path)
    return str(path)

def test_a_user_model_killed_after_its_first_checkpoint_resumes_bit_for_bit_into_the_same_mlflow_run(user_module, tmp_path):
    mlflow = pytest.importorskip('mlflow')
    cfg,uri = user_config(tmp_path/'cfg.json'),f"sqlite:///{tmp_path/'ml.db'}"
    r = slowlearn('fit', '--config', cfg, '--mlflow', uri, '--out', str(tmp_path/'whole'), env=user_env(user_module), timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path/'killed'
    p = subprocess.Popen([sys.executable, '-m', 'slowlearn.cli', 'fit', '--config', cfg, '--mlflow', uri, '--out', str(run)], cwd=tmp_path,
                         env=user_env(user_module, EXP_MOD_DELAY='0.03'), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (run/'checkpoints'/'index.json').exists() and p.poll() is None: time.sleep(0.005)
    finally: p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL and not (run/'model.pt').exists()     # killed in the middle of the run
    assert len(json.loads((run/'checkpoints'/'index.json').read_text())['checkpoints']) < 4
    r = slowlearn('fit', '--config', cfg, '--mlflow', uri, '--out', str(run), '--resume', env=user_env(user_module), timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    a,b = (torch.load(d/'model.pt', weights_only=True) for d in (tmp_path/'whole', run))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert csv_rows(run/'history.csv') == csv_rows(tmp_path/'whole'/'history.csv')
    assert json.loads((run/'config.json').read_text())['model'] == 'exp_mod:make_net'
    client = mlflow.MlflowClient(uri)
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name('slowlearn').experiment_id])}
    assert sorted(runs) == ['killed', 'whole'] and runs['killed'].info.status == 'FINISHED'     # one run for the killed and resumed fit
    last = lambda r, k: {m.step: m.value for m in sorted(client.get_metric_history(r.info.run_id, k), key=lambda m: m.timestamp)}
    for k in ('loss', 'valid_loss', 'valid_accuracy'): assert last(runs['killed'], k) == last(runs['whole'], k), k
    assert runs['killed'].data.params['model'] == 'exp_mod:make_net'

@pytest.mark.parametrize('kw,msg', [
    (dict(model='no_such_pkg_xyz.models:make_net'), "model='no_such_pkg_xyz.models:make_net': module 'no_such_pkg_xyz' not found"),
    (dict(data='exp_mod:make_dlss'), "data='exp_mod:make_dlss': module 'exp_mod' has no name 'make_dlss'"),
    (dict(model='exp_mod:not_callable'), "model='exp_mod:not_callable' is a int, not callable"),
    (dict(data='exp_mod:not_dls'), "data='exp_mod:not_dls' returned a list, not a DataLoaders")])
def test_a_bad_path_in_the_config_gives_one_line_and_exit_2(user_module, tmp_path, kw, msg):
    r = slowlearn('fit', '--config', user_config(tmp_path/'cfg.json', **kw), '--out', str(tmp_path/'run'), env=user_env(user_module), timeout=300)
    assert r.returncode == 2 and r.stderr.splitlines() == [f'slowlearn fit: error: {msg}' + (' (is its folder on PYTHONPATH?)' if 'found' in msg else '')]

def test_dry_run_prints_the_summary_and_writes_nothing(user_module, tmp_path):
    r = slowlearn('fit', '--config', user_config(tmp_path/'cfg.json'), '--dry-run', '--out', str(tmp_path/'run'), env=user_env(user_module),
                  timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert 'Total params: 82' in r.stdout and 'dry run passed' in r.stdout     # Linear(2, 16) + Linear(16, 2): 48 + 34
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cfg.json', 'user_pkgs']
    r = slowlearn('fit', '--config', str(tmp_path/'cfg.json'), '--dry-run', '--resume', '--out', 'x', env=user_env(user_module))
    assert r.returncode == 2 and 'drop --resume' in r.stderr

def test_overfit_batches_with_a_config_trains_on_those_batches_only(user_module, tmp_path):
    cfg = user_config(tmp_path/'cfg.json', epochs=2)
    r = slowlearn('fit', '--config', cfg, '--overfit-batches', '2', '--out', str(tmp_path/'run'), env=user_env(user_module), timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path/'run'/'config.json').read_text())['overfit_batches'] == 2
    ck = torch.load(sorted((tmp_path/'run'/'checkpoints').glob('ckpt-*.pt'))[-1], weights_only=True)
    assert ck['pos']['opt_steps'] == 4                                   # 2 epochs x 2 batches

def test_wandb_offline_logs_the_cli_run_with_its_config(user_module, tmp_path):
    pytest.importorskip('wandb')
    from conftest import wandb_runs
    env = user_env(user_module, WANDB_MODE='offline', WANDB_SILENT='true', WANDB_DIR=str(tmp_path), WANDB_CACHE_DIR=str(tmp_path/'cache'),
                   WANDB_DATA_DIR=str(tmp_path/'data'), WANDB_CONFIG_DIR=str(tmp_path/'config'))
    r = slowlearn('fit', '--config', user_config(tmp_path/'cfg.json', epochs=2), '--wandb', 'p', '--out', str(tmp_path/'run'), env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    [run] = wandb_runs(tmp_path)
    assert run['config']['model'] == 'exp_mod:make_net' and run['config']['data_kwargs'] == dict(n=512) and run['exit'] == 0
    valid = {int(r['epoch']): float(r['loss']) for r in csv.DictReader(open(tmp_path/'run'/'history.csv')) if r['phase'] == 'valid'}
    assert {r['epoch']: r['valid_loss'] for r in run['rows'] if 'valid_loss' in r} == valid
    assert run['artifacts'] == [('model', ['model.pt'])]

# ---- slowlearn fit --ckpt-dir / --resume / --patience / --accumulate

@pytest.mark.usefixtures('one_thread')
@pytest.mark.parametrize('tiny_fashion_mnist', [(160, 32)], indirect=True, ids=['160+32'])
def test_cli_run_killed_after_a_checkpoint_resumes_to_the_same_model(tiny_fashion_mnist, tmp_path, monkeypatch):
    from slowlearn import cli, experiments
    args = ['fit', '--data', str(tiny_fashion_mnist), '--epochs', '2', '--bs', '32', '--accumulate', '2', '--patience', '5']
    cli.main(args + ['--out', str(tmp_path/'ref')])
    class DiesAfterEpoch0(CheckpointCB):
        def after_epoch(self, learn):
            super().after_epoch(learn)
            if not learn.training and learn.epoch == 0: raise KeyboardInterrupt
    monkeypatch.setattr(experiments, 'CheckpointCB', DiesAfterEpoch0)   # the CLI trains with fit_config
    with pytest.raises(KeyboardInterrupt): cli.main(args + ['--out', str(tmp_path/'run'), '--ckpt-dir', str(tmp_path/'ck')])
    monkeypatch.undo()
    cli.main(args + ['--out', str(tmp_path/'run'), '--ckpt-dir', str(tmp_path/'ck'), '--resume'])
    ref, run = (torch.load(tmp_path/d/'model.pt', weights_only=True) for d in ('ref', 'run'))
    assert all(torch.equal(ref[k], run[k]) for k in ref)
    assert (tmp_path/'ref'/'history.csv').read_text() == (tmp_path/'run'/'history.csv').read_text()
    assert len((tmp_path/'run'/'history.csv').read_text().splitlines()) == 1 + 2 * 2

@pytest.mark.usefixtures('one_thread')
@pytest.mark.parametrize('tiny_fashion_mnist', [(160, 32)], indirect=True, ids=['160+32'])
@pytest.mark.parametrize('args, msg', [(['--accumulate', '0'], '--accumulate'), (['--patience', '-1'], '--patience'),
                                       (['--resume'], '--resume needs --ckpt-dir')])
def test_cli_bad_checkpoint_options_exit_2(tiny_fashion_mnist, tmp_path, capsys, args, msg):
    from slowlearn import cli
    with pytest.raises(SystemExit) as e: cli.main(['fit', '--data', str(tiny_fashion_mnist), '--out', str(tmp_path/'o'), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err and len(err.strip().splitlines()) == 1

# ---- slowlearn fit --config

def test_fit_config_command_writes_the_run_folder(tmp_path, fake_fashion_mnist, capsys):
    SMALL.save(tmp_path/'cfg.json')
    main(['fit', '--config', str(tmp_path/'cfg.json'), '--out', str(tmp_path/'run')])
    assert f"wrote the run folder {tmp_path/'run'}" in capsys.readouterr().out
    ref = fit_config(SMALL, tmp_path/'ref', progress=False)
    assert (tmp_path/'run'/'history.csv').read_text() == (tmp_path/'ref'/'history.csv').read_text()
    assert TrainConfig.load(tmp_path/'run'/'config.json') == SMALL
    sd = torch.load(tmp_path/'run'/'model.pt')
    assert all(torch.equal(sd[k], v) for k,v in ref.model.state_dict().items())

def test_fit_config_command_resumes_a_killed_run(tmp_path, fake_fashion_mnist, capsys):
    SMALL.save(tmp_path/'cfg.json')
    class Kill(Callback):
        def before_epoch(self, learn):
            if learn.epoch == 1: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): fit_config(SMALL, tmp_path/'run', cbs=[Kill()], progress=False)
    main(['fit', '--config', str(tmp_path/'cfg.json'), '--out', str(tmp_path/'run'), '--resume'])
    fit_config(SMALL, tmp_path/'ref', progress=False)
    assert (tmp_path/'run'/'history.csv').read_text() == (tmp_path/'ref'/'history.csv').read_text()

@pytest.mark.parametrize('extra,msg', [(['--lr', '0.5'], 'drop --lr'), (['--epochs', '2', '--ckpt-dir', 'x'], 'drop --epochs --ckpt-dir'),
                                       (['--resume'], '--resume with --config needs --out')])
def test_fit_config_command_refuses_conflicting_options(tmp_path, capsys, extra, msg):
    SMALL.save(tmp_path/'cfg.json')
    with pytest.raises(SystemExit) as e: main(['fit', '--config', str(tmp_path/'cfg.json'), *extra])
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err and len(err.strip().splitlines()) == 1

@pytest.mark.parametrize('text,msg', [(None, 'No such file'), ('{"lr": -1}', 'lr must be a number > 0'), ('{"lr_max": 1}', 'unknown settings')])
def test_fit_config_command_reports_a_bad_config_in_one_line(tmp_path, capsys, text, msg):
    if text is not None: (tmp_path/'cfg.json').write_text(text)
    with pytest.raises(SystemExit) as e: main(['fit', '--config', str(tmp_path/'cfg.json')])
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err and len(err.strip().splitlines()) == 1
