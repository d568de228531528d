"""Model selection on the validation year (models.member_choice): members, monotonicity, contributions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.baselines import fit_logistic
from models.calibration import fit_calibrator
from models.member_choice import linear_score, select_member

NAMES = ["sbp", "noise", "code", "other"]
CATS = ["code"]
MONO = [1, 0, 0, 0]


def _data(n=4000, seed=0, linear=True):
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [rng.normal(130, 15, n), rng.normal(size=n), rng.integers(1, 4, n), rng.normal(size=n)]
    )
    X[rng.random(n) < 0.1, 0] = np.nan
    sbp = np.nan_to_num(X[:, 0], nan=130.0)
    z = 0.06 * (sbp - 130) + 0.8 * X[:, 3] + 0.3 * (X[:, 2] == 2) - 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype("float64")
    return X, y


def test_linear_contributions_add_up_and_monotone_coefficients_are_clipped():
    X, y = _data()
    y_neg = 1.0 - y  # risk falls as SBP rises: the monotone coefficient must be clipped
    for target, clipped in ((y, ()), (y_neg, ("sbp",))):
        pipe = fit_logistic(X, target, NAMES, CATS)
        lin = linear_score(pipe, X, NAMES, MONO)
        assert lin.clipped == clipped
        c = lin.contributions(X[:300])
        assert c.shape == (300, len(NAMES) + 1)
        np.testing.assert_allclose(c.sum(axis=1), lin.raw(X[:300]), atol=1e-9)
        if not clipped:  # unclipped: the same log-odds as the sklearn pipeline
            np.testing.assert_allclose(lin.raw(X[:300]), pipe.decision_function(X[:300]))
        grid = np.repeat(X[:50], 20, axis=0)
        grid[:, 0] = np.tile(np.linspace(90, 180, 20), 50)
        assert (np.diff(lin.raw(grid).reshape(50, 20), axis=1) >= -1e-12).all()


def _select(z_gbm, y, lin, X, margin=0.002):
    cal = fit_calibrator(z_gbm, y, "sigmoid")
    return select_member("o", z_gbm, y, cal, lin, X, "sigmoid", (0.75, 0.5, 0.25), margin)


def test_selection_prefers_lightgbm_on_ties_and_falls_back_when_it_is_worse():
    X, y = _data(seed=1)
    lin = linear_score(fit_logistic(X, y, NAMES, CATS), X, NAMES, MONO)
    z_lr = lin.raw(X)
    # A "LightGBM" score identical to the LR: every candidate ties → LightGBM kept.
    member, table = _select(z_lr.copy(), y, lin, X)
    assert member.name == "lightgbm" and member.weight == 1.0
    assert list(table["member"]) == ["lightgbm", "blend", "blend", "blend", "logistic"]
    assert table["chosen"].sum() == 1 and bool(table["chosen"].iloc[0])
    # A noisy score: the LR (or a blend leaning on it) must win on validation AUC.
    rng = np.random.default_rng(2)
    noisy = z_lr + rng.normal(0, 3, len(y))
    member, table = _select(noisy, y, lin, X)
    assert member.name in ("blend", "logistic") and member.weight < 1
    chosen = table[table["chosen"]].iloc[0]
    assert chosen["val_auc"] == table["val_auc"].max()
    p = member.calibrator(member.weight * noisy + (1 - member.weight) * z_lr)
    assert abs(p.mean() - y.mean()) < 0.02  # recalibrated on validation
    # Without a linear member only LightGBM is a candidate.
    member, table = _select(noisy, y, None, X)
    assert member.name == "lightgbm" and len(table) == 1


def test_person_split_holds_out_persons_not_years():
    from models.config import SplitConfig
    from models.train import _split

    keys = pd.DataFrame(
        {"pseudonym": np.repeat([f"p{i:04d}" for i in range(600)], 3),
         "fiscal_year": np.tile([2021, 2022, 2023], 600)}
    )  # fmt: skip
    cfg = SplitConfig(group="person", test_person_share=0.3, val_person_share=0.2)
    s = _split(keys, 2022, 1, cfg)
    assert (s[keys["fiscal_year"] == 2023] == "").all()
    used = keys[s != ""]
    per_person = used.assign(s=s[s != ""]).groupby("pseudonym")["s"].nunique()
    assert (per_person == 1).all()  # a person is in exactly one part
    shares = pd.Series(s[s != ""]).value_counts(normalize=True)
    assert abs(shares["test"] - 0.3) < 0.06 and abs(shares["val"] - 0.2) < 0.06
    with pytest.raises(ValueError):
        SplitConfig(group="person", test_person_share=0.6, val_person_share=0.5)
