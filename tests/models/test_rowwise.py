"""models.rowwise: a row's product does not depend on the rows beside it."""

from __future__ import annotations

import numpy as np

from models.rowwise import rowwise_matmul


def test_each_row_is_the_same_bits_alone_as_among_others():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(9_001, 37)) * rng.lognormal(size=37)
    for b in (rng.normal(size=37), rng.normal(size=(37, 5))):
        whole = rowwise_matmul(a, b)
        np.testing.assert_allclose(whole, a @ b, rtol=1e-12, atol=1e-12)
        for cut in (1, 7, 4096, 5000):
            parts = np.concatenate(
                [rowwise_matmul(a[s : s + cut], b) for s in range(0, 9_001, cut)]
            )
            assert parts.tobytes() == whole.tobytes(), cut
        shuffled = rng.permutation(len(a))
        assert rowwise_matmul(a[shuffled], b).tobytes() == whole[shuffled].tobytes()


def test_a_column_major_input_gives_the_same_bits_row_by_row():
    """A transformer may hand over a column-major matrix; a row's product must still be the
    one it has alone (seen: a blend's risk off by one unit in the last place between blocks)."""
    rng = np.random.default_rng(5)
    a = np.asfortranarray(rng.normal(size=(60, 120)))
    for b in (rng.normal(size=120), rng.normal(size=(120, 4))):
        whole = rowwise_matmul(a, b)
        alone = np.concatenate([rowwise_matmul(a[i : i + 1], b) for i in range(len(a))])
        assert alone.tobytes() == whole.tobytes()
