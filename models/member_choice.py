"""Model selection per outcome on the validation year: LightGBM, logistic regression or a blend.

The rule: the engine must not lose to its own logistic-regression baseline. For each outcome
the candidates are scored on the **validation year** (never the test year):

* ``lightgbm`` — the monotone LightGBM booster alone (weight ``w = 1``);
* ``blend`` — ``w·z_gbm + (1 − w)·z_lr`` for each ``w`` of ``ModelConfig.blend_weights``
  (default 0.75 / 0.5 / 0.25), where ``z_gbm`` is LightGBM's raw log-odds and ``z_lr`` the
  logistic regression's decision function (log-odds);
* ``logistic`` — the logistic regression alone (``w = 0``).

The candidate with the best validation AUC is kept; ties go to LightGBM (a challenger must
beat it by more than ``ModelConfig.select_margin``, default 0 — raise it to demand a margin).
The kept member's score is then calibrated on the validation year like LightGBM's
(models.calibration), so every member returns calibrated probabilities.

**Monotonicity.** LightGBM carries monotone constraints. The logistic member is the run's LR
baseline (models.baselines.fit_logistic, fitted on the training rows) with every coefficient of
a monotone feature's *value* column that goes against the declared direction clipped at 0 (a
negative coefficient would let risk fall as, e.g., SBP rises; a positive one on ``q_smoking``,
−1, would let it rise as a smoker quits; missing-indicator and one-hot columns are not value
columns).
Clipping is a projection, not a refit: the calibrator fitted afterwards on the validation year
repairs the calibration. A positive-weight sum of two non-decreasing scores followed by a
monotone calibrator is non-decreasing, so the property holds for every member.

**Explanations.** :class:`LinearScore` gives exact additive contributions of the linear member,
``coef_k · (z_k − mean_train(z_k))`` summed over the transformed columns of each declared
feature (its standardised value, its missing indicator, its one-hot codes) — the SHAP values
of a linear model with independent features. A member's contributions are
``w · SHAP_lightgbm + (1 − w) · linear contributions`` (bias likewise), so they add up to the
member's raw log-odds exactly as LightGBM's native ``pred_contrib`` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.pipeline import Pipeline

from models.calibration import Calibrator, fit_calibrator
from models.evaluate import auc_or_nan
from models.rowwise import rowwise_matmul

__all__ = ["LinearScore", "Member", "linear_score", "select_member"]

_COL = re.compile(r"^(?:missingindicator_)?x(\d+)")


@dataclass
class LinearScore:
    """A fitted logistic regression as arrays: ``raw = transform(X) @ coef + intercept``."""

    pre: object  # the fitted sklearn ColumnTransformer of models.baselines.fit_logistic
    coef: np.ndarray
    intercept: float
    center: np.ndarray  # mean of each transformed column on the training rows
    owner: np.ndarray  # declared-feature index of each transformed column
    n_features: int
    clipped: tuple[str, ...] = ()  # monotone features whose coefficient was clipped

    def _z(self, X: np.ndarray) -> np.ndarray:
        Z = self.pre.transform(X)
        return Z.toarray() if sparse.issparse(Z) else np.asarray(Z, dtype="float64")

    def raw(self, X: np.ndarray) -> np.ndarray:
        return rowwise_matmul(self._z(X), self.coef) + self.intercept

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """(n, F + 1): per declared feature, then the bias (mean training log-odds)."""
        C = (self._z(X) - self.center) * self.coef
        out = np.zeros((len(X), self.n_features + 1))
        for k in np.unique(self.owner):
            out[:, k] = C[:, self.owner == k].sum(axis=1)
        out[:, -1] = self.intercept + float(self.center @ self.coef)
        return out


def linear_score(
    pipe: Pipeline, X_train: np.ndarray, names: list[str], monotone: list[int]
) -> LinearScore:
    """:class:`LinearScore` of a fitted fit_logistic pipeline, monotone coefficients clipped."""
    pre, lr = pipe.named_steps["pre"], pipe.named_steps["lr"]
    cols = pre.get_feature_names_out()
    owner = np.array([int(_COL.match(c.split("__", 1)[1]).group(1)) for c in cols])
    value_col = np.array([c.startswith("num__x") for c in cols])
    coef = lr.coef_[0].astype("float64").copy()
    direction = np.array([monotone[k] for k in owner]) * value_col
    wrong = direction * coef < 0  # a coefficient against the declared direction
    clipped = tuple(sorted({names[k] for k in owner[wrong]}))
    coef[wrong] = 0.0
    Z = pre.transform(X_train)
    center = np.asarray(Z.mean(axis=0)).ravel()
    return LinearScore(pre, coef, float(lr.intercept_[0]), center, owner, len(names), clipped)


@dataclass
class Member:
    """The model behind one outcome's risk: ``calibrator(w·z_gbm + (1 − w)·z_lr)``."""

    name: str  # "lightgbm" | "blend" | "logistic"
    weight: float  # LightGBM's weight w (1 = LightGBM only, 0 = logistic regression only)
    calibrator: Calibrator
    linear: LinearScore | None = None


def select_member(
    outcome: str,
    z_gbm: np.ndarray,
    y_val: np.ndarray,
    lgbm_calibrator: Calibrator,
    linear: LinearScore | None,
    X_val: np.ndarray,
    calibration: str,
    weights: tuple[float, ...],
    margin: float,
    calibrate: np.ndarray | None = None,
) -> tuple[Member, pd.DataFrame]:
    """The outcome's member chosen on the validation rows, and the table of candidates.

    ``calibrate``: the validation rows a new calibrator is fitted on (the rows the member will
    score, models.train.OutcomeSet.scored); every row when None. The choice uses every row.
    """
    cands: list[tuple[str, float]] = [("lightgbm", 1.0)]
    z_lr = None
    if linear is not None:
        z_lr = linear.raw(X_val)
        cands += [("blend", float(w)) for w in weights] + [("logistic", 0.0)]
    rows = []
    for name, w in cands:
        z = z_gbm if z_lr is None or w == 1.0 else w * z_gbm + (1 - w) * z_lr
        rows.append(
            {"outcome": outcome, "member": name, "weight": w, "val_auc": auc_or_nan(y_val, z)}
        )
    table = pd.DataFrame(rows)
    gbm_auc = table["val_auc"].iloc[0]
    best = 0
    others = table.iloc[1:]
    if len(others) and others["val_auc"].notna().any():
        j = int(others["val_auc"].to_numpy().argmax()) + 1
        if table["val_auc"].iloc[j] > gbm_auc + margin:
            best = j
    table["chosen"] = np.arange(len(table)) == best
    name, w = cands[best]
    if best == 0:
        return Member("lightgbm", 1.0, lgbm_calibrator), table
    assert z_lr is not None
    z = w * z_gbm + (1 - w) * z_lr
    k = np.ones(len(z), dtype=bool) if calibrate is None else calibrate
    return Member(name, w, fit_calibrator(z[k], y_val[k], calibration), linear), table
