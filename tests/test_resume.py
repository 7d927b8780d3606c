"slowlearn.resume: `set_seed` against seeding by hand, and `rng_states` replaying the same draws."
import random
import numpy as np, pytest, torch
from slowlearn.resume import set_seed, rng_states, set_rng_states

# ---- set_seed

def test_set_seed_repeats_python_numpy_and_torch_draws():
    def draws(): return random.random(), np.random.rand(), torch.randn(3).tolist()
    set_seed(3); a = draws()
    random.random(); np.random.rand(); torch.rand(5)
    set_seed(3); assert draws() == a
    random.seed(3); np.random.seed(3); torch.manual_seed(3)       # the three seeds set by hand
    assert draws() == a

def test_set_seed_deterministic_switches_torch_algorithms():
    before = torch.are_deterministic_algorithms_enabled()
    try:
        set_seed(0, deterministic=True); assert torch.are_deterministic_algorithms_enabled()
        set_seed(0); assert torch.are_deterministic_algorithms_enabled()        # None leaves it as it is
        set_seed(0, deterministic=False); assert not torch.are_deterministic_algorithms_enabled()
    finally: torch.use_deterministic_algorithms(before)

@pytest.mark.parametrize('seed,exc', [(-1, ValueError), (2**32, ValueError), (1.5, TypeError), (True, TypeError), ('0', TypeError)])
def test_set_seed_rejects_bad_seeds(seed, exc):
    with pytest.raises(exc, match=r'seed must be (an integer|in \[0, 4294967295\])'): set_seed(seed)

def test_set_seed_takes_numpy_integers():
    set_seed(np.int64(3)); a = torch.rand(2)
    set_seed(3); assert torch.equal(torch.rand(2), a)

# ---- rng_states

@pytest.mark.usefixtures('one_thread')
def test_rng_states_replay_the_same_draws():
    st = rng_states()
    ref = torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)]
    torch.manual_seed(1); np.random.seed(1); random.seed(1)
    set_rng_states(st)
    assert torch.equal(torch.rand(4), ref[0]) and np.array_equal(np.random.rand(4), ref[1])
    assert [random.random() for _ in range(4)] == ref[2]
