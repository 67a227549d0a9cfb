"""Reproducible randomness: explicit seeds and the session generator (manual_seed)."""
import numpy as np


def test_manual_seed_makes_a_sequence_of_draws_repeatable(td):
    td.manual_seed(1234)
    first = [td.rand(5).numpy(), td.randn(2, 3).numpy()]
    td.manual_seed(1234)
    second = [td.rand(5).numpy(), td.randn(2, 3).numpy()]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    # Consecutive draws differ, and so does another seed.
    assert not np.array_equal(first[0], td.rand(5).numpy())
    td.manual_seed(1235)
    assert not np.array_equal(first[0], td.rand(5).numpy())


def test_manual_seed_is_per_session(td, server):
    import tensord

    td.manual_seed(7)
    expected = td.rand(4).numpy()
    with tensord.connect(server.address) as other:
        other.manual_seed(7)
        td.manual_seed(7)
        np.testing.assert_array_equal(other.rand(4).numpy(), expected)
        np.testing.assert_array_equal(td.rand(4).numpy(), expected)


def test_an_explicit_seed_does_not_consume_the_generator(td):
    td.manual_seed(99)
    a = td.rand(3).numpy()
    td.manual_seed(99)
    td.rand(3, seed=5)
    np.testing.assert_array_equal(td.rand(3).numpy(), a)
