"The trackers of slowlearn.experiments, for real: WandbCB in W&B's offline mode (its .wandb run file read back) and MLflowCB on a SQLite store (read back with MlflowClient)."
import sys
import pytest, torch
from torch import nn
from torcheval.metrics import MulticlassAccuracy
from slowlearn.learner import Learner
from slowlearn.metrics import MetricsCB
from slowlearn.data import DataLoaders
from slowlearn.sched import RecorderCB
from slowlearn.checkpoint import CheckpointCB, EarlyStoppingCB
from slowlearn.experiments import WandbCB, MLflowCB
from crash import Crash, CrashAt
from conftest import wandb_runs

def learner(cbs=()):
    g = torch.Generator().manual_seed(0)
    x,y = torch.randn(64, 5, generator=g),torch.randint(0, 3, (64,), generator=g)
    torch.manual_seed(0)
    return Learner(nn.Linear(5, 3), DataLoaders.from_tensors(x, y, x, y, bs=16), lr=0.1,
                   cbs=[MetricsCB(MulticlassAccuracy()), rec := RecorderCB(lr='lr'), *cbs]), rec

def fit_crash_resume(make_cb, ck, n=3, at=6):
    "Fit `n` epochs (4 steps each) checkpointing every epoch, crash after step `at`, resume: returns both learners."
    learn,_ = learner([make_cb(), CheckpointCB(ck), CrashAt(at)])
    with pytest.raises(Crash): learn.fit(n)
    learn,rec = learner([make_cb(), CheckpointCB(ck)])
    learn.fit(n, resume=True)
    return learn,rec

def valid_acc(learn): return {h['epoch']: h['accuracy'] for h in learn.history if h['phase'] == 'valid'}

# --- W&B, offline: no account, no network

@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    pytest.importorskip('wandb')
    for k,v in dict(WANDB_MODE='offline', WANDB_SILENT='true', WANDB_DIR=str(tmp_path), WANDB_CACHE_DIR=str(tmp_path/'cache'),
                    WANDB_DATA_DIR=str(tmp_path/'data'), WANDB_CONFIG_DIR=str(tmp_path/'config')).items(): monkeypatch.setenv(k, v)
    return tmp_path

def test_wandb_logs_config_steps_epochs_and_the_model(wandb_offline):
    learn,rec = learner([WandbCB('p', config=dict(lr=0.1, bs=16), dir=str(wandb_offline))])
    learn.fit(2)
    [run] = wandb_runs(wandb_offline)
    assert run['config'] == dict(lr=0.1, bs=16) and run['exit'] == 0
    steps = [r for r in run['rows'] if 'loss' in r]
    assert [r['step'] for r in steps] == list(range(1, 9))
    assert [r['loss'] for r in steps] == rec['loss'] and [r['lr'] for r in steps] == rec['lr']
    assert {r['epoch']: r['valid_accuracy'] for r in run['rows'] if 'valid_accuracy' in r} == valid_acc(learn)
    assert run['artifacts'] == [('model', ['model.pt'])]

def test_wandb_resumed_fit_continues_the_same_run(wandb_offline):
    whole,rec = learner([WandbCB('p', dir=str(wandb_offline/'a'))]); whole.fit(3)
    learn,_ = fit_crash_resume(lambda: WandbCB('p', dir=str(wandb_offline/'b')), wandb_offline/'ck')
    first,second = wandb_runs(wandb_offline/'b')
    assert first['id'] == second['id'] and (first['exit'], second['exit']) == (1, 0)    # the crash marked the run failed
    last = {}
    for r in first['rows'] + second['rows']:
        if 'loss' in r: last[r['step']] = r['loss']                           # the resumed run's value is the last for its step
    assert list(last.values()) == rec['loss'] and min(r['step'] for r in second['rows'] if 'step' in r) == 5   # from the checkpoint after epoch 0 (step 4)
    assert {r['epoch']: r['valid_accuracy'] for r in first['rows'] + second['rows'] if 'valid_accuracy' in r} == valid_acc(whole)
    assert second['artifacts'] == [('model', ['model.pt'])] and not first['artifacts']

def test_dry_run_starts_no_tracker_run(wandb_offline):
    learn,_ = learner([WandbCB('p', dir=str(wandb_offline))])
    learn.dry_run()
    assert not (wandb_offline/'wandb').exists()

# --- MLflow, on a local SQLite store

@pytest.fixture(scope='module')
def mlflow_uri(tmp_path_factory):
    pytest.importorskip('mlflow')
    import logging; logging.getLogger('mlflow').setLevel(logging.WARNING)
    d = tmp_path_factory.mktemp('mlflow')
    return f"sqlite:///{d/'mlflow.db'}", str(d/'artifacts')      # one database for the module: creating one takes seconds

def mlflow_run(uri, experiment):
    from mlflow import MlflowClient
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, runs

def history(client, run_id, key): return {m.step: m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)}

def test_mlflow_logs_config_steps_epochs_and_the_model(mlflow_uri, tmp_path):
    uri,art = mlflow_uri
    learn,rec = learner([MLflowCB('one', uri, config=dict(lr=0.1, model=dict(width=3)), artifact_location=art)])
    learn.fit(2)
    client,[run] = mlflow_run(uri, 'one')
    rid = run.info.run_id
    assert run.info.status == 'FINISHED' and run.data.params == {'lr': '0.1', 'model.width': '3'}
    assert [(m.step, m.value) for m in client.get_metric_history(rid, 'loss')] == list(enumerate(rec['loss'], 1))
    assert list(history(client, rid, 'lr').values()) == rec['lr']
    assert history(client, rid, 'valid_accuracy') == valid_acc(learn)
    sd = torch.load(client.download_artifacts(rid, 'model.pt', str(tmp_path)), weights_only=True)
    assert all(torch.equal(sd[k], v) for k,v in learn.model.state_dict().items())

def test_mlflow_resumed_fit_continues_the_same_run(mlflow_uri, tmp_path):
    uri,art = mlflow_uri
    whole,rec = learner(); whole.fit(3)
    learn,_ = fit_crash_resume(lambda: MLflowCB('resumed', uri, artifact_location=art), tmp_path/'ck')
    client,[run] = mlflow_run(uri, 'resumed')                      # one run, not two
    rid = run.info.run_id
    assert run.info.status == 'FINISHED' and [f.path for f in client.list_artifacts(rid)] == ['model.pt']
    assert list(history(client, rid, 'loss').values()) == rec['loss']
    assert history(client, rid, 'valid_accuracy') == valid_acc(whole)

def test_mlflow_logs_the_model_when_early_stopping_ends_the_fit(mlflow_uri):
    uri,art = mlflow_uri
    learn,_ = learner([MLflowCB('early', uri, artifact_location=art), EarlyStoppingCB(patience=0, min_delta=10.)])
    learn.fit(5)
    client,[run] = mlflow_run(uri, 'early')
    assert run.info.status == 'FINISHED' and [f.path for f in client.list_artifacts(run.info.run_id)] == ['model.pt']
    assert max(history(client, run.info.run_id, 'valid_loss')) < 4                   # the last epoch logged: stopped early

# --- without the packages

@pytest.mark.parametrize('cls,pkg', [(WandbCB, 'wandb'), (MLflowCB, 'mlflow')])
def test_a_missing_tracker_package_names_the_extra(monkeypatch, cls, pkg):
    monkeypatch.setitem(sys.modules, pkg, None)          # what Python does for a package it cannot import
    with pytest.raises(ImportError, match=f'pip install "slowlearn\\[{pkg}\\]"'): cls()
