"Checkpoints and exact resume, safe loading, learn.save/load, early stopping, NaN; killed processes are in test_checkpoint_killed.py."
import errno, hashlib, json, os, pickle
import pytest, torch
from torch import nn
from slowlearn.learner import Learner, Callback
from slowlearn.data import DataLoaders
from slowlearn.checkpoint import CheckpointCB, EarlyStoppingCB, TerminateOnNaNCB, CheckpointError, save_checkpoint, load_checkpoint
from slowlearn.core import WriteError
from slowlearn.optim import GradAccumCB
import slowlearn.checkpoint as C
from crash import Crash, CrashAt
from conftest import sign_data as data, make_learn, states_equal, crash_then_resume, OneCycle, ScriptedValid, FillsUp

pytestmark = pytest.mark.usefixtures('one_thread')

# ---- checkpoint contents and resume

def test_checkpoint_holds_the_full_state(tmp_path):
    learn = make_learn([OneCycle(), ck := CheckpointCB(tmp_path, every_n_steps=7)])
    learn.fit(2)
    first = load_checkpoint(tmp_path/ck.checkpoints[0]['file'])
    assert {'model', 'opt', 'callbacks', 'pos', 'rng', 'fit', 'data'} <= set(first)
    assert {'epoch', 'iter', 'opt_steps', 'history', 'loader'} <= set(first['pos'])
    assert (first['pos']['epoch'], first['pos']['iter'], first['pos']['opt_steps']) == (1, 4, 14)     # 10 batches an epoch: after step 14
    assert set(first['rng']) >= {'torch', 'numpy', 'python'} and set(first['callbacks']) == {'MetricsCB', 'OneCycle'}
    assert first['fit'] == dict(n_epochs=2, lr=0.05, train=True, valid=True, steps_per_epoch=None)
    assert first['data']['seed'] == 3 and first['data']['shuffle'] is True
    assert [(r['epoch'], r['phase']) for r in first['pos']['history']] == [(0, 'train'), (0, 'valid')]
    assert first['callbacks']['OneCycle']['last_epoch'] == 14 and first['callbacks']['MetricsCB']['n'] == 4 * 16

def test_only_the_main_process_writes_checkpoints(tmp_path, monkeypatch):
    "Under torchrun (RANK set, before a process group exists) ranks above 0 neither checkpoint nor save."
    monkeypatch.setenv('RANK', '1'); monkeypatch.setenv('WORLD_SIZE', '2')
    learn = make_learn([CheckpointCB(tmp_path/'ck', every_n_steps=3)]); learn.fit(1)
    learn.save(tmp_path/'model.pt')
    assert not (tmp_path/'model.pt').exists() and not any((tmp_path/'ck').glob('*.pt'))
    monkeypatch.setenv('RANK', '0')
    learn.fit(1); learn.save(tmp_path/'model.pt')
    assert (tmp_path/'model.pt').exists() and any((tmp_path/'ck').glob('*.pt'))

@pytest.mark.parametrize('at', [4, 10, 23])  # mid-epoch, right after an epoch's last step, mid-epoch of the last epoch
def test_resume_after_crash_equals_uninterrupted(tmp_path, at):
    ref = make_learn([OneCycle()]); ref.fit(3)
    learn, ck = crash_then_resume(tmp_path, at, every_n_steps=3)
    assert ck.resumed['step'] == at // 3 * 3
    assert learn.history == ref.history and states_equal(learn, ref) and learn.train_iter == ref.train_iter

def test_resume_with_a_loader_without_set_epoch(tmp_path):
    "A plain list of batches: the resumed epoch skips the batches already done."
    dls = DataLoaders(list(DataLoaders.from_tensors(*data(), bs=16, shuffle=False).train), [])
    make = lambda cbs, seed=0: make_learn(cbs, dls=dls, seed=seed)
    ref = make([OneCycle()]); ref.fit(2, valid=False)
    learn, _ = crash_then_resume(tmp_path, 13, n_epochs=2, make=make, fit_kw=dict(valid=False), every_n_steps=2, monitor=None)
    assert states_equal(learn, ref) and learn.history == ref.history

def test_resume_true_on_an_empty_folder_starts_fresh(tmp_path):
    ref = make_learn(); ref.fit(2)
    learn = make_learn([ck := CheckpointCB(tmp_path/'new')]); learn.fit(2, resume=True)
    assert ck.resumed is None and states_equal(learn, ref) and learn.history == ref.history

def test_resume_from_a_given_file(tmp_path):
    ref = make_learn([OneCycle()]); ref.fit(3)
    make_learn([OneCycle(), ck := CheckpointCB(tmp_path/'a', keep_last=5)]).fit(3)
    after_epoch0 = tmp_path/'a'/ck.checkpoints[0]['file']
    learn = make_learn([OneCycle(), CheckpointCB(tmp_path/'b')], seed=5); learn.fit(3, resume=after_epoch0)
    assert states_equal(learn, ref) and learn.history == ref.history

def test_resume_needs_a_checkpoint_callback():
    with pytest.raises(ValueError, match='resume'): make_learn().fit(1, resume=True)

def test_resume_with_other_fit_arguments_warns(tmp_path):
    make_learn([CheckpointCB(tmp_path)]).fit(1)
    with pytest.warns(UserWarning, match='n_epochs: 1 then, 3 now'): make_learn([CheckpointCB(tmp_path)]).fit(3, resume=True)

def test_fresh_fit_in_a_used_folder_warns_and_replaces_old_checkpoints(tmp_path):
    make_learn([CheckpointCB(tmp_path)]).fit(2)
    old = {p.name for p in tmp_path.glob('ckpt-*')}
    with pytest.warns(UserWarning, match='earlier fit'): make_learn([ck := CheckpointCB(tmp_path)]).fit(1)
    assert not old & {p.name for p in tmp_path.glob('ckpt-*')} and len(ck.checkpoints) == 1

# ---- keeping, atomicity, corruption, safety

def test_keep_last_and_keep_best(tmp_path):
    losses = [5., 3., 4., 1., 2., 6., 2.5]
    learn = Learner(nn.Linear(8, 2), DataLoaders.from_tensors(*data(), bs=32), cbs=[ScriptedValid(losses),
                    ck := CheckpointCB(tmp_path, keep_last=2, keep_best=2)])
    learn.fit(len(losses))
    assert [e['epoch'] for e in ck.checkpoints] == [3, 4, 5, 6]     # the best two (1.0, 2.0) and the newest two
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([e['file'] for e in ck.checkpoints] + ['index.json'])
    assert ck.best_path.name == ck.checkpoints[0]['file'] and ck.last_path.name == ck.checkpoints[-1]['file']
    assert json.loads((tmp_path/'index.json').read_text())['checkpoints'] == ck.checkpoints

def test_mode_max_keeps_the_highest(tmp_path):
    learn = Learner(nn.Linear(8, 2), DataLoaders.from_tensors(*data(), bs=32), cbs=[ScriptedValid([1., 3., 2., 0.]),
                    ck := CheckpointCB(tmp_path, mode='max', keep_last=1, keep_best=1)])
    learn.fit(4)
    assert [e['epoch'] for e in ck.checkpoints] == [1, 3]

def test_a_write_that_dies_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    with pytest.raises(Crash): make_learn([ck := CheckpointCB(tmp_path), CrashAt(12)]).fit(2)
    before = (tmp_path/'index.json').read_bytes(), {p.name: p.read_bytes() for p in tmp_path.glob('ckpt-*')}
    real_save = torch.save
    def dies_halfway(obj, f):
        real_save(obj, f); f.seek(f.tell() // 2); f.truncate(); raise KeyboardInterrupt   # half written, then killed
    monkeypatch.setattr(torch, 'save', dies_halfway)
    with pytest.raises(KeyboardInterrupt): make_learn([CheckpointCB(tmp_path)]).fit(2, resume=True)
    monkeypatch.undo()
    assert (tmp_path/'index.json').read_bytes() == before[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != 'index.json'} == before[1]   # no temp file left
    load_checkpoint(tmp_path/ck.checkpoints[-1]['file'], ck.checkpoints[-1]['sha256'])

def test_save_checkpoint_returns_the_sha256_of_the_bytes_on_disk(tmp_path):
    sha = save_checkpoint({'w': torch.randn(1000, 50), 'n': [1, 'a']}, tmp_path/'a.pt')
    assert sha == hashlib.sha256((tmp_path/'a.pt').read_bytes()).hexdigest()

def test_async_save_writes_the_same_checkpoints_and_resumes_exactly(tmp_path):
    "A background write saves the state of the step it was asked at, though training goes on meanwhile."
    for d, a in (('sync', False), ('async', True)):
        make_learn([OneCycle(), CheckpointCB(tmp_path/d, every_n_steps=3, keep_last=100, async_save=a)]).fit(2)
    names = sorted(p.name for p in (tmp_path/'sync').glob('ckpt-*'))
    assert len(names) == 2*10//3 + 2 and names == sorted(p.name for p in (tmp_path/'async').glob('ckpt-*'))
    for n in names:
        a, b = (load_checkpoint(tmp_path/d/n) for d in ('sync', 'async'))
        assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model']) and a['pos']['history'] == b['pos']['history']
        assert all(torch.equal(a['opt']['state'][i]['exp_avg'], b['opt']['state'][i]['exp_avg']) for i in a['opt']['state'])
    ref = make_learn([OneCycle()]); ref.fit(3)
    learn, ck = crash_then_resume(tmp_path/'crash', 14, every_n_steps=4, async_save=True)
    assert ck.resumed['step'] == 12 and learn.history == ref.history and states_equal(learn, ref)

def test_a_failed_background_write_is_the_same_write_error_at_the_next_event(tmp_path, monkeypatch):
    real = C.atomic_write
    def disk_fills_at_the_second(path, write):
        return real(path, (lambda f: write(FillsUp(f, 1000))) if path.name.startswith('ckpt-00002') else write)
    monkeypatch.setattr(C, 'atomic_write', disk_fills_at_the_second)
    learn = make_learn([CheckpointCB(tmp_path, every_n_steps=5, async_save=True)])
    with pytest.raises(WriteError, match=f'^cannot write {tmp_path}/ckpt-00002-epoch0-step10.pt: {os.strerror(errno.ENOSPC)}$'): learn.fit(3)
    assert 10 <= learn.train_iter < 15         # reported before the next checkpoint was due
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ckpt-00001-epoch0-step5.pt', 'index.json']

def test_saving_into_a_missing_or_unmakeable_folder_names_the_file(tmp_path):
    learn = make_learn()
    with pytest.raises(WriteError, match=f'cannot write {tmp_path}/gone/m.pt: {os.strerror(errno.ENOENT)}'): learn.save(tmp_path/'gone'/'m.pt')
    (tmp_path/'a_file').write_text('')
    with pytest.raises(WriteError, match=f'cannot write {tmp_path}/a_file/ck: {os.strerror(errno.ENOTDIR)}'):
        learn.fit(1, cbs=CheckpointCB(tmp_path/'a_file'/'ck'))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a_file']

def test_a_failed_index_write_keeps_the_earlier_checkpoints_and_index(tmp_path, monkeypatch):
    with pytest.raises(Crash): make_learn([CheckpointCB(tmp_path), CrashAt(12)]).fit(2)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real = C.atomic_write
    def index_fails(path, write):
        if path.name == 'index.json': raise WriteError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, write)
    monkeypatch.setattr(C, 'atomic_write', index_fails)
    with pytest.raises(WriteError, match='index.json'): make_learn([CheckpointCB(tmp_path)]).fit(2, resume=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before     # the unindexed new checkpoint is gone too

def test_resume_true_after_a_full_disk_continues_from_the_last_good_checkpoint(tmp_path, monkeypatch):
    ref = make_learn([OneCycle()]); ref.fit(3)
    real = C.atomic_write
    def disk_fills_at_the_second(path, write):     # the second checkpoint's bytes don't fit
        return real(path, (lambda f: write(FillsUp(f, 1000))) if path.name.startswith('ckpt-00002') else write)
    monkeypatch.setattr(C, 'atomic_write', disk_fills_at_the_second)
    with pytest.raises(WriteError, match=f'cannot write {tmp_path}/ckpt-00002-epoch1-step20.pt: {os.strerror(errno.ENOSPC)}'):
        make_learn([OneCycle(), CheckpointCB(tmp_path)]).fit(3)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ckpt-00001-epoch0-step10.pt', 'index.json']
    learn = make_learn([OneCycle(), ck := CheckpointCB(tmp_path)], seed=7); learn.fit(3, resume=True)
    assert ck.resumed['step'] == 10 and learn.history == ref.history and states_equal(learn, ref)

def truncate(p): p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 3])
def flip_byte(p): b = bytearray(p.read_bytes()); b[len(b) // 2] ^= 0x10; p.write_bytes(bytes(b))
def delete(p): p.unlink()

@pytest.mark.parametrize('damage', [truncate, flip_byte, delete])
def test_damaged_newest_checkpoint_is_reported_and_the_previous_used(tmp_path, damage):
    ref = make_learn([OneCycle()]); ref.fit(3)
    with pytest.raises(Crash): make_learn([OneCycle(), ck := CheckpointCB(tmp_path, every_n_steps=4, keep_last=3), CrashAt(18)]).fit(3)
    *_, prev, newest = ck.checkpoints
    assert (prev['step'], newest['step']) == (12, 16)
    damage(tmp_path/newest['file'])
    learn = make_learn([OneCycle(), ck2 := CheckpointCB(tmp_path, every_n_steps=4, keep_last=3)])
    with pytest.warns(UserWarning) as ws: learn.fit(3, resume=True)
    msg = next(str(w.message) for w in ws if newest['file'] in str(w.message))
    assert prev['file'] in msg and ck2.resumed['step'] == prev['step']
    assert learn.history == ref.history and states_equal(learn, ref)

def test_a_version_1_checkpoint_says_so_at_resume_and_its_weights_still_load(tmp_path):
    "Version 2 saves the position as one 'pos' entry; a checkpoint from before can't resume a fit, and says why."
    learn = make_learn(); learn.fit(1, cbs=CheckpointCB(tmp_path/'ck'))
    ck = torch.load(sorted((tmp_path/'ck').glob('*.pt'))[-1], weights_only=True)
    old = {k: v for k, v in ck.items() if k != 'pos'} | dict(version=1)
    torch.save(old, tmp_path/'old.pt')
    with pytest.raises(CheckpointError, match=r"missing \['pos'\]; an older slowlearn wrote it \(version 1\)"):
        make_learn().fit(1, resume=tmp_path/'old.pt', cbs=CheckpointCB(tmp_path/'ck2'))
    fresh = make_learn(); fresh.load(tmp_path/'old.pt')
    for a, b in zip(fresh.model.parameters(), learn.model.parameters()): assert torch.equal(a, b)

class Evil:
    def __reduce__(self): return (os.system, (f'touch {Evil.marker}',))

@pytest.mark.filterwarnings('ignore:Detected pickle protocol')
@pytest.mark.parametrize('write', [lambda obj, f: torch.save(obj, f), lambda obj, f: f.write_bytes(pickle.dumps(obj))])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, write):
    Evil.marker = tmp_path/'pwned'
    write(dict(format='slowlearn-model', model={'w': Evil()}), tmp_path/'evil.pt')
    learn = make_learn()
    with pytest.raises(CheckpointError, match='refusing to load .*evil.pt'): learn.load(tmp_path/'evil.pt')
    with pytest.raises(CheckpointError, match='refusing'): learn.fit(1, resume=tmp_path/'evil.pt', cbs=CheckpointCB(tmp_path/'ck'))
    assert not Evil.marker.exists()

def test_saving_state_that_needs_a_full_pickle_fails_at_save_time(tmp_path):
    class Bad(Callback):
        def state_dict(self): return {'f': lambda: 0}
        def load_state_dict(self, sd): pass
    with pytest.raises(TypeError, match=r"checkpoint\['callbacks'\]\['Bad'\]\['f'\] is a function"):
        make_learn([Bad(), CheckpointCB(tmp_path)]).fit(1)

# ---- learn.save / learn.load

def test_save_load_round_trip_with_optimizer(tmp_path):
    a = make_learn(); a.fit(1); a.save(tmp_path/'m.pt')
    b = make_learn(seed=4); b.load(tmp_path/'m.pt')
    assert states_equal(a, b)
    sa, sb = a.opt.state_dict(), b.opt.state_dict()
    assert all(torch.equal(sa['state'][i][k], sb['state'][i][k]) for i in sa['state'] for k in sa['state'][i])
    c = make_learn(seed=4); c.load(tmp_path/'m.pt', with_opt=False)
    assert c.opt is None

def test_load_into_another_architecture_lists_the_mismatched_keys(tmp_path):
    a = make_learn(); a.save(tmp_path/'m.pt', with_opt=False)
    b = Learner(nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2)), a.dls)
    with pytest.raises(CheckpointError) as e: b.load(tmp_path/'m.pt')
    msg = str(e.value)
    for part in ('missing in the file: 2.weight, 2.bias', 'not in the model: 3.weight, 3.bias',
                 '0.weight (16, 8) vs (32, 8)', '0.bias (16,) vs (32,)'): assert part in msg

def test_checkpoint_selection_loads_the_best_epoch(tmp_path):
    learn = make_learn(lr=0.3); learn.fit(6, cbs=(ck := CheckpointCB(tmp_path, keep_last=1)))
    vl = [r['loss'] for r in learn.history if r['phase'] == 'valid']
    learn.load(ck.best_path)
    learn.fit(1, train=False)
    assert learn.history[0]['loss'] == pytest.approx(min(vl), rel=1e-6)

# ---- early stopping, NaN

def test_early_stopping_stops_after_patience_and_restores_best(tmp_path):
    losses = [5., 3., 3.5, 3., 4., 1., 0.5]
    snaps = {}
    class Snap(Callback):
        order = 10
        def after_epoch(self, learn):
            if not learn.training: snaps[learn.epoch] = [p.detach().clone() for p in learn.model.parameters()]
    es = EarlyStoppingCB(patience=3)
    learn = Learner(nn.Linear(8, 2), DataLoaders.from_tensors(*data(), bs=32), cbs=[ScriptedValid(losses), es, Snap()])
    learn.fit(len(losses))
    assert (es.best, es.best_epoch, es.stopped_epoch) == (3., 1, 4)        # 3.5, 3.0 (not better), 4.0: three epochs
    assert learn.history[-1]['epoch'] == 4
    assert all(torch.equal(p, q) for p, q in zip(learn.model.parameters(), snaps[1]))

def test_early_stopping_min_delta_mode_and_no_restore():
    es = EarlyStoppingCB(monitor='valid_loss', mode='max', patience=2, min_delta=0.5, restore_best=False)
    learn = Learner(nn.Linear(8, 2), DataLoaders.from_tensors(*data(), bs=32), cbs=[ScriptedValid([1., 1.4, 2., 2.2, 2.4, 9.]), es])
    w_at_stop = []
    class Last(Callback):
        def after_epoch(self, learn): w_at_stop[:] = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(6, cbs=Last())
    assert (es.best, es.best_epoch, es.stopped_epoch) == (2., 2, 4)     # 1.4 < 1 + 0.5; 2.2, 2.4 < 2 + 0.5
    assert learn.history[-1]['epoch'] == 4
    assert all(torch.equal(p, q) for p, q in zip(learn.model.parameters(), w_at_stop))

def test_early_stopping_resumes_where_it_left(tmp_path):
    losses = [5., 3., 3.5, 3., 4., 1., 0.5]
    def make(cbs, seed=0):
        torch.manual_seed(seed)
        return Learner(nn.Linear(8, 2), DataLoaders.from_tensors(*data(), bs=32), cbs=[ScriptedValid(losses), EarlyStoppingCB(patience=3)] + cbs)
    ref = make([]); ref.fit(7)
    with pytest.raises(Crash): make([CheckpointCB(tmp_path), CrashAt(17)]).fit(7)      # in epoch 3
    learn = make([CheckpointCB(tmp_path)], seed=1); learn.fit(7, resume=True)
    assert learn.cbs[1].stopped_epoch == 4 and learn.history == ref.history and states_equal(learn, ref)

def test_terminate_on_nan_stops_before_the_step_and_writes_no_broken_checkpoint(tmp_path):
    class NaNAt(Callback):      # a corrupt input at the sixth training batch
        def before_batch(self, learn):
            if learn.training and learn.train_iter == 5: learn.batch = (learn.batch[0] * float('nan'), learn.batch[1])
    learn = make_learn([NaNAt(), nan := TerminateOnNaNCB(), ck := CheckpointCB(tmp_path, every_n_steps=1, keep_last=10)])
    with pytest.warns(UserWarning, match='loss is nan at epoch 0, batch 5'): learn.fit(3)
    assert nan.stopped_at == dict(epoch=0, iter=5, phase='train') and learn.train_iter == 5
    assert [e['step'] for e in ck.checkpoints] == [1, 2, 3, 4, 5]
    last = load_checkpoint(ck.last_path)['model']
    assert all(torch.equal(last[k], v) for k, v in learn.model.state_dict().items())   # the weights before the NaN batch

def test_checkpoint_refuses_non_finite_weights(tmp_path):
    class Poison(Callback):
        def after_step(self, learn):
            if learn.train_iter == 3: learn.model[0].weight.data[0, 0] = float('inf')
    with pytest.warns(UserWarning, match='no checkpoint written'):
        make_learn([Poison(), ck := CheckpointCB(tmp_path, every_n_steps=1, keep_last=10)]).fit(1, valid=False)
    assert [e['step'] for e in ck.checkpoints] == [1, 2]

def test_resume_restores_scheduler_and_recorder_callbacks(tmp_path):
    from slowlearn.sched import BatchSchedulerCB, RecorderCB
    def make(cbs, seed=0):
        return make_learn([BatchSchedulerCB(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.05, total_steps=30),
                           RecorderCB(lr='lr')] + cbs, seed=seed)
    ref = make([]); ref.fit(3)
    with pytest.raises(Crash): make([CheckpointCB(tmp_path, every_n_steps=4), CrashAt(18)]).fit(3)
    learn = make([CheckpointCB(tmp_path, every_n_steps=4)], seed=9); learn.fit(3, resume=True)
    assert learn.cbs[2]['lr'] == ref.cbs[2]['lr'] and learn.cbs[2]['loss'] == ref.cbs[2]['loss'] and len(ref.cbs[2]['lr']) == 30
    assert states_equal(learn, ref) and learn.history == ref.history

# ---- bad arguments

@pytest.mark.parametrize('make, name', [
    (lambda: CheckpointCB('x', every_n_epochs=0), 'every_n_epochs'),
    (lambda: CheckpointCB('x', keep_last=0), 'keep_last'), (lambda: CheckpointCB('x', keep_best=-1), 'keep_best'),
    (lambda: CheckpointCB('x', monitor='loss'), 'monitor'), (lambda: CheckpointCB('x', mode='lowest'), 'mode'),
    (lambda: EarlyStoppingCB(patience=-1), 'patience'), (lambda: EarlyStoppingCB(min_delta=-0.1), 'min_delta'),
    (lambda: EarlyStoppingCB(monitor='valid loss'), 'monitor'), (lambda: GradAccumCB(0), 'n_acc'),
    (lambda: make_learn().fit(1, steps_per_epoch=0), 'steps_per_epoch')])
def test_bad_arguments_name_the_argument(make, name):
    with pytest.raises(ValueError, match=name): make()

@pytest.mark.parametrize('make, name', [(lambda: CheckpointCB('x', every_n_steps=1.5), 'every_n_steps'), (lambda: GradAccumCB(2.), 'n_acc')])
def test_arguments_of_a_wrong_type_are_type_errors(make, name):
    with pytest.raises(TypeError, match=name): make()

def test_async_save_must_be_a_bool():
    with pytest.raises(TypeError, match='async_save must be True or False'): CheckpointCB('x', async_save=1)

def test_unknown_monitor_names_the_available_keys(tmp_path):
    with pytest.raises(ValueError, match=r"no 'acc'.*'accuracy'"): make_learn([EarlyStoppingCB(monitor='valid_acc')]).fit(1)
