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
