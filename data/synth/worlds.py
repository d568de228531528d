"""Other worlds: the generator with its parameters moved (別パラメータの合成区).

kenshin was built and tuned on one synthetic world. :func:`other_world` moves that world's
parameters, seeded, for the wards generated inside it, so that a check can ask whether what
holds on our ward holds on one whose effect sizes, measurement noise and facilities we did not
tune to:

* every habit → latent effect (``model.GAMMA``) × U(0.5, 1.5), its sign kept (the declared
  medical direction is not in question, the size is);
* every loading of a latent on another × U(0.7, 1.3);
* each latent's year-to-year persistence ± 0.1 (within 0.3-0.95) and its fluctuation
  × U(0.8, 1.25);
* every item's measurement noise × U(0.7, 1.4);
* the facilities' glucose panels (both / FPG only / HbA1c only) drawn from Dirichlet(6, 2, 2).

The truth and its counterfactuals (``p_true_*``) follow the moved parameters. Generation,
not training, must run inside the context; the parameters are restored on exit.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from data.synth import model, observe

__all__ = ["World", "other_world"]


@dataclass(frozen=True)
class World:
    """What :func:`other_world` drew: the range of the habit-effect factors and the panels."""

    seed: int
    effect_factor_min: float
    effect_factor_max: float
    facility_shares: tuple[float, float, float]


def _clear_caches() -> None:
    model.core_matrix.cache_clear()
    model.calibration.cache_clear()


@contextmanager
def other_world(seed: int) -> Iterator[World]:
    """Generate inside this context to draw wards from the world ``seed`` (module doc)."""
    saved = (
        model.GAMMA.copy(),
        copy.deepcopy(model.LOADINGS),
        dict(model.AR),
        dict(model.OBS),
        observe.FACILITY_SHARES,
    )
    rng = np.random.default_rng([20_261_207, seed])
    try:
        nz = model.GAMMA != 0
        factor = rng.uniform(0.5, 1.5, int(nz.sum()))
        model.GAMMA[nz] *= factor
        for parents in model.LOADINGS.values():
            for p in parents:
                parents[p] *= rng.uniform(0.7, 1.3)
        for core, (rho, sd) in list(model.AR.items()):
            rho = float(np.clip(rho + rng.uniform(-0.1, 0.1), 0.3, 0.95))
            model.AR[core] = (rho, sd * rng.uniform(0.8, 1.25))
        for item, (core, sd) in list(model.OBS.items()):
            model.OBS[item] = (core, sd * rng.uniform(0.7, 1.4))
        shares = tuple(float(s) for s in rng.dirichlet((6.0, 2.0, 2.0)))
        observe.FACILITY_SHARES = shares
        _clear_caches()
        yield World(seed, float(factor.min()), float(factor.max()), shares)  # type: ignore[arg-type]
    finally:
        gamma, loadings, ar, obs, observe.FACILITY_SHARES = saved
        model.GAMMA[:] = gamma
        model.LOADINGS.clear()
        model.LOADINGS.update(loadings)
        model.AR.clear()
        model.AR.update(ar)
        model.OBS.clear()
        model.OBS.update(obs)
        _clear_caches()
