"""Baselines on the same split, every run: logistic regression and a points score (ベースライン).

* :func:`fit_logistic` — L2 logistic regression on the same declared features: numeric columns
  median-imputed with missing indicators and standardised, nominal codes one-hot encoded.
* :func:`fit_points` — an integer points score in the manner of the published Japanese risk
  scores (e.g. the JPHC Study diabetes score, Nanri et al., PLoS One 2015; the Suita / Hisayama
  scores for hypertension and cardiovascular disease; the JDS / 特定健診 階層化 logic of adding
  points per risk band). Those scores give integer points per band of a few routinely measured
  items (age, sex, BMI / waist, blood pressure, glucose, smoking, drinking, family history) and
  read the risk off the total. Family history is not in the 特定健診 questionnaire, so it is
  absent here. Points are fitted, not copied: a logistic regression on one-hot bands of the
  outcome's items (:data:`POINT_ITEMS`, training rows), then each coefficient divided by the
  largest absolute coefficient / 10 and rounded (Sullivan's method, 10 points for the strongest
  band). The total is mapped back to a probability by a one-variable logistic fit on the
  training rows (a published score's look-up table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from data.outcomes import OUTCOME_DECLARATIONS
from models.rowwise import rowwise_matmul

__all__ = ["POINT_BANDS", "POINT_ITEMS", "PointsScore", "fit_logistic", "fit_points"]

#: Band cut points per feature (left-closed bands; missing is a band of its own).
POINT_BANDS: dict[str, tuple[float, ...]] = {
    "age": (50, 60, 65),
    "bmi": (23, 25, 27.5, 30),
    "waist_cm": (85, 90, 95),
    "sbp": (120, 130, 135),
    "dbp": (80, 85),
    "hba1c": (5.6, 6.0, 6.2),
    "fpg": (100, 110, 118),
    "ldl": (100, 120, 130),
    "tg": (150, 200),
    "hdl": (40, 50),
    "egfr": (70, 80, 90),
    "urine_protein": (2,),
    "alt": (31, 41),
    "ggt": (51, 81),
    "alcohol_g_per_day": (20, 40),
    "sex": (2,),
    "current_smoker": (1,),
    "q_med_bp": (2,),
    "uric_acid": (6.0, 7.0, 8.0),
}

#: Items of each outcome's points score (the relevant 特定健診 items; data.outcomes).
POINT_ITEMS: dict[str, tuple[str, ...]] = {o.name: o.baseline_items for o in OUTCOME_DECLARATIONS}
_unbanded = sorted({i for items in POINT_ITEMS.values() for i in items} - set(POINT_BANDS))
if _unbanded:
    raise ValueError(f"points baseline: declare band cuts (POINT_BANDS) for {_unbanded}")


def fit_logistic(
    X: np.ndarray,
    y: np.ndarray,
    names: list[str],
    categorical: list[str],
    seed: int = 0,
    C: float = 1.0,
    items: tuple[str, ...] | None = None,
) -> Pipeline:
    """Fitted sklearn pipeline; ``predict_proba(X)[:, 1]`` gives the risk.

    ``C``: inverse L2 strength; ``items``: use only these declared features (default: all).
    """
    use = set(range(len(names))) if items is None else {names.index(n) for n in items}
    cat_idx = [names.index(c) for c in categorical if names.index(c) in use]
    num_idx = [i for i in range(len(names)) if i not in cat_idx and i in use]
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True,
                                                keep_empty_features=True),
                                  StandardScaler()), num_idx),
            ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value=-1,
                                                keep_empty_features=True),
                                  OneHotEncoder(handle_unknown="ignore")), cat_idx),
        ]
    )  # fmt: skip
    lr = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    return Pipeline([("pre", pre), ("lr", lr)]).fit(X, y)


def _bands(X: np.ndarray, names: list[str], items: tuple[str, ...]) -> np.ndarray:
    """One-hot band indicators (band 0 of each item and 'missing' as reference-free columns)."""
    cols = []
    for item in items:
        x = X[:, names.index(item)]
        cuts = POINT_BANDS[item]
        band = np.searchsorted(np.asarray(cuts), x, side="right")  # NaN → len(cuts)
        band = np.where(np.isnan(x), len(cuts) + 1, band)
        cols += [band == b for b in range(1, len(cuts) + 2)]  # band 0 is the reference
    return np.column_stack(cols).astype("float64")


@dataclass
class PointsScore:
    """Integer points per band; ``score`` = total points, ``predict_proba`` = risk."""

    items: tuple[str, ...]
    names: list[str]
    points: np.ndarray
    a: float = 0.0
    b: float = 1.0

    def score(self, X: np.ndarray) -> np.ndarray:
        return rowwise_matmul(_bands(X, self.names, self.items), self.points)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a + self.b * self.score(X))))

    def table(self) -> list[tuple[str, str, int]]:
        """(item, band, points) rows for a model card; 'missing' is the last band."""
        rows, j = [], 0
        for item in self.items:
            cuts = POINT_BANDS[item]
            labels = [f"≥{c:g}" for c in cuts] + ["missing"]
            for lab in labels:
                rows.append((item, lab, int(self.points[j])))
                j += 1
        return rows


def fit_points(X: np.ndarray, y: np.ndarray, names: list[str], outcome: str) -> PointsScore:
    """Points score for ``outcome`` fitted on training rows (see module docstring)."""
    items = POINT_ITEMS[outcome]
    B = _bands(X, names, items)
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(B, y)
    beta = lr.coef_[0]
    unit = max(float(np.abs(beta).max()) / 10.0, 1e-9)
    points = np.round(beta / unit)
    ps = PointsScore(items, names, points)
    s = ps.score(X).reshape(-1, 1)
    cal = LogisticRegression(C=1e6, max_iter=1000).fit(s, y)
    ps.a, ps.b = float(cal.intercept_[0]), float(cal.coef_[0, 0])
    return ps
