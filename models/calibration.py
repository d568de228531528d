"""Monotone probability calibrators (確率の較正), fitted on held-out rows.

Both map the booster's raw log-odds to a probability with a non-decreasing function, so the
calibrated risk keeps the booster's monotone constraints and its ranking (isotonic may tie).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

__all__ = ["Calibrator", "fit_calibrator", "shift_to_mean"]


@dataclass
class Calibrator:
    """``method`` 'isotonic' (step function) or 'sigmoid' (Platt: σ(a + b·raw), b ≥ 0)."""

    method: str
    isotonic: IsotonicRegression | None = None
    a: float = 0.0
    b: float = 1.0

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype="float64")
        if self.method == "isotonic":
            assert self.isotonic is not None
            return np.clip(self.isotonic.predict(raw), 1e-6, 1 - 1e-6)
        return 1.0 / (1.0 + np.exp(-(self.a + self.b * raw)))

    def matching_mean(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        """This sigmoid with its intercept moved so that its mean risk over ``raw`` equals
        the rate of ``y`` (calibration-in-the-large on more rows; the slope is kept)."""
        if self.method != "sigmoid" or not 0 < np.mean(y) < 1:
            return self
        z = self.a + self.b * np.asarray(raw, dtype="float64")
        return Calibrator("sigmoid", a=self.a + shift_to_mean(z, float(np.mean(y))), b=self.b)


def shift_to_mean(z: np.ndarray, target: float) -> float:
    """The log-odds shift s with mean σ(z + s) = ``target`` (Newton; the mean rises with s)."""
    shift = 0.0
    for _ in range(50):
        q = 1.0 / (1.0 + np.exp(-(z + shift)))
        step = (target - q.mean()) / max(float((q * (1 - q)).mean()), 1e-12)
        shift += step
        if abs(step) < 1e-10:
            break
    return float(shift)


def fit_calibrator(raw: np.ndarray, y: np.ndarray, method: str) -> Calibrator:
    """Fit on held-out raw scores ``raw`` (log-odds) and labels ``y`` (0/1)."""
    raw = np.asarray(raw, dtype="float64")
    y = np.asarray(y, dtype="float64")
    if method == "isotonic":
        iso = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0.0, y_max=1.0)
        iso.fit(raw, y)
        return Calibrator("isotonic", isotonic=iso)
    if method == "sigmoid":
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
        b = max(float(lr.coef_[0, 0]), 0.0)  # a negative slope would invert the risk order
        return Calibrator("sigmoid", a=float(lr.intercept_[0]), b=b)
    raise ValueError(f"calibration method must be 'isotonic' or 'sigmoid', got {method!r}")
