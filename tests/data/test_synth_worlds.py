"""Other worlds (data.synth.worlds): the generator's parameters moved, then put back."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from data.synth import model, observe
from data.synth.worlds import other_world


def _parameters():
    return (
        model.GAMMA.copy(),
        copy.deepcopy(model.LOADINGS),
        dict(model.AR),
        dict(model.OBS),
        observe.FACILITY_SHARES,
        model.core_matrix().copy(),
    )


def _assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:5] == b[1:5]
    np.testing.assert_array_equal(a[5], b[5])


def test_a_world_moves_sizes_not_directions_and_is_put_back():
    before = _parameters()
    with other_world(1) as world:
        inside = _parameters()
        nz = before[0] != 0
        np.testing.assert_array_equal(inside[0] != 0, nz)  # no effect appears or vanishes
        ratio = inside[0][nz] / before[0][nz]
        assert ratio.min() >= 0.5 and ratio.max() <= 1.5 and ratio.std() > 0.1
        assert (world.effect_factor_min, world.effect_factor_max) == (ratio.min(), ratio.max())
        assert sum(world.facility_shares) == pytest.approx(1.0)
        assert observe.FACILITY_SHARES == world.facility_shares != before[4]
        assert all(0.3 <= rho <= 0.95 for rho, _ in model.AR.values())
        assert not np.allclose(inside[5], before[5])  # the cached core map follows
    _assert_same(_parameters(), before)
    with other_world(1) as again:
        assert again == world  # seeded
        _assert_same(_parameters(), inside)
    _assert_same(_parameters(), before)


def test_a_world_is_put_back_after_an_error():
    before = _parameters()
    with pytest.raises(RuntimeError), other_world(2):
        raise RuntimeError("generation failed")
    _assert_same(_parameters(), before)


def test_a_ward_of_another_world_differs_and_its_truth_follows():
    from data.synth import SynthConfig, generate

    config = SynthConfig(residents=400, years=2, seed=3)
    base = generate(config)
    with other_world(1):
        other = generate(config)
    again = generate(config)
    cols = ["sbp", "hba1c", "tg"]
    a, b = base.checkups[cols].to_numpy(float), other.checkups[cols].to_numpy(float)
    assert a.shape == b.shape and not np.allclose(a, b, equal_nan=True)
    np.testing.assert_array_equal(a, again.checkups[cols].to_numpy(float))  # put back
    p = [c for c in base.truth.columns if c.startswith("p_true_")]
    assert p and not np.allclose(
        base.truth[p].to_numpy(float), other.truth[p].to_numpy(float), equal_nan=True
    )
