"Tests for slowlearn.data: reproducible batching, IDX parsing, Fashion-MNIST loading and its errors."
import gzip, hashlib, os, struct
from pathlib import Path
import numpy as np, pytest, torch
from torch.utils.data import DataLoader, TensorDataset
import slowlearn.data as sd
from slowlearn.data import DataLoaders, TensorLoader, fashion_mnist, read_idx, fashion_mnist_folder, fashion_mnist_cache_dir
from slowlearn.data import split_batch, find_bs, map_input, map_tensors

# ---------------------------------------------------------------- helpers (independent of the code under test)

def idx_bytes(a):
    "IDX encoding of array `a`, written from the format description: 0, 0, type code, ndim, big-endian dims, data."
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C,
            np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}[a.dtype]
    return struct.pack('>BBBB', 0, 0, code, a.ndim) + struct.pack(f'>{a.ndim}I', *a.shape) + a.astype(a.dtype.newbyteorder('>')).tobytes()

def write_gz(path, raw): Path(path).write_bytes(gzip.compress(raw)); return Path(path)

def fake_arrays(n_train=20, n_valid=10, seed=0):
    rng = np.random.default_rng(seed)
    return {'train-images-idx3-ubyte.gz': rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            'train-labels-idx1-ubyte.gz': rng.integers(0, 10, n_train, dtype=np.uint8),
            't10k-images-idx3-ubyte.gz': rng.integers(0, 256, (n_valid, 28, 28), dtype=np.uint8),
            't10k-labels-idx1-ubyte.gz': rng.integers(0, 10, n_valid, dtype=np.uint8)}

def write_folder(folder, arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items(): write_gz(folder/name, idx_bytes(a))
    return folder

@pytest.fixture
def fake(tmp_path):
    arrays = fake_arrays()
    return write_folder(tmp_path/'fashion_mnist', arrays), arrays

def batches(dl): return [tuple(t.clone() for t in b) for b in dl]
def xs(bs): return [b[0].tolist() for b in bs]

def loader(n=23, bs=5, seed=0, shuffle=True):
    x = torch.arange(n)
    return TensorLoader(x, x*10, bs=bs, shuffle=shuffle, seed=seed)

# ---------------------------------------------------------------- TensorLoader / DataLoaders

def test_same_seed_and_epoch_give_same_order():
    a, b = loader(seed=3), loader(seed=3)
    a.set_epoch(4); b.set_epoch(4)
    assert xs(a) == xs(b)

def test_different_seeds_give_different_orders():
    assert xs(loader(seed=0)) != xs(loader(seed=1))

def test_seeds_differing_only_above_32_bits_differ():
    assert xs(loader(seed=5)) != xs(loader(seed=5 + 2**32))

def test_successive_iterations_are_successive_epochs():
    dl = loader()
    e0, e1, e2 = xs(dl), xs(dl), xs(dl)
    assert e0 != e1 and e1 != e2 and e0 != e2
    for e, ref in enumerate([e0, e1, e2]):
        dl.set_epoch(e); assert xs(dl) == ref
    e3 = xs(dl)                                     # the iteration after epoch 2 is epoch 3
    dl.set_epoch(3); assert xs(dl) == e3 and e3 not in (e0, e1, e2)

def test_every_index_exactly_once_per_epoch_and_pairs_kept():
    dl = loader(n=37, bs=8)
    for _ in range(4):
        bs = batches(dl)
        x = torch.cat([b[0] for b in bs]); y = torch.cat([b[1] for b in bs])
        assert sorted(x.tolist()) == list(range(37))
        assert torch.equal(y, x*10)

def test_shuffle_is_a_permutation_not_identity():
    assert sum(xs(loader(n=100, bs=100)), []) != list(range(100))

@pytest.mark.parametrize('k', [0, 1, 3, 5])
def test_set_epoch_start_yields_tail_of_epoch(k):
    ref = loader(seed=7); ref.set_epoch(2); full = xs(ref)
    assert len(full) == 5
    dl = loader(seed=7); dl.set_epoch(2, start=k)
    assert xs(dl) == full[k:]
    ref.set_epoch(3); assert xs(dl) == xs(ref)      # the next iteration is epoch 3 from its start

class CountingTensor(torch.Tensor):
    "Counts gathers (indexing or index_select) made on it."
    calls = 0
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.__getitem__, torch.Tensor.index_select, torch.index_select): cls.calls += 1
        return super().__torch_function__(func, types, args, kwargs or {})

def test_set_epoch_start_skips_batches_without_computing_them():
    x = torch.arange(40).as_subclass(CountingTensor)
    dl = TensorLoader(x, bs=4, shuffle=True)
    dl.set_epoch(1, start=7)
    CountingTensor.calls = 0
    assert len(list(dl)) == 3
    assert CountingTensor.calls == 3

def test_set_epoch_validates():
    dl = loader(n=10, bs=4)
    with pytest.raises(ValueError, match='start'): dl.set_epoch(0, start=4)
    with pytest.raises(ValueError, match='start'): dl.set_epoch(0, start=-1)
    with pytest.raises(ValueError, match='epoch'): dl.set_epoch(-1)
    with pytest.raises(TypeError, match='epoch'): dl.set_epoch(1.5)
    dl.set_epoch(0, start=3); assert list(dl) == []

def test_global_rng_untouched():
    dls = DataLoaders.from_tensors(torch.randn(50, 2), torch.arange(50), torch.randn(9, 2), torch.arange(9), bs=8)
    state = torch.random.get_rng_state()
    for _ in range(3): list(dls.train); list(dls.valid)
    assert torch.equal(torch.random.get_rng_state(), state)

def test_last_partial_batch_kept():
    dl = loader(n=10, bs=4, shuffle=False)
    assert len(dl) == 3 and dl.bs == 4
    assert [len(b[0]) for b in dl] == [4, 4, 2]
    assert len(loader(n=8, bs=4)) == 2

def test_valid_not_shuffled():
    xv, yv = torch.randn(13, 3), torch.arange(13)
    dls = DataLoaders.from_tensors(torch.randn(20, 3), torch.arange(20), xv, yv, bs=5, seed=1)
    for e in range(3):
        if e == 2: dls.valid.set_epoch(5)
        bs = batches(dls.valid)
        assert [len(b[0]) for b in bs] == [5, 5, 3]
        assert torch.equal(torch.cat([b[0] for b in bs]), xv) and torch.equal(torch.cat([b[1] for b in bs]), yv)

def test_from_tensors_shuffle_false_and_val_bs():
    dls = DataLoaders.from_tensors(torch.arange(10), torch.arange(10), torch.arange(7), torch.arange(7), bs=4, shuffle=False, val_bs=3)
    assert xs(dls.train) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert (dls.train.bs, dls.valid.bs, len(dls.valid)) == (4, 3, 3)

def test_batches_match_plain_indexing():
    x, y = torch.randn(30, 1, 4, 4), torch.randint(0, 10, (30,))
    dl = TensorLoader(x, y, bs=8, shuffle=True, seed=2)
    dl.set_epoch(6); order = dl.order(6)
    for i, (xb, yb) in enumerate(dl):
        idx = order[i*8:(i+1)*8]
        assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])

def test_epoch_order_is_randperm_from_a_generator_seeded_by_seed_and_epoch():
    "Epoch e's batches are the hand-written shuffled loop's, with `randperm` drawn from SeedSequence((seed, e))."
    x, y = torch.arange(50), torch.arange(50) * 2
    dl = TensorLoader(x, y, bs=16, shuffle=True, seed=5)
    for e in range(3):
        g = torch.Generator().manual_seed(int(np.random.SeedSequence((5, e)).generate_state(1)[0]))
        perm = torch.randperm(50, generator=g)
        assert [b[0].tolist() for b in dl] == [perm[i:i+16].tolist() for i in range(0, 50, 16)]

def test_unshuffled_batches_are_slices():
    x, y = torch.randn(50, 3), torch.arange(50)
    got = list(TensorLoader(x, y, bs=16))
    assert len(got) == 4 and all(torch.equal(xb, x[i:i+16]) and torch.equal(yb, y[i:i+16]) for (xb, yb), i in zip(got, range(0, 50, 16)))

def test_dataloaders_accepts_any_iterable():
    ds = TensorDataset(torch.randn(10, 2), torch.arange(10))
    dls = DataLoaders(DataLoader(ds, batch_size=4), [(torch.zeros(2, 2), torch.zeros(2))])
    assert len(list(dls.train)) == 3 and len(list(dls.valid)) == 1
    with pytest.raises(TypeError, match='valid'): DataLoaders(dls.train, 3)

def test_tensorloader_bad_arguments():
    with pytest.raises(ValueError, match='bs'): TensorLoader(torch.arange(3), bs=0)
    with pytest.raises(TypeError, match='bs'): TensorLoader(torch.arange(3), bs=2.0)
    with pytest.raises(ValueError, match='seed'): TensorLoader(torch.arange(3), seed=-1)
    with pytest.raises(ValueError, match='same length'): TensorLoader(torch.arange(3), torch.arange(4))

# ---------------------------------------------------------------- IDX parsing

@pytest.mark.parametrize('a', [np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.array([9, 0, 255], dtype=np.uint8),
                               np.array([-5, 300, 7], dtype=np.int16), np.array([[1.5, -2.25]], dtype=np.float32),
                               np.array([-1, 2**30], dtype=np.int32), np.zeros((0, 28, 28), dtype=np.uint8)])
def test_idx_round_trip(tmp_path, a):
    got = read_idx(write_gz(tmp_path/'a.gz', idx_bytes(a)))
    assert got.shape == a.shape and np.array_equal(got.numpy(), a)

def test_idx_plain_file_and_magic_numbers(tmp_path):
    imgs, labels = np.zeros((2, 28, 28), np.uint8), np.array([3, 1], np.uint8)
    (tmp_path/'imgs').write_bytes(idx_bytes(imgs))
    assert read_idx(tmp_path/'imgs', 2051).shape == (2, 28, 28)
    assert read_idx(write_gz(tmp_path/'l.gz', idx_bytes(labels)), 2049).tolist() == [3, 1]

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothere.gz'): read_idx(tmp_path/'nothere.gz')

def test_truncated_gzip(tmp_path):
    gz = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))
    (tmp_path/'cut.gz').write_bytes(gz[:len(gz)//2])
    with pytest.raises(ValueError, match='cut.gz.*gzip'): read_idx(tmp_path/'cut.gz')

def test_bad_gzip(tmp_path):
    (tmp_path/'bad.gz').write_bytes(b'this is not gzip data at all')
    with pytest.raises(ValueError, match='bad.gz.*gzip'): read_idx(tmp_path/'bad.gz')

def test_corrupt_gzip_crc(tmp_path):
    gz = bytearray(gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8))))
    gz[-6] ^= 0xFF   # flip a CRC32 byte in the gzip trailer
    (tmp_path/'crc.gz').write_bytes(bytes(gz))
    with pytest.raises(ValueError, match='crc.gz'): read_idx(tmp_path/'crc.gz')

def test_wrong_magic(tmp_path):
    f = write_gz(tmp_path/'labels.gz', idx_bytes(np.arange(5, dtype=np.uint8)))
    with pytest.raises(ValueError, match=r'labels.gz.*magic number 2049.*2051'): read_idx(f, 2051)

def test_not_an_idx_file(tmp_path):
    f = write_gz(tmp_path/'junk.gz', b'\x12\x34\x56\x78' + bytes(20))
    with pytest.raises(ValueError, match='junk.gz.*magic'): read_idx(f)
    f = write_gz(tmp_path/'tiny.gz', b'\0\0')
    with pytest.raises(ValueError, match='tiny.gz'): read_idx(f)

@pytest.mark.parametrize('delta', [-1, -100, 5])
def test_size_does_not_match_header(tmp_path, delta):
    raw = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    raw = raw[:delta] if delta < 0 else raw + bytes(delta)
    f = write_gz(tmp_path/'imgs.gz', raw)
    with pytest.raises(ValueError, match=r'imgs.gz.*\(3, 28, 28\)'): read_idx(f, 2051)

def test_truncated_header(tmp_path):
    f = write_gz(tmp_path/'hdr.gz', struct.pack('>BBBB', 0, 0, 8, 3) + struct.pack('>I', 60000))
    with pytest.raises(ValueError, match='hdr.gz'): read_idx(f)

# ---------------------------------------------------------------- fashion_mnist from a folder

def test_fashion_mnist_from_folder(fake):
    folder, arrays = fake
    dls = fashion_mnist(bs=8, path=folder, normalize=False)
    x = np.concatenate([b[0].numpy() for b in dls.valid]); y = np.concatenate([b[1].numpy() for b in dls.valid])
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (10, 1, 28, 28)
    np.testing.assert_allclose(x[:, 0], arrays['t10k-images-idx3-ubyte.gz'] / 255, rtol=1e-6)
    assert np.array_equal(y, arrays['t10k-labels-idx1-ubyte.gz'])
    xb, yb = next(iter(dls.train))
    assert xb.shape == (8, 1, 28, 28) and (len(dls.train), len(dls.valid)) == (3, 2)

def test_fashion_mnist_normalizes_with_train_statistics(fake):
    folder, arrays = fake
    tr, va = arrays['train-images-idx3-ubyte.gz'] / 255, arrays['t10k-images-idx3-ubyte.gz'] / 255
    mean, std = tr.mean(), tr.std(ddof=1)
    dls = fashion_mnist(bs=10, path=folder)
    xv = torch.cat([b[0] for b in dls.valid]).numpy()
    np.testing.assert_allclose(xv[:, 0], (va - mean) / std, rtol=1e-4, atol=1e-5)
    xt = torch.cat([b[0] for b in dls.train])
    assert abs(xt.mean().item()) < 1e-5 and abs(xt.std().item() - 1) < 1e-5

def test_fashion_mnist_train_order_follows_seed(fake):
    folder, _ = fake
    a, b, c = (fashion_mnist(bs=4, path=folder, seed=s) for s in (0, 0, 1))
    ya, yb, yc = ([t[1].tolist() for t in d.train] for d in (a, b, c))
    assert ya == yb and ya != yc

def test_folder_is_not_checksum_verified(fake):
    folder, _ = fake
    md5 = hashlib.md5((folder/'t10k-labels-idx1-ubyte.gz').read_bytes()).hexdigest()
    assert md5 != sd.FASHION_MNIST_FILES['t10k-labels-idx1-ubyte.gz']
    assert len(fashion_mnist(path=folder).valid) == 1

def test_missing_file_in_folder(fake):
    folder, _ = fake
    (folder/'t10k-labels-idx1-ubyte.gz').unlink()
    with pytest.raises(FileNotFoundError, match='t10k-labels-idx1-ubyte.gz'): fashion_mnist(path=folder)

def test_image_label_count_mismatch(tmp_path):
    arrays = fake_arrays()
    arrays['train-labels-idx1-ubyte.gz'] = arrays['train-labels-idx1-ubyte.gz'][:19]
    folder = write_folder(tmp_path/'f', arrays)
    with pytest.raises(ValueError, match=r'train-images-idx3-ubyte.gz.*20.*train-labels-idx1-ubyte.gz.*19'): fashion_mnist(path=folder)

def test_images_in_labels_file(tmp_path):
    arrays = fake_arrays()
    arrays['t10k-labels-idx1-ubyte.gz'] = arrays['t10k-images-idx3-ubyte.gz']
    folder = write_folder(tmp_path/'f', arrays)
    with pytest.raises(ValueError, match='t10k-labels-idx1-ubyte.gz.*magic number 2051.*2049'): fashion_mnist(path=folder)

def test_truncated_file_in_folder(fake):
    folder, _ = fake
    f = folder/'train-images-idx3-ubyte.gz'
    f.write_bytes(f.read_bytes()[:-20])
    with pytest.raises(ValueError, match='train-images-idx3-ubyte.gz'): fashion_mnist(path=folder)

def test_label_out_of_range(tmp_path):
    arrays = fake_arrays(); arrays['t10k-labels-idx1-ubyte.gz'][3] = 10
    folder = write_folder(tmp_path/'f', arrays)
    with pytest.raises(ValueError, match='t10k-labels-idx1-ubyte.gz.*10'): fashion_mnist(path=folder)

def test_fashion_mnist_bad_bs():
    with pytest.raises(ValueError, match='bs'): fashion_mnist(bs=0)

# ---------------------------------------------------------------- where the files are found

def test_slowlearn_data_env(fake, monkeypatch):
    folder, _ = fake   # tmp_path/'fashion_mnist'
    root = folder.parent/'root'; (root/'fashion_mnist').mkdir(parents=True)
    for f in folder.iterdir(): (root/'fashion_mnist'/f.name).write_bytes(f.read_bytes())
    monkeypatch.setenv('SLOWLEARN_DATA', str(root))
    assert fashion_mnist_folder() == root/'fashion_mnist'
    assert len(fashion_mnist(bs=4).valid) == 3
    monkeypatch.setenv('SLOWLEARN_DATA', str(folder))   # pointing straight at the files also works
    assert fashion_mnist_folder() == folder
    assert fashion_mnist_folder(path=root/'fashion_mnist') == root/'fashion_mnist'   # path= wins

def test_slowlearn_data_without_files(tmp_path, monkeypatch):
    monkeypatch.setenv('SLOWLEARN_DATA', str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f'{tmp_path/"fashion_mnist"}.*train-images-idx3-ubyte.gz'): fashion_mnist()

def test_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'xdg'))
    assert fashion_mnist_cache_dir() == tmp_path/'xdg'/'slowlearn'/'fashion_mnist'
    monkeypatch.delenv('XDG_CACHE_HOME'); monkeypatch.setenv('HOME', str(tmp_path/'home'))
    assert fashion_mnist_cache_dir() == tmp_path/'home'/'.cache'/'slowlearn'/'fashion_mnist'

@pytest.fixture
def no_data_env(tmp_path, monkeypatch):
    "No SLOWLEARN_DATA, an empty cache under tmp_path, and mirrors that can't be reached."
    monkeypatch.delenv('SLOWLEARN_DATA', raising=False)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'xdg'))
    monkeypatch.setattr(sd, 'FASHION_MNIST_MIRRORS', ((tmp_path/'offline').as_uri() + '/',))
    return tmp_path/'xdg'/'slowlearn'/'fashion_mnist'

def test_offline_download_error(no_data_env):
    with pytest.raises(FileNotFoundError) as e: fashion_mnist()
    msg = str(e.value)
    for name in sd.FASHION_MNIST_FILES: assert name in msg
    assert str(no_data_env) in msg and 'SLOWLEARN_DATA' in msg and 'path=' in msg
    assert '\n' not in msg   # one line, so a CLI can print it as is

def test_download_into_cache(tmp_path, no_data_env, monkeypatch):
    mirror = write_folder(tmp_path/'offline', fake_arrays())
    md5s = {n: hashlib.md5((mirror/n).read_bytes()).hexdigest() for n in sd.FASHION_MNIST_FILES}
    monkeypatch.setattr(sd, 'FASHION_MNIST_FILES', md5s)
    dls = fashion_mnist(bs=4)
    assert len(dls.valid) == 3
    for n in md5s: assert (no_data_env/n).read_bytes() == (mirror/n).read_bytes()
    for f in mirror.iterdir(): f.unlink()            # second call: served from the cache, no download
    assert len(fashion_mnist(bs=4).train) == 5

def test_download_rejects_bad_checksum(tmp_path, no_data_env):
    write_folder(tmp_path/'offline', fake_arrays())   # not the official files
    with pytest.raises(FileNotFoundError, match='md5'): fashion_mnist()
    assert not any(no_data_env.iterdir())            # nothing unverified left in the cache

# ---------------------------------------------------------------- the real data

def real_folder():
    env = os.environ.get('SLOWLEARN_DATA')
    for d in ([Path(env)/'fashion_mnist', Path(env)] if env else []) + [Path(__file__).resolve().parents[2]/'shared'/'data'/'fashion_mnist']:
        if (d/'train-images-idx3-ubyte.gz').is_file(): return d
    pytest.skip('no Fashion-MNIST folder (set SLOWLEARN_DATA)')

def test_real_fashion_mnist():
    dls = fashion_mnist(path=real_folder())
    xt, yt = dls.train.tensors; xv, yv = dls.valid.tensors
    assert (xt.shape, xv.shape, yt.shape, yv.shape) == ((60000, 1, 28, 28), (10000, 1, 28, 28), (60000,), (10000,))
    assert xt.dtype == xv.dtype == torch.float32 and yt.dtype == yv.dtype == torch.int64
    assert torch.equal(torch.bincount(yt), torch.full((10,), 6000)) and torch.equal(torch.bincount(yv), torch.full((10,), 1000))
    assert abs(xt.mean().item()) < 1e-4 and abs(xt.std().item() - 1) < 1e-4
    xb, yb = next(iter(dls.train))
    assert xb.shape == (512, 1, 28, 28) and (len(dls.train), len(dls.valid)) == (118, 20)
    big = fashion_mnist(path=real_folder(), val_bs=2500)      # validation in larger batches (no gradients to keep)
    assert [len(b[0]) for b in big.valid] == [2500] * 4 and len(big.train) == 118
    with pytest.raises(ValueError, match='val_bs'): fashion_mnist(path=real_folder(), val_bs=0)

# ---------------------------------------------------------------- a validation set held out from the training images

def test_holdout_split_partitions_and_is_fixed_by_its_seed():
    tr, va = sd.holdout_split(100, 25, seed=3)
    assert len(va) == 25 and sorted(tr.tolist() + va.tolist()) == list(range(100))
    assert torch.equal(sd.holdout_split(100, 0.25, seed=3)[1], va)              # a fraction means the same count
    assert torch.equal(sd.holdout_split(100, 25, seed=3)[1], va) and not torch.equal(sd.holdout_split(100, 25, seed=4)[1], va)

@pytest.mark.parametrize('valid,msg', [(0, r'valid must be an integer in \[1, 99\]'), (100, r'valid must be an integer in \[1, 99\]'),
                                       (1.0, r'valid must be a fraction in \(0, 1\)'), (0., 'fraction'), ('10', 'valid must be an integer')])
def test_holdout_split_rejects_bad_sizes(valid, msg):
    with pytest.raises((ValueError, TypeError), match=msg): sd.holdout_split(100, valid)

def test_fashion_mnist_valid_holds_out_training_images_and_keeps_the_test_set(fake):
    folder, arrays = fake
    dls = fashion_mnist(path=folder, bs=4, valid=5, split_seed=1)
    tr, va = sd.holdout_split(20, 5, seed=1)
    raw_x, raw_y = arrays['train-images-idx3-ubyte.gz'], arrays['train-labels-idx1-ubyte.gz']
    assert torch.equal(dls.valid.tensors[1], torch.from_numpy(raw_y[va.numpy()]).long())
    assert torch.equal(dls.train.tensors[1], torch.from_numpy(raw_y[tr.numpy()]).long())
    assert torch.equal(dls.test.tensors[1], torch.from_numpy(arrays['t10k-labels-idx1-ubyte.gz']).long())
    # standardised with the mean and std of the 15 training images only (the held-out ones don't leak in)
    x = torch.from_numpy(raw_x).float().div(255)
    mean, std = x[tr].mean(), x[tr].std()
    torch.testing.assert_close(dls.valid.tensors[0][:, 0], (x[va] - mean) / std)
    torch.testing.assert_close(dls.test.tensors[0][:, 0], (torch.from_numpy(arrays['t10k-images-idx3-ubyte.gz']).float().div(255) - mean) / std)
    assert dls.train.shuffle and not dls.valid.shuffle and not dls.test.shuffle
    assert 'test=TensorLoader(n=10' in repr(dls)
    assert fashion_mnist(path=folder).test is None                               # the default: the test set is `valid`

def test_data_loaders_test_slot_must_be_batches():
    with pytest.raises(TypeError, match='test must be an iterable'): DataLoaders([], [], test=3)

def test_real_fashion_mnist_holdout():
    dls = fashion_mnist(path=real_folder(), valid=10_000)
    assert (dls.train.n, dls.valid.n, dls.test.n) == (50_000, 10_000, 10_000)
    counts = torch.bincount(dls.valid.tensors[1])
    assert counts.sum() == 10_000 and counts.min() > 900 and counts.max() < 1100   # close to 1,000 per class

def test_split_batch_finds_inputs_and_targets_in_tuples_dicts_and_tensors():
    a, b, y = torch.zeros(5, 2), torch.ones(5, 3), torch.arange(5)
    assert split_batch([a, y]) == ((a,), (y,)) and split_batch((a, b, y), n_inp=2) == ((a, b), (y,))
    xb, yb = split_batch(dict(ids=a, mask=b, labels=y))
    assert list(xb) == ['ids', 'mask'] and yb == (y,)
    xb, yb = split_batch(dict(ids=a, w=b, y=y), target_keys=('y', 'w'))     # in the order of target_keys
    assert list(xb) == ['ids'] and yb == (y, b)
    assert split_batch(a) == ((a,), ()) and split_batch(dict(ids=a)) == (dict(ids=a), ())
    assert [find_bs(o) for o in ((a, y), dict(m=dict(x=b[:3])), [None, (y[:2],)])] == [5, 3, 2]
    with pytest.raises(ValueError, match='batch size of a batch without tensors'): find_bs(dict(a=1))

def test_map_input_changes_the_first_input_only():
    a, y = torch.zeros(4, 2), torch.arange(4)
    assert torch.equal(map_input((a, y), lambda t: t + 1)[0], a + 1) and map_input((a, y), lambda t: t)[1] is y
    b = map_input(dict(labels=y, ids=a), lambda t: t + 1)
    assert torch.equal(b['ids'], a + 1) and b['labels'] is y
    with pytest.raises(ValueError, match='targets'): map_input(dict(labels=y), lambda t: t)
    m = map_tensors(lambda t: t[:1], [dict(a=a), (y, 'x')])
    assert m[0]['a'].shape == (1, 2) and torch.equal(m[1][0], y[:1]) and m[1][1] == 'x' and type(m[1]) is tuple

def test_data_loaders_batch_format_arguments_are_checked():
    assert DataLoaders([], [], n_inp=2, target_keys='y').target_keys == ('y',)
    with pytest.raises(ValueError, match='n_inp must be an integer >= 1'): DataLoaders([], [], n_inp=0)
    with pytest.raises(TypeError, match='n_inp must be an integer'): DataLoaders([], [], n_inp='1')
    with pytest.raises(TypeError, match='target_keys must be a string or a tuple of strings'): DataLoaders([], [], target_keys=[1])
