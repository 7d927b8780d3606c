"slowlearn.experiments for a user's experiment: 'module:callable' settings, dry runs (`DryRunCB`, `Learner.dry_run`) and overfitting a few batches."
import dataclasses, json, os, sys
from functools import partial
from itertools import islice
import pytest, torch
import torch.nn.functional as F
from torch import nn
from torcheval.metrics import MulticlassAccuracy
from slowlearn.learner import Learner, Callback
from slowlearn.metrics import MetricsCB
from slowlearn.data import DataLoaders
from slowlearn.checkpoint import CheckpointCB
from slowlearn.resume import set_seed
from slowlearn.experiments import (TrainConfig, TargetError, resolve, fit_config, config_dls, CSVLoggerCB,
                                   DryRunCB, overfit_dls, random_search)

def user_cfg(**kw):
    return TrainConfig(**{**dict(model='exp_mod:make_net', model_kwargs=dict(width=8), data='exp_mod:make_dls', data_kwargs=dict(n=256),
                                 epochs=2, bs=32, lr=1e-2, checkpoint=False, device='cpu'), **kw})

def state(learn): return {k: v.clone() for k,v in learn.model.state_dict().items()}
def assert_same(a, b):
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

# --- settings

def test_a_user_config_round_trips_through_json(tmp_path):
    cfg = user_cfg(model_kwargs=dict(width=8, sizes=(1, 2)), opt='torch.optim:SGD', opt_kwargs=dict(momentum=0.9),
                   loss='torch.nn:CrossEntropyLoss', loss_kwargs=dict(label_smoothing=0.1), metrics=['torcheval.metrics:MulticlassAccuracy'])
    cfg.save(tmp_path/'c.json')
    d = json.loads((tmp_path/'c.json').read_text())
    assert (d['model'], d['model_kwargs'], d['data'], d['data_kwargs']) == ('exp_mod:make_net', dict(width=8, sizes=[1, 2]), 'exp_mod:make_dls', dict(n=256))
    assert (d['opt'], d['loss'], d['metrics']) == ('torch.optim:SGD', 'torch.nn:CrossEntropyLoss', ['torcheval.metrics:MulticlassAccuracy'])
    assert TrainConfig.load(tmp_path/'c.json') == cfg

@pytest.mark.parametrize('kw,exc,msg', [
    (dict(model='exp_mod'), ValueError, "model must be one of \\('cnn', 'mlp'\\) or a module:callable path"),
    (dict(opt='torch.optim.AdamW'), ValueError, 'opt must be one of'), (dict(loss='l1'), ValueError, 'loss must be one of'),
    (dict(metrics=['acc']), ValueError, 'metrics must be a list'), (dict(metrics='accuracy'), ValueError, 'metrics must be a list'),
    (dict(model_kwargs=[1]), TypeError, 'model_kwargs must be a dict'), (dict(data_kwargs=dict(f=print)), TypeError, 'data_kwargs must hold JSON values'),
    (dict(n_train=100), ValueError, 'n_train take a subset of Fashion-MNIST'),
    (dict(data=None, data_kwargs=dict(n=3)), ValueError, "data_kwargs are the arguments of a data callable"),
    (dict(overfit_batches=0), ValueError, 'overfit_batches must be an integer >= 1')])
def test_bad_user_settings_are_rejected_when_the_config_is_made(kw, exc, msg):
    with pytest.raises(exc, match=msg): user_cfg(**kw)

@pytest.mark.parametrize('kw,msg', [
    (dict(model='no_such_mod_xyz.models:make'), "model='no_such_mod_xyz.models:make': module 'no_such_mod_xyz' not found"),
    (dict(model='exp_mod:make_nett'), "model='exp_mod:make_nett': module 'exp_mod' has no name 'make_nett'"),
    (dict(model='exp_mod:not_callable'), "model='exp_mod:not_callable' is a int, not callable"),
    (dict(data='exp_mod:not_dls', data_kwargs={}), "data='exp_mod:not_dls' returned a list, not a DataLoaders"),
    (dict(model='exp_mod:make_dls', model_kwargs={}), "model='exp_mod:make_dls' returned a DataLoaders, not a Module"),
    (dict(model_kwargs=dict(widht=3)), "model='exp_mod:make_net' can't take the arguments {'widht': 3}: got an unexpected keyword argument 'widht'"),
    (dict(loss='exp_mod:nope'), "loss='exp_mod:nope': module 'exp_mod' has no name 'nope'"),
    (dict(opt='torch.optim:Adamm'), "opt='torch.optim:Adamm': module 'torch.optim' has no name 'Adamm'"),
    (dict(metrics=['torcheval.metrics:Nope']), "metrics='torcheval.metrics:Nope'")])
def test_a_bad_path_names_the_setting_and_what_is_wrong(user_module, tmp_path, kw, msg):
    with pytest.raises(TargetError) as e: fit_config(user_cfg(**kw), tmp_path/'run', progress=False)
    assert msg in str(e.value) and isinstance(e.value, ValueError) and isinstance(e.value, TypeError)

def test_a_missing_import_inside_the_user_module_is_named(user_module, tmp_path):
    (user_module/'broken_mod.py').write_text('import not_installed_pkg_xyz\ndef make(): pass\n')
    with pytest.raises(TargetError, match="model='broken_mod:make': importing 'broken_mod' failed: No module named 'not_installed_pkg_xyz'"):
        resolve('broken_mod:make', 'model')

# --- runs

def by_hand(cfg, dls_fn=None, loss=F.cross_entropy, opt=None):
    "The run `cfg` describes, built from the user's callables directly: the reference for `fit_config`."
    import exp_mod
    set_seed(cfg.seed)
    dls = (dls_fn or (lambda: exp_mod.make_dls(bs=cfg.bs, seed=cfg.seed, **cfg.data_kwargs)))()
    model = exp_mod.make_net(**cfg.model_kwargs)
    learn = Learner(model, dls, loss_func=loss, lr=cfg.lr, opt_func=opt or partial(torch.optim.AdamW, weight_decay=cfg.wd),
                    cbs=[MetricsCB(MulticlassAccuracy())])
    learn.fit_one_cycle(cfg.epochs, cfg.lr, pct_start=cfg.warmup)
    return learn

def test_fit_config_trains_the_user_model_data_loss_and_optimizer_as_built_by_hand(user_module, tmp_path):
    cfg = user_cfg(opt='torch.optim:AdamW', loss='torch.nn:CrossEntropyLoss', loss_kwargs=dict(label_smoothing=0.1),
                   metrics=['torcheval.metrics:MulticlassAccuracy'])
    learn = fit_config(cfg, tmp_path/'run', progress=False)
    ref = by_hand(cfg, loss=nn.CrossEntropyLoss(label_smoothing=0.1))
    assert_same(state(learn), state(ref))
    assert learn.history == ref.history
    assert TrainConfig.load(tmp_path/'run'/'config.json') == cfg

def test_the_data_callable_gets_the_config_batch_size_and_seed(user_module):
    dls = config_dls(user_cfg(bs=16, seed=5))
    import exp_mod
    ref = exp_mod.make_dls(n=256, bs=16, seed=5)
    assert len(dls.train) == 12 and [b[1].tolist() for b in dls.train] == [b[1].tolist() for b in ref.train]

def test_random_search_runs_user_configs(user_module, tmp_path):
    base = user_cfg(epochs=1)
    def train(c): return dict(valid_loss=fit_config(dataclasses.replace(base, **c), progress=False).history[-1]['loss'])
    with pytest.warns(UserWarning, match='no_net'):       # all 4 configurations: 2 good, 2 with a bad path
        trials = random_search(dict(lr=[1e-2, 3e-2], model=['exp_mod:make_net', 'exp_mod:no_net']), train, 4,
                               results=tmp_path/'t.jsonl', metric='valid_loss')
    ok = [t for t in trials if t['error'] is None]
    assert len(ok) == 2 and all(t['config']['model'] == 'exp_mod:make_net' for t in ok)
    assert all("module 'exp_mod' has no name 'no_net'" in t['error'] for t in trials if t['error'])

# --- overfitting a few batches

def test_overfit_batches_trains_and_validates_on_the_first_n_training_batches(user_module):
    cfg = user_cfg(overfit_batches=3, epochs=4)
    learn = fit_config(cfg, progress=False)
    def first3():
        import exp_mod
        b = list(islice(exp_mod.make_dls(bs=cfg.bs, seed=cfg.seed, n=256).train, 3))
        return DataLoaders(b, b)                      # plain lists: the same 3 batches every epoch, for both phases
    ref = by_hand(cfg, dls_fn=first3)
    assert_same(state(learn), state(ref))
    assert learn.history == ref.history

def test_overfit_batches_needs_that_many_batches(user_module):
    with pytest.raises(ValueError, match='overfit_batches=50, but the training loader has only 6 batches'):
        fit_config(user_cfg(overfit_batches=50), progress=False)

# --- dry runs

class Events(Callback):
    def __init__(self): self.seen = []
    def before_batch(self, learn): self.seen.append(('batch', learn.training))
    def after_epoch(self, learn): self.seen.append(('epoch', learn.training))
    def after_fit(self, learn): self.seen.append('fit')

def tiny(cbs=()):
    g = torch.Generator().manual_seed(0)
    x,y = torch.randn(64, 5, generator=g),torch.randint(0, 3, (64,), generator=g)
    torch.manual_seed(0)
    return Learner(nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.3), nn.Linear(8, 3)), DataLoaders.from_tensors(x, y, x, y, bs=16),
                   lr=0.1, cbs=[MetricsCB(MulticlassAccuracy()), *cbs])

def test_dry_run_sends_one_batch_per_phase_through_every_callback_and_writes_nothing(tmp_path):
    ev,d = Events(),tmp_path/'out'
    learn = tiny([ev, CSVLoggerCB(d/'h.csv'), CheckpointCB(d/'ck', every_n_steps=1)])
    recs = learn.dry_run()
    assert ev.seen == [('batch', True), ('epoch', True), ('batch', False), ('epoch', False), 'fit']
    assert [(r['epoch'], r['phase']) for r in recs] == [(0, 'train'), (0, 'valid')]
    assert not d.exists() and learn.history == []

def test_a_fit_after_a_dry_run_is_the_fit_without_it(tmp_path):
    learn = tiny([CSVLoggerCB(tmp_path/'a.csv')])
    learn.fit(1); learn.dry_run(); learn.fit(2)               # the optimizer's state and the weights come back too
    ref = tiny([CSVLoggerCB(tmp_path/'b.csv')])
    ref.fit(1); ref.fit(2)
    assert_same(state(learn), state(ref)) and learn.history == ref.history

def test_dry_run_cb_stops_a_longer_fit_after_one_batch_per_phase():
    ev = Events()
    learn = tiny([ev, DryRunCB()])
    learn.fit(5)
    assert ev.seen == [('batch', True), ('epoch', True), ('batch', False), ('epoch', False)]   # ended by CancelFitException

def test_fit_config_dry_run_writes_no_run_folder(user_module, tmp_path):
    ev = Events()
    fit_config(user_cfg(checkpoint=True, epochs=3), tmp_path/'run', cbs=[ev, CSVLoggerCB(tmp_path/'x.csv')], progress=False, dry_run=True)
    assert ev.seen == [('batch', True), ('epoch', True), ('batch', False), ('epoch', False), 'fit']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['user_pkgs']
    with pytest.raises(ValueError, match="can't resume"): fit_config(user_cfg(), tmp_path/'run', resume=True, dry_run=True)
