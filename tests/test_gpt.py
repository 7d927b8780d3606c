"Attention against PyTorch's, causality, the GPT's shapes and groups, seeded sampling, the recipe against a plain loop, and where tiny Shakespeare is found."
import hashlib, math
from functools import partial
import pytest, torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close
import slowlearn.data as sd
from slowlearn.data import DataLoaders, tiny_shakespeare, tiny_shakespeare_file, WindowLoader
from slowlearn.layers import LayerNorm, RMSNorm
from slowlearn.optim import weight_decay_groups
from slowlearn.sched import RecorderCB
from slowlearn.gpt import attention, MultiHeadAttention, DecoderBlock, GPT, lm_loss, generate, gpt_learner

pytestmark = pytest.mark.usefixtures('one_thread')

# ---------------------------------------------------------------- attention

@pytest.mark.parametrize('T', [1, 7, 33])
def test_attention_matches_sdpa(T):
    q, k, v = torch.randn(3, 2, 3, T, 16, generator=torch.Generator().manual_seed(T)).unbind(0)
    assert_close(attention(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert_close(attention(q, k, v, causal=False), F.scaled_dot_product_attention(q, k, v))

def test_attention_by_hand():
    "Two positions, one feature: the second query averages both values by softmax weights computed by hand."
    q, k, v = torch.tensor([[1.], [2.]]), torch.tensor([[0.5], [1.]]), torch.tensor([[10.], [20.]])
    w = torch.tensor([2*0.5, 2*1.]).softmax(0)
    assert_close(attention(q, k, v), torch.stack([v[0], w[0]*v[0] + w[1]*v[1]]))

def test_multi_head_attention_matches_torch():
    "`MultiHeadAttention` is `nn.MultiheadAttention` with a causal mask, given the same weights."
    torch.manual_seed(0)
    ours, ref = MultiHeadAttention(16, 4), nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight); ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight); ref.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 9, 16)
    mask = torch.ones(9, 9, dtype=torch.bool).triu(1)
    assert_close(ours(x), ref(x, x, x, attn_mask=mask, need_weights=False)[0])

@pytest.mark.parametrize('kw', [dict(norm=LayerNorm), dict(norm=RMSNorm), dict(norm=LayerNorm, pre=False), dict(norm=None)])
def test_gpt_is_causal(kw):
    "Changing the last token changes no earlier position's logits."
    torch.manual_seed(0)
    m = GPT(11, ctx=12, d=16, n_layers=2, n_heads=2, **kw)
    x = torch.randint(0, 11, (3, 12))
    x2 = x.clone(); x2[:, -1] = (x2[:, -1] + 1) % 11
    a, b = m(x), m(x2)
    assert_close(a[:, :-1], b[:, :-1], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, -1], b[:, -1])

def test_shapes_and_bad_arguments():
    m = GPT(11, ctx=8, d=16, n_layers=1, n_heads=4)
    assert m(torch.randint(0, 11, (2, 5))).shape == (2, 5, 11)
    with pytest.raises(ValueError, match='context of 8'): m(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match='multiple of n_heads'): MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match='n_layers'): GPT(11, n_layers=0)
    with pytest.raises(ValueError, match='temperature'): generate(m, torch.zeros(1, 1, dtype=torch.long), 3, temperature=0)

def test_pre_norm_block_with_zero_branches_is_identity():
    torch.manual_seed(0)
    b = DecoderBlock(8, 2, LayerNorm)
    for lin in (b.attn.proj, b.mlp[2]): nn.init.zeros_(lin.weight); nn.init.zeros_(lin.bias)
    x = torch.randn(2, 5, 8)
    assert torch.equal(b(x), x)

def test_tied_and_untied_head():
    tied, untied = GPT(11, ctx=8, d=16, n_layers=1, n_heads=2), GPT(11, ctx=8, d=16, n_layers=1, n_heads=2, tie=False)
    assert tied.head.weight is tied.tok.weight
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters()) == 11*16

# ---------------------------------------------------------------- sampling

def test_generate_is_seeded_and_crops_context():
    torch.manual_seed(0)
    m = GPT(11, ctx=4, d=16, n_layers=1, n_heads=2)
    start = torch.zeros(2, 1, dtype=torch.long)
    run = lambda seed, **kw: generate(m, start, 10, generator=torch.Generator().manual_seed(seed), **kw)
    a = run(1)
    assert a.shape == (2, 11) and torch.equal(a[:, :1], start)       # longer than ctx: the context is cropped
    assert torch.equal(a, run(1)) and not torch.equal(a, run(2))
    assert m.training                                                 # left in the mode it was in

def test_top_k_1_is_greedy():
    "With `top_k=1` every draw is the argmax, as a greedy loop written out picks it."
    torch.manual_seed(0)
    m = GPT(11, ctx=6, d=16, n_layers=1, n_heads=2).eval()
    idx = torch.tensor([[3]])
    with torch.no_grad():
        for _ in range(8): idx = torch.cat([idx, m(idx[:, -6:])[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(generate(m, torch.tensor([[3]]), 8, top_k=1, generator=torch.Generator().manual_seed(0)), idx)

# ---------------------------------------------------------------- the recipe

def test_weight_decay_groups_of_gpt():
    "Decayed: the four weight matrices of each block; not: embeddings (and the head tied to one), norms, biases."
    m = GPT(11, ctx=8, d=16, n_layers=3, n_heads=2)
    decayed, kept = weight_decay_groups(m, 0.1)
    names = {id(p): n for n, p in m.named_parameters()}
    want = {f'blocks.{i}.{w}.weight' for i in range(3) for w in ('attn.qkv', 'attn.proj', 'mlp.0', 'mlp.2')}
    assert {names[id(p)] for p in decayed['params']} == want and decayed['weight_decay'] == 0.1
    assert kept['weight_decay'] == 0. and {'tok.weight', 'pos.weight', 'norm.weight'} <= {names[id(p)] for p in kept['params']}

def test_gpt_learner_is_the_plain_loop():
    "float32, torch's AdamW: the learner's weights after 6 steps are those of the recipe written out as a loop."
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(0, 11, (4, 9), generator=g) for _ in range(6)]
    batches = [(s[:, :-1], s[:, 1:]) for s in seqs]
    make = lambda: (torch.manual_seed(0), GPT(11, ctx=8, d=16, n_layers=2, n_heads=2))[1]
    learn = gpt_learner(make(), DataLoaders(batches, []), lr=1e-2, total_steps=6, warmup_steps=2, wd=0.1, clip=0.5, bf16=False, cbs=[rec := RecorderCB(lr='lr')])
    learn.opt_func = partial(torch.optim.AdamW, betas=(0.9, 0.99))
    learn.fit(1, valid=False)
    m = make()
    decay = [p for n, p in m.named_parameters() if p.ndim == 2 and not n.startswith(('tok', 'pos'))]
    rest = [p for p in m.parameters() if all(p is not q for q in decay)]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=0.1), dict(params=rest, weight_decay=0.)], lr=1e-2, betas=(0.9, 0.99))
    lrs = []
    for t, (x, y) in enumerate(batches):
        lr = 1e-2 * (t/2 if t < 2 else (1 + math.cos(math.pi*(t - 2)/4))/2)   # warm-up, then cosine to 0 at step 6
        for gr in opt.param_groups: gr['lr'] = lr
        lrs.append(lr)
        F.cross_entropy(m(x).flatten(0, 1), y.flatten()).backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
        opt.step(); opt.zero_grad()
    assert_close(rec['lr'], lrs, rtol=1e-12, atol=0)
    # the gradient norm is summed in another parameter order, and Adam divides by sqrt(v): near-zero gradients carry
    # last-bit differences up to ~2e-6 under AVX2 and plain kernels (tools/matrix.py); a wrong step would be ~1e-2 off
    for a, b in zip(learn.model.parameters(), m.parameters()): assert_close(a, b, rtol=1e-4, atol=2e-5)

def test_lm_loss_is_mean_over_positions():
    logits, y = torch.randn(2, 3, 5), torch.randint(0, 5, (2, 3))
    want = -torch.stack([logits[b, t].log_softmax(-1)[y[b, t]] for b in range(2) for t in range(3)]).mean()
    assert_close(lm_loss(logits, y), want)

# ---------------------------------------------------------------- tiny Shakespeare: where the file comes from

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40

@pytest.fixture
def fake_text(tmp_path, monkeypatch):
    "A short stand-in text whose sha256 the module is made to expect; no SLOWLEARN_DATA, an empty cache, an unreachable URL."
    monkeypatch.setattr(sd, 'SHAKESPEARE_SHA256', hashlib.sha256(TEXT.encode()).hexdigest())
    monkeypatch.setattr(sd, 'SHAKESPEARE_URL', (tmp_path/'offline'/'input.txt').as_uri())
    monkeypatch.delenv('SLOWLEARN_DATA', raising=False)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'xdg'))
    return tmp_path

def _put(folder, text=TEXT):
    folder.mkdir(parents=True, exist_ok=True); (folder/'input.txt').write_text(text)
    return folder/'input.txt'

def test_path_order(fake_text, monkeypatch):
    "`path=` first, then `$SLOWLEARN_DATA/tinyshakespeare`, then the user cache."
    cache = _put(fake_text/'xdg'/'slowlearn'/'tinyshakespeare')
    assert tiny_shakespeare_file() == cache
    monkeypatch.setenv('SLOWLEARN_DATA', str(fake_text/'data'))
    assert tiny_shakespeare_file() == cache                             # nothing there: on to the cache
    env = _put(fake_text/'data'/'tinyshakespeare')
    assert tiny_shakespeare_file() == env
    assert tiny_shakespeare_file(path=_put(fake_text/'mine').parent) == fake_text/'mine'/'input.txt'

def test_download_into_cache_through_the_downloader(fake_text, monkeypatch):
    "An empty cache is filled by the downloader, which is asked once; the second call reads the cache."
    calls = []
    def fetch(urls, digest, algo='md5', timeout=30):
        calls.append((list(urls), algo)); return TEXT.encode()
    monkeypatch.setattr(sd, '_fetch', fetch)
    f = tiny_shakespeare_file()
    assert f == fake_text/'xdg'/'slowlearn'/'tinyshakespeare'/'input.txt' and f.read_text() == TEXT
    assert calls == [([sd.SHAKESPEARE_URL], 'sha256')]
    assert tiny_shakespeare_file() == f and len(calls) == 1

def test_download_from_a_url_checks_the_hash(fake_text):
    _put(fake_text/'offline', TEXT)
    assert tiny_shakespeare_file().read_text() == TEXT                  # fetched from the file:// URL
    bad = _put(fake_text/'other', 'not Shakespeare')
    (fake_text/'xdg'/'slowlearn'/'tinyshakespeare'/'input.txt').unlink()
    with pytest.raises(FileNotFoundError, match='sha256'): tiny_shakespeare_file(url=bad.as_uri())
    assert not (fake_text/'xdg'/'slowlearn'/'tinyshakespeare'/'input.txt').exists()   # nothing unverified cached

def test_offline_message_is_one_line_saying_where(fake_text):
    with pytest.raises(FileNotFoundError) as e: tiny_shakespeare_file()
    msg = str(e.value)
    assert '\n' not in msg and 'input.txt' in msg and str(fake_text/'xdg'/'slowlearn'/'tinyshakespeare') in msg
    assert 'path=' in msg and 'SLOWLEARN_DATA' in msg

def test_wrong_file_is_refused(fake_text):
    with pytest.raises(ValueError, match='sha256'): tiny_shakespeare_file(path=_put(fake_text/'bad', TEXT + 'x').parent)
    with pytest.raises(FileNotFoundError, match='file not found'): tiny_shakespeare_file(path=fake_text/'nowhere')

# ---------------------------------------------------------------- tiny Shakespeare: the loaders

def test_loaders_split_and_windows(fake_text):
    dls = tiny_shakespeare(ctx=8, bs=4, path=_put(fake_text/'d').parent, val_bs=5)
    v, n = dls.vocab, int(0.9*len(TEXT))
    assert v.itos == ''.join(sorted(set(TEXT))) and v.decode(v.encode(TEXT)) == TEXT
    for x, y in dls.train:
        assert x.shape == y.shape == (4, 8) or len(x) < 4
        assert torch.equal(x[:, 1:], y[:, :-1])
        for row in x: assert v.decode(row) in TEXT[:n]                   # training windows inside the first 90%
        break
    val = [v.decode(torch.cat([x[i], y[i, -1:]])) for x, y in dls.valid for i in range(len(x))]
    assert val == [TEXT[n + i: n + i + 9] for i in range(0, len(TEXT) - n - 8, 8)]   # the last 10%, consecutive windows

def test_window_loader_resumes_exactly():
    data = torch.arange(100)
    dl = WindowLoader(data, 5, bs=7, shuffle=True, seed=3)
    dl.set_epoch(2); full = [x for x, _ in dl]
    dl.set_epoch(2, start=4)
    assert all(torch.equal(a, b) for a, b in zip(full[4:], [x for x, _ in dl], strict=True))
    starts = torch.randperm(95, generator=torch.Generator().manual_seed(sd.epoch_seed(3, 2)))
    assert torch.equal(torch.cat(full)[:, 0], starts)                  # each start once, in TensorLoader's order

def test_bad_loader_arguments():
    with pytest.raises(ValueError, match='longer than ctx'): WindowLoader(torch.arange(5), 5)
    with pytest.raises(ValueError, match='ctx'): WindowLoader(torch.arange(50), 0)
    with pytest.raises(ValueError, match='bs'): tiny_shakespeare(bs=0)
