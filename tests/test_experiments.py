"Experiments: CSVLoggerCB (flush, crash, resume, rank 0), TensorBoardCB, distributions and random_search."
import csv, errno, json, math, os, random, sys, warnings
import numpy as np, pytest, torch
from torch import nn
from torcheval.metrics import MulticlassAccuracy
from slowlearn.learner import Learner, Callback
from slowlearn.metrics import MetricsCB
from slowlearn.data import DataLoaders
from slowlearn.resume import set_seed
from slowlearn.experiments import (CSVLoggerCB, TensorBoardCB, uniform, log_uniform, draw_configs,
                                   load_trials, sort_trials, random_search)
from slowlearn.core import WriteError
from conftest import SMALL

def read_csv(path):
    with open(path, newline='') as f: return list(csv.DictReader(f))

def learner(cbs=(), n=48, bs=16):
    g = torch.Generator().manual_seed(0)
    x,y = torch.randn(n, 5, generator=g),torch.randint(0, 3, (n,), generator=g)
    torch.manual_seed(0)
    return Learner(nn.Linear(5, 3), DataLoaders.from_tensors(x, y, x, y, bs=bs), lr=0.1, cbs=[MetricsCB(MulticlassAccuracy()), *cbs])

def as_history(rows):
    return [dict(epoch=int(r['epoch']), phase=r['phase'], loss=float(r['loss']), accuracy=float(r['accuracy'])) for r in rows]

# --- CSVLoggerCB

def test_csv_holds_the_history_row_for_row(tmp_path):
    learn = learner([CSVLoggerCB(tmp_path/'h.csv')])
    learn.fit(3)
    assert as_history(read_csv(tmp_path/'h.csv')) == learn.history

class PeekCB(Callback):
    "Count the CSV file's rows at the start of each training and validation epoch, while the fit is still running."
    order = 10
    def __init__(self, path): self.path,self.seen = path,[]
    def before_epoch(self, learn): self.seen.append(len(read_csv(self.path)) if self.path.exists() else 0)

def test_each_row_is_on_disk_before_the_next_phase_starts(tmp_path):
    peek = PeekCB(tmp_path/'h.csv')
    learner([CSVLoggerCB(tmp_path/'h.csv'), peek]).fit(3)
    assert peek.seen == [0, 1, 2, 3, 4, 5]

def test_a_crash_keeps_the_rows_already_logged(tmp_path):
    class Crash(Callback):
        def before_epoch(self, learn):
            if learn.epoch == 2: raise RuntimeError('killed')
    learn = learner([CSVLoggerCB(tmp_path/'h.csv'), Crash()])
    with pytest.raises(RuntimeError): learn.fit(5)
    assert as_history(read_csv(tmp_path/'h.csv')) == learn.history and len(learn.history) == 4

def test_a_new_fit_starts_the_file_afresh_unless_appending(tmp_path):
    learn = learner([CSVLoggerCB(tmp_path/'h.csv')])
    learn.fit(2); learn.fit(1)
    assert as_history(read_csv(tmp_path/'h.csv')) == learn.history
    learn = learner([CSVLoggerCB(tmp_path/'a.csv', append=True)])
    learn.fit(2); first = list(learn.history)
    learn.fit(1)
    assert as_history(read_csv(tmp_path/'a.csv')) == first + learn.history

class FakeResumeCB(Callback):
    "Stand-in for a checkpoint callback: the fit resumes at `start_epoch` (the learner's resume position)."
    order = -20
    can_resume = True
    def __init__(self, start_epoch): self.start_epoch = start_epoch
    def before_fit(self, learn): learn.start_epoch = self.start_epoch

def test_a_resumed_fit_continues_the_file_without_duplicate_rows(tmp_path):
    path = tmp_path/'h.csv'
    ref = learner([CSVLoggerCB(tmp_path/'ref.csv')]); ref.fit(4)
    class Crash(Callback):
        def before_epoch(self, learn):
            if learn.epoch == 3: raise RuntimeError('killed')
    with pytest.raises(RuntimeError): learner([CSVLoggerCB(path), Crash()]).fit(4)
    assert len(read_csv(path)) == 6           # epochs 0, 1, 2 logged; say the last checkpoint was after epoch 1
    learn = learner([CSVLoggerCB(path), FakeResumeCB(2)])
    learn.fit(4, resume=True)
    rows = read_csv(path)
    assert [(int(r['epoch']), r['phase']) for r in rows] == [(e, p) for e in range(4) for p in ('train', 'valid')]
    assert as_history(rows[:4]) == ref.history[:4]            # kept from the first run
    assert as_history(rows[4:]) == learn.history              # written by the resumed fit

def test_a_new_column_widens_the_header(tmp_path):
    class ExtraCB(Callback):
        order = MetricsCB.order + 0.5
        def after_epoch(self, learn):
            if learn.epoch == 1 and learn.history: learn.history[-1]['lr'] = 0.1
    learn = learner([CSVLoggerCB(tmp_path/'h.csv'), ExtraCB()]); learn.fit(2)
    rows = read_csv(tmp_path/'h.csv')
    assert list(rows[0]) == ['epoch', 'phase', 'loss', 'accuracy', 'lr'] and len(rows) == 4
    assert [r['lr'] for r in rows] == ['', '', '0.1', '0.1']

def test_only_rank_0_writes(tmp_path, monkeypatch):
    monkeypatch.setenv('RANK', '1')
    learner([CSVLoggerCB(tmp_path/'h.csv')]).fit(1)
    assert not (tmp_path/'h.csv').exists()

# --- TensorBoardCB

def test_tensorboard_missing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', None)     # makes the import fail
    with pytest.raises(ImportError, match=r'pip install -e "\.\[tensorboard\]"'): TensorBoardCB('tb')

def test_tensorboard_files_hold_the_losses_lrs_and_history(tmp_path):
    pytest.importorskip('tensorboard')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    class LossesCB(Callback):
        def __init__(self): self.losses = []
        def after_batch(self, learn):
            if learn.training: self.losses.append(learn.loss.item())
    rec = LossesCB()
    learn = learner([TensorBoardCB(tmp_path/'tb'), rec])
    learn.opt_func = lambda ps, lr: torch.optim.SGD(ps, lr, momentum=0.9)
    learn.fit(2, lr=0.05)
    ea = EventAccumulator(str(tmp_path/'tb')); ea.Reload()
    vals = lambda tag: [e.value for e in ea.Scalars(tag)]
    assert [e.step for e in ea.Scalars('batch/loss')] == list(range(1, 7))
    assert vals('batch/loss') == pytest.approx(rec.losses, rel=1e-6)
    assert vals('batch/lr') == pytest.approx([0.05]*6) and vals('batch/momentum') == pytest.approx([0.9]*6)
    for phase in ('train', 'valid'):
        hist = [h for h in learn.history if h['phase'] == phase]
        assert vals(f'{phase}/loss') == pytest.approx([h['loss'] for h in hist], rel=1e-6)
        assert vals(f'{phase}/accuracy') == pytest.approx([h['accuracy'] for h in hist], rel=1e-6)

# --- distributions

def test_log_uniform_gives_each_decade_a_third():
    rng = random.Random(0)
    xs = np.array([log_uniform(1e-5, 1e-2).sample(rng) for _ in range(30_000)])
    assert xs.min() >= 1e-5 and xs.max() <= 1e-2
    frac = np.histogram(np.log10(xs), bins=[-5, -4, -3, -2])[0] / len(xs)
    assert frac == pytest.approx([1/3]*3, abs=0.015)

def test_uniform_is_flat_on_its_range():
    rng = random.Random(0)
    xs = np.array([uniform(-2, 6).sample(rng) for _ in range(30_000)])
    assert xs.min() >= -2 and xs.max() <= 6
    assert np.histogram(xs, bins=4, range=(-2, 6))[0] / len(xs) == pytest.approx([0.25]*4, abs=0.015)

@pytest.mark.parametrize('f,lo,hi,msg', [(uniform, 1, 1, 'lo must be < hi'), (uniform, 0, math.inf, 'finite'),
    (log_uniform, 0, 1, 'lo must be > 0'), (log_uniform, -1, 1, 'lo must be > 0'), (uniform, '0', 1, 'finite number')])
def test_bad_ranges_are_rejected(f, lo, hi, msg):
    with pytest.raises(ValueError, match=msg): f(lo, hi)

# --- random_search

SPACE = dict(lr=log_uniform(1e-4, 1.), wd=uniform(0, 0.1), bs=[32, 64, 128])
def score(c): return dict(loss=(math.log10(c['lr']) + 2)**2 + c['wd'], acc=c['bs'] / 128)

def test_configs_are_distinct_repeatable_and_extend_with_n():
    a = draw_configs(SPACE, 30, seed=1)
    assert len({json.dumps(c, sort_keys=True) for c in a}) == 30
    assert draw_configs(SPACE, 30, seed=1) == a and draw_configs(SPACE, 10, seed=1) == a[:10]
    assert draw_configs(SPACE, 30, seed=2) != a
    assert all(1e-4 <= c['lr'] <= 1 and 0 <= c['wd'] <= 0.1 and c['bs'] in (32, 64, 128) for c in a)

def test_a_finite_space_is_tried_in_full_once():
    space = dict(bs=[32, 64], act=['relu', 'gelu', 'silu'])
    with pytest.warns(UserWarning, match='only 6 distinct'): cs = draw_configs(space, 10)
    assert sorted((c['bs'], c['act']) for c in cs) == sorted((b, a) for b in (32, 64) for a in ('relu', 'gelu', 'silu'))

def test_results_are_sorted_by_the_chosen_metric():
    trials = random_search(SPACE, score, 12, metric='loss')
    losses = [t['metrics']['loss'] for t in trials]
    assert losses == sorted(score(c)['loss'] for c in draw_configs(SPACE, 12))
    accs = [t['metrics']['acc'] for t in random_search(SPACE, score, 12, metric='acc', mode='max')]
    assert accs == sorted(accs, reverse=True)
    assert [t['config'] for t in random_search(SPACE, score, 12)] == draw_configs(SPACE, 12)   # no metric: drawn order

def test_a_restarted_search_skips_the_trials_already_done(tmp_path):
    res,calls = tmp_path/'r.jsonl',[]
    def killed_after_4(c):
        if len(calls) == 4: raise KeyboardInterrupt      # not an Exception: it stops the search, as Ctrl-C would
        calls.append(c); return score(c)
    with pytest.raises(KeyboardInterrupt): random_search(SPACE, killed_after_4, 10, results=res)
    assert [t['config'] for t in load_trials(res)] == draw_configs(SPACE, 4)
    again = []
    trials = random_search(SPACE, lambda c: again.append(c) or score(c), 10, results=res, metric='loss')
    assert again == draw_configs(SPACE, 10)[4:]
    assert len(load_trials(res)) == 10
    assert [t['config'] for t in trials] == [t['config'] for t in random_search(SPACE, score, 10, metric='loss')]

def test_a_line_cut_short_by_a_kill_is_dropped(tmp_path):
    res = tmp_path/'r.jsonl'
    random_search(SPACE, score, 3, results=res)
    with open(res, 'a') as f: f.write('{"trial": 3, "config": {"lr": 0.0')       # killed mid-write
    calls = []
    random_search(SPACE, lambda c: calls.append(c) or score(c), 4, results=res)
    assert calls == draw_configs(SPACE, 4)[3:]
    assert [t['trial'] for t in load_trials(res)] == [0, 1, 2, 3]

def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path):
    res = tmp_path/'r.jsonl'
    def sometimes(c):
        if c['bs'] == 128: raise RuntimeError('CUDA out of memory')
        return score(c)
    with pytest.warns(UserWarning, match='out of memory'):
        trials = random_search(SPACE, sometimes, 12, results=res, metric='loss')
    failed = [t for t in trials if t['error']]
    assert failed and all(t['config']['bs'] == 128 and t['metrics'] is None for t in failed)
    assert all(t['error'] == 'RuntimeError: CUDA out of memory' for t in failed)
    assert trials[-len(failed):] == failed                         # failures sort last
    assert len(load_trials(res)) == 12
    calls = []
    random_search(SPACE, lambda c: calls.append(c) or score(c), 12, results=res)
    assert calls == []                                             # a recorded failure counts as done

def test_a_failing_disk_stops_the_search_and_keeps_the_results_file(tmp_path):
    res = tmp_path/'r.jsonl'
    random_search(SPACE, score, 2, results=res)
    before = res.read_bytes()
    def disk_full(c): raise WriteError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path/'run'/'model.pt'))
    with pytest.raises(WriteError, match='model.pt'): random_search(SPACE, disk_full, 4, results=res)
    assert res.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ['r.jsonl']

def test_files_that_cannot_be_written_are_named(tmp_path):
    (tmp_path/'a_file').write_text('')
    bad = tmp_path/'a_file'/'sub'
    why = os.strerror(errno.ENOTDIR)
    with pytest.raises(WriteError, match=f'cannot write {bad}: {why}'): learner([CSVLoggerCB(bad/'h.csv')]).fit(1)
    with pytest.raises(WriteError, match=f'cannot write {bad}: {why}'): random_search(SPACE, score, 1, results=bad/'r.jsonl')
    with pytest.raises(WriteError, match=f"cannot write {tmp_path/'a_file'/'c.json'}: {why}"): TrainConfig().save(tmp_path/'a_file'/'c.json')

def test_a_train_fn_returning_no_dict_is_a_failed_trial():
    with pytest.warns(UserWarning, match='must return a dict'):
        (t,) = random_search(dict(a=[1]), lambda c: 0.5, 1)
    assert t['error'].startswith('TypeError')

def test_tensor_metrics_are_saved_as_numbers(tmp_path):
    random_search(dict(a=[1, 2]), lambda c: dict(acc=torch.tensor(0.5), n=np.int64(c['a'])), 2, results=tmp_path/'r.jsonl')
    assert [t['metrics'] for t in load_trials(tmp_path/'r.jsonl')] == [dict(acc=0.5, n=c['a']) for c in draw_configs(dict(a=[1, 2]), 2)]

def test_sort_trials_puts_missing_and_nan_metrics_last():
    ts = [dict(metrics=dict(m=2.)), dict(metrics=None), dict(metrics=dict(m=float('nan'))), dict(metrics=dict(m=1.))]
    assert sort_trials(ts, 'm') == [ts[3], ts[0], ts[1], ts[2]]
    assert sort_trials(ts, 'm', 'max') == [ts[0], ts[3], ts[1], ts[2]]

@pytest.mark.parametrize('kw,exc,msg', [
    (dict(space={}), TypeError, 'space must be a non-empty dict'),
    (dict(space=dict(lr=[])), TypeError, r"space\['lr'\] must be a non-empty list"),
    (dict(space=dict(lr=0.1)), TypeError, r"space\['lr'\] must be a non-empty list"),
    (dict(space=dict(act=[nn.ReLU])), TypeError, 'JSON values'),
    (dict(n_trials=-1), ValueError, 'n_trials must be an integer >= 0'), (dict(n_trials=2.), TypeError, 'n_trials must be an integer'),
    (dict(mode='best'), ValueError, "mode must be 'min' or 'max'"),
    (dict(train_fn=3), TypeError, 'train_fn must be callable')])
def test_bad_search_arguments_are_rejected(kw, exc, msg):
    args = dict(space=SPACE, train_fn=score, n_trials=2) | kw
    with pytest.raises(exc, match=msg): random_search(**args)

# --- TrainConfig and fit_config
from dataclasses import asdict, replace
from slowlearn.experiments import TrainConfig, fit_config

def test_config_round_trips_through_json(tmp_path):
    cfg = TrainConfig(model='mlp', widths=[32, 16], lr=3e-3, patience=2, device='cpu')
    assert cfg.widths == (32, 16)
    cfg.save(tmp_path/'c.json')
    assert TrainConfig.load(tmp_path/'c.json') == cfg
    assert json.loads((tmp_path/'c.json').read_text()) == asdict(cfg) | dict(widths=[32, 16], metrics=['accuracy'])

def test_a_config_file_may_leave_settings_at_their_defaults(tmp_path):
    (tmp_path/'c.json').write_text('{"epochs": 2}')
    assert TrainConfig.load(tmp_path/'c.json') == TrainConfig(epochs=2)

@pytest.mark.parametrize('text,msg', [('{"epochs": 2, "lr_max": 1}', r"unknown settings \['lr_max'\]"),
                                      ('[1, 2]', 'expected a JSON object'), ('{"epochs": ', 'not valid JSON'),
                                      ('{"bs": 0}', 'bs must be an integer >= 1')])
def test_bad_config_files_name_the_problem(tmp_path, text, msg):
    (tmp_path/'c.json').write_text(text)
    with pytest.raises(ValueError, match=msg) as e: TrainConfig.load(tmp_path/'c.json')
    assert str(tmp_path/'c.json') in str(e.value)

@pytest.mark.parametrize('kw,msg', [
    (dict(model='resnet'), 'model must be one of'), (dict(sched='cosine'), 'sched must be one of'),
    (dict(opt='adam'), 'opt must be one of'), (dict(widths=()), 'widths must be a non-empty list'),
    (dict(widths=(16, 0)), 'widths must be'), (dict(epochs=-1), 'epochs must be an integer >= 0'),
    (dict(n_train=0), 'n_train must be an integer >= 1'), (dict(patience=-1), 'patience must be an integer >= 0'),
    (dict(accumulate=0), 'accumulate must be an integer >= 1'), (dict(warmup=0.), "warmup must be > 0 with sched='one_cycle'"),
    (dict(seed=-1), r'seed must be an integer in \[0, 4294967295\]'), (dict(seed=2**32), r'seed must be an integer in \[0, 4294967295\]'),
    (dict(lr=0), 'lr must be a number > 0'), (dict(lr=float('nan')), 'lr must be a number > 0'),
    (dict(wd=-0.1), 'wd must be a number >= 0'), (dict(warmup=1.), r'warmup must be a number in \[0, 1\)'),
    (dict(device='gpu7'), 'device must name a torch device')])
def test_bad_settings_are_rejected_when_the_config_is_made(kw, msg):
    with pytest.raises(ValueError, match=msg): TrainConfig(**kw)

@pytest.mark.parametrize('kw', [dict(checkpoint='yes'), dict(deterministic=1), dict(data=3), dict(epochs=2.5), dict(bs=True),
                                dict(widths=(16, 1.5)), dict(epochs=None)])
def test_settings_of_the_wrong_type_are_rejected(kw):
    with pytest.raises(TypeError): TrainConfig(**kw)

def test_numpy_integer_settings_become_ints(tmp_path):
    cfg = TrainConfig(epochs=np.int64(2), bs=np.int32(64), widths=(np.int64(8),), n_train=np.int64(100))
    assert (cfg.epochs, cfg.bs, cfg.widths, cfg.n_train) == (2, 64, (8,), 100) and type(cfg.epochs) is int
    cfg.save(tmp_path/'c.json'); assert TrainConfig.load(tmp_path/'c.json') == cfg

def test_a_run_fills_its_folder(tmp_path, fake_fashion_mnist):
    learn = fit_config(SMALL, tmp_path/'run', progress=False)
    names = {p.name for p in (tmp_path/'run').iterdir()}
    assert names == {'config.json', 'history.csv', 'checkpoints', 'model.pt', 'loss.png', 'lr.png'}
    assert TrainConfig.load(tmp_path/'run'/'config.json') == SMALL
    assert as_history(read_csv(tmp_path/'run'/'history.csv')) == learn.history and len(learn.history) == 6
    sd = torch.load(tmp_path/'run'/'model.pt')
    assert all(torch.equal(sd[k], v) for k,v in learn.model.state_dict().items())
    assert len(learn.dls.train.tensors[0]) == 200 and len(learn.dls.valid.tensors[0]) == 64

def test_same_config_same_run(fake_fashion_mnist):
    a,b = fit_config(SMALL, progress=False),fit_config(SMALL, progress=False)
    assert all(torch.equal(a.model.state_dict()[k], v) for k,v in b.model.state_dict().items()) and a.history == b.history

def test_a_killed_run_resumed_ends_like_an_uninterrupted_one(tmp_path, fake_fashion_mnist):
    ref = fit_config(SMALL, tmp_path/'ref', progress=False)
    class Kill(Callback):
        def before_epoch(self, learn):
            if learn.epoch == 2: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): fit_config(SMALL, tmp_path/'run', cbs=[Kill()], progress=False)
    learn = fit_config(SMALL, tmp_path/'run', resume=True, progress=False)
    assert all(torch.equal(ref.model.state_dict()[k], v) for k,v in learn.model.state_dict().items())
    assert (tmp_path/'run'/'history.csv').read_text() == (tmp_path/'ref'/'history.csv').read_text()

def test_resuming_with_another_config_is_refused(tmp_path, fake_fashion_mnist):
    fit_config(replace(SMALL, epochs=1), tmp_path/'run', progress=False)
    with pytest.raises(ValueError, match='describes another run'):
        fit_config(replace(SMALL, epochs=1, lr=0.1), tmp_path/'run', resume=True, progress=False)
    with pytest.raises(ValueError, match='needs a run folder'): fit_config(SMALL, resume=True)

def lrs(cfg):
    learn = fit_config(cfg, progress=False)
    rec = next(cb for cb in learn.cbs if hasattr(cb, 'recs'))
    return rec['lr']

def test_warmup_cosine_schedule_follows_its_formula(fake_fashion_mnist):
    cfg = replace(SMALL, sched='warmup_cosine', warmup=0.25, epochs=2)     # 7 batches an epoch: 14 steps, 4 warming up
    T,W = 14,round(0.25 * 14)
    want = [cfg.lr * t / W if t < W else cfg.lr * (1 + math.cos(math.pi * (t - W) / (T - W))) / 2 for t in range(T)]
    assert lrs(cfg) == pytest.approx(want, rel=1e-9, abs=1e-12)

def test_constant_schedule_warms_up_then_stays(fake_fashion_mnist):
    cfg = replace(SMALL, sched='constant', warmup=0.25, epochs=2)
    assert lrs(cfg) == pytest.approx([cfg.lr * min(1, t / 4) for t in range(14)], rel=1e-9)

def test_one_cycle_schedule_is_fit_one_cycles(fake_fashion_mnist):
    # fit_one_cycle's formula by hand: half-cosine from lr/25 up to lr over the warm-up, then down to lr/1e5
    cfg = replace(SMALL, sched='one_cycle', warmup=0.3, epochs=2)     # 7 batches an epoch: 14 steps
    def cos(a, b, p): return a + (1 - math.cos(math.pi * p)) * (b - a) / 2
    want = [cos(cfg.lr/25, cfg.lr, t/14/0.3) if t/14 < 0.3 else cos(cfg.lr, cfg.lr/1e5, (t/14 - 0.3)/0.7) for t in range(14)]
    assert lrs(cfg) == pytest.approx(want, rel=1e-9)

@pytest.mark.parametrize('opt', ['adamw', 'sgd'])
def test_one_cycle_cycles_the_momentum_of_our_optimizers(fake_fashion_mnist, opt):
    from slowlearn.sched import RecorderCB
    rec = RecorderCB(mom='momentum')       # Adam's beta1, or SGD's momentum
    learn = fit_config(replace(SMALL, opt=opt, epochs=2), cbs=[rec], progress=False)   # 14 steps, 25% warming up
    assert type(learn.opt).__name__ == ('AdamW' if opt == 'adamw' else 'Momentum')
    def cos(a, b, p): return a + (1 - math.cos(math.pi * p)) * (b - a) / 2
    want = [cos(0.95, 0.85, t/14/0.25) if t/14 < 0.25 else cos(0.85, 0.95, (t/14 - 0.25)/0.75) for t in range(14)]
    assert rec['mom'] == pytest.approx(want, rel=1e-9)

def test_accumulate_steps_once_per_group_of_batches(fake_fashion_mnist):
    learn = fit_config(replace(SMALL, accumulate=3, epochs=1), progress=False)     # 7 batches an epoch: steps after 3, 6 and 7
    assert learn.train_iter == 3

def test_patience_stops_the_run_where_the_rule_says(fake_fashion_mnist):
    cfg = replace(SMALL, epochs=6, lr=0.3, sched='constant', warmup=0., opt='sgd')
    full = [h['loss'] for h in fit_config(cfg, progress=False).history if h['phase'] == 'valid']
    def stop_after(losses, patience):      # epochs run: stop once `patience` epochs in a row bring no new best
        best,bad = math.inf,0
        for i,l in enumerate(losses):
            best,bad = (l, 0) if l < best else (best, bad + 1)
            if bad == patience: return i + 1
        return len(losses)
    for patience in (1, 2):
        learn = fit_config(replace(cfg, patience=patience), progress=False)
        n = stop_after(full, patience)
        assert n < 6 and [h['loss'] for h in learn.history if h['phase'] == 'valid'] == full[:n]

# --- CSVLoggerCB with the real CheckpointCB
from slowlearn.checkpoint import CheckpointCB

@pytest.mark.parametrize('every', [dict(every_n_epochs=2), dict(every_n_epochs=None, every_n_steps=5)])
def test_csv_resumed_from_a_checkpoint_matches_an_uninterrupted_run(tmp_path, every):
    # 3 batches an epoch; a crash at the start of epoch 3 leaves rows logged after the last checkpoint
    # (after epoch 1 with every_n_epochs=2; in epoch 1, after step 5, with every_n_steps=5)
    ref = learner([CSVLoggerCB(tmp_path/'ref.csv')]); ref.fit(4)
    class Crash(Callback):
        def before_epoch(self, learn):
            if learn.epoch == 3 and learn.training: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): learner([CSVLoggerCB(tmp_path/'h.csv'), CheckpointCB(tmp_path/'ck', **every), Crash()]).fit(4)
    assert len(read_csv(tmp_path/'h.csv')) == 6
    learner([CSVLoggerCB(tmp_path/'h.csv'), CheckpointCB(tmp_path/'ck', **every)]).fit(4, resume=True)
    assert (tmp_path/'h.csv').read_text() == (tmp_path/'ref.csv').read_text()

def test_set_seed_lives_next_to_rng_states_and_keeps_its_old_imports():
    "Issue 12 kept `set_seed` importable from `slowlearn.experiments` and `slowlearn`; it lives in `slowlearn.resume`, beside `rng_states`."
    import slowlearn, slowlearn.experiments as E, slowlearn.resume as R
    assert set_seed is R.set_seed is E.set_seed is slowlearn.set_seed
    set_seed(5); st = R.rng_states(); a = torch.rand(2)
    set_seed(5); assert all(torch.equal(x, y) for x,y in ((R.rng_states()['torch'], st['torch']), (torch.rand(2), a)))

def test_accumulate_is_the_big_batch_without_batchnorm_only(fake_fashion_mnist):
    "4 batches of 16 accumulated step like one of 64 for the MLP; the CNN's BatchNorm normalises each batch of 16 by itself."
    def weights(model, bs, acc):
        cfg = replace(SMALL, model=model, widths=(16,) if model == 'mlp' else (4, 8), n_train=192, epochs=1, bs=bs, accumulate=acc,
                      sched='constant', warmup=0., checkpoint=False)
        return torch.cat([p.detach().flatten() for p in fit_config(cfg, progress=False).model.parameters()])
    big,acc = weights('mlp', 64, 1),weights('mlp', 16, 4)
    assert torch.allclose(acc, big, rtol=0, atol=1e-5)
    big,acc = weights('cnn', 64, 1),weights('cnn', 16, 4)
    assert (acc - big).abs().max() > 1e-3
