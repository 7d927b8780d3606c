"Dict batches and models that return dicts or dataclasses through training, the callbacks, checkpoints and `get_preds`; a real `transformers` GPT-2."
import io, math, os
from contextlib import redirect_stdout
import pytest, torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close
from slowlearn.learner import Learner, Callback
from slowlearn.data import DataLoaders, TensorLoader
from slowlearn.metrics import MetricsCB, ProgressCB
from slowlearn.sched import RecorderCB
from slowlearn.optim import GradAccumCB
from slowlearn.speed import MixedPrecisionCB
from slowlearn.callbacks import GradClipCB, EMACB, SWACB
from slowlearn.checkpoint import CheckpointCB
from crash import Crash, CrashAt

pytestmark = pytest.mark.usefixtures('one_thread')

TEXT = "to be, or not to be, that is the question: whether 'tis nobler in the mind to suffer " * 8
CHARS = sorted(set(TEXT))
SEQS = torch.tensor([CHARS.index(c) for c in TEXT[:len(TEXT) // 16 * 16]]).view(-1, 16)   # 43 sequences of 16 characters

class DictLoader:
    "Batches of `seqs` as a Hugging Face collator makes them (dicts with `labels`), in a `TensorLoader`'s order, so that it resumes mid-epoch."
    def __init__(self, seqs, bs, shuffle=False): self.tl = TensorLoader(seqs, bs=bs, shuffle=shuffle, seed=1)
    def __len__(self): return len(self.tl)
    def set_epoch(self, epoch, start=0): self.tl.set_epoch(epoch, start)
    def __iter__(self): return (dict(input_ids=x, attention_mask=torch.ones_like(x), labels=x) for (x,) in self.tl)

def lm_dls(bs=8): return DataLoaders(DictLoader(SEQS[:36], bs, shuffle=True), DictLoader(SEQS[36:], bs))   # 36 = 4 x 8 + 4

def gpt2(seed=0, dropout=0.1):
    "A tiny GPT-2 built from a config: nothing downloaded."
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    tf = pytest.importorskip('transformers')
    torch.manual_seed(seed)
    cfg = tf.GPT2Config(vocab_size=len(CHARS), n_positions=16, n_embd=32, n_layer=2, n_head=2, use_cache=False, bos_token_id=0,
                        eos_token_id=0, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
    return tf.GPT2LMHeadModel(cfg)

class HFStep(Callback):
    "The model takes the batch by name and computes its own loss."
    def predict(self, learn): learn.preds = learn.model(**learn.batch)
    def get_loss(self, learn): learn.loss = learn.preds.loss

def next_char_acc(logits, labels): return (logits[:, :-1].argmax(-1) == labels[:, 1:]).float().mean()

def lm_learner(cbs=(), seed=0, dropout=0.1, bs=8, opt_func=torch.optim.AdamW, lr=1e-2):
    return Learner(gpt2(seed, dropout), lm_dls(bs), lr=lr, opt_func=opt_func,
                   cbs=[HFStep(), MetricsCB(acc=next_char_acc), *cbs])

def test_gpt2_trains_resumes_bit_for_bit_and_predicts(tmp_path):
    "Dropout, AdamW, shuffled dict batches, a function metric: killed mid-epoch 2 and resumed from the checkpoint, it ends as the uninterrupted run."
    ref = lm_learner(); ref.fit(3)
    assert ref.history[-1]['loss'] < min(ref.history[1]['loss'], math.log(len(CHARS)) - 0.5)   # it learns: below a uniform guess
    with pytest.raises(Crash): lm_learner([CheckpointCB(tmp_path, every_n_steps=2), CrashAt(7)]).fit(3)
    learn = lm_learner([ck := CheckpointCB(tmp_path, every_n_steps=2)], seed=5)   # other weights: all comes from the checkpoint
    learn.fit(3, resume=True)
    assert ck.resumed['step'] == 6
    ref_sd, sd = ref.model.state_dict(), learn.model.state_dict()
    assert ref_sd.keys() == sd.keys() and all(torch.equal(ref_sd[k], sd[k]) for k in sd)
    assert learn.history == ref.history
    out, targs = learn.get_preds()
    valid = SEQS[36:]
    learn.model.eval()
    with torch.no_grad(): ref_out = learn.model(input_ids=valid, labels=valid)
    assert type(out) is type(ref_out) and torch.equal(targs, valid)
    assert_close(out.logits, ref_out.logits, rtol=1e-5, atol=1e-5)
    assert out.loss.shape == (1,)                                            # the model's loss: one per batch, here one batch of 7
    assert out.loss.item() == pytest.approx(ref_out.loss.item(), abs=1e-5) and out.loss.item() == pytest.approx(learn.history[-1]['loss'], abs=1e-6)

def test_gradient_accumulation_over_dict_batches_equals_big_batches():
    "Two dict batches of 4 per step, sized by their first tensor, step as one batch of 8 (no dropout, and SGD, whose step doesn't magnify rounding)."
    kw = dict(dropout=0., opt_func=torch.optim.SGD, lr=0.5)
    big = lm_learner(bs=8, **kw); big.fit(1, valid=False)
    acc = lm_learner([GradAccumCB(2)], bs=4, **kw); acc.fit(1, valid=False)
    for (k, a), b in zip(big.model.state_dict().items(), acc.model.state_dict().values()): assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)

def test_gpt2_under_the_training_callbacks_records_what_metricscb_records():
    "Recorder, progress, mixed precision, clipping and EMA with a dataclass output and dict batches."
    clip = GradClipCB(max_norm=1.)
    rec = RecorderCB(grad_norm=clip.grad_norm)
    learn = lm_learner([rec, ProgressCB(notebook=False), MixedPrecisionCB(), clip, EMACB(decay=0.9)])
    with redirect_stdout(out := io.StringIO()): learn.fit(2)
    train = [r for r in learn.history if r['phase'] == 'train']
    losses = rec['loss']
    assert len(losses) == 10 and sum(l * n for l, n in zip(losses[5:], [8, 8, 8, 8, 4])) / 36 == pytest.approx(train[1]['loss'], rel=1e-5)
    assert all(n == n and n > 0 for n in rec['grad_norm'])
    assert f"{learn.history[-1]['acc']:.4f}" in out.getvalue()

class BNNet(nn.Module):
    "A BatchNorm model taking its input by name: SWA recomputes its statistics from dict batches."
    def __init__(self):
        super().__init__(); torch.manual_seed(0)
        self.m = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    def forward(self, features): return self.m(features)

def test_swa_over_dict_batches_equals_tuple_batches():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=g); y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    tuples = [(x[i:i+16], y[i:i+16]) for i in range(0, 96, 16)]
    dicts = [dict(features=a, labels=b) for a, b in tuples]
    fit = lambda model, b: Learner(model, DataLoaders(b, b), lr=0.1, cbs=[MetricsCB(), SWACB(1, 0.05)]).fit(3)
    fit(net_t := BNNet().m, tuples); fit(net_d := BNNet(), dicts)
    for (k, a), b in zip(net_t.state_dict().items(), net_d.m.state_dict().values()): assert torch.equal(a, b), k

def test_dict_batches_with_several_target_keys_and_two_tuple_inputs():
    "`target_keys` picks a dict's targets, `n_inp` a tuple's inputs; the loss gets every target."
    g = torch.Generator().manual_seed(0)
    a, b, y, w = torch.randn(20, 3, generator=g), torch.randn(20, 2, generator=g), torch.randint(0, 3, (20,), generator=g), torch.rand(20, generator=g)
    class Two(nn.Module):
        def __init__(self): super().__init__(); torch.manual_seed(0); self.l = nn.Linear(5, 3)
        def forward(self, a, b): return self.l(torch.cat([a, b], 1))
    def wce(p, y, w): return (F.cross_entropy(p, y, reduction='none') * w).mean()
    dicts = [dict(a=a[i:i+8], b=b[i:i+8], y=y[i:i+8], w=w[i:i+8]) for i in range(0, 20, 8)]
    tuples = [(a[i:i+8], b[i:i+8], y[i:i+8], w[i:i+8]) for i in range(0, 20, 8)]
    ld = Learner(Two(), DataLoaders(dicts, dicts, target_keys=('y', 'w')), loss_func=wce, cbs=MetricsCB()); ld.fit(1)
    lt = Learner(Two(), DataLoaders(tuples, tuples, n_inp=2), loss_func=wce, cbs=MetricsCB()); lt.fit(1)
    assert ld.history == lt.history
    with torch.no_grad(): assert ld.history[-1]['loss'] == pytest.approx(wce(ld.model(a, b), y, w).item(), rel=1e-5)
    p, ty, tw = lt.get_preds(act=lambda t: t)
    assert torch.equal(ty, y) and torch.equal(tw, w)
    with torch.no_grad(): assert_close(p, lt.model(a, b))
