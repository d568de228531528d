"""Population drift (集団の変化): training-data bins kept with the model, PSI at scoring time.

At training the engine keeps, per feature, decile edges of the training rows of the latest
training fiscal year and the share of rows in each bin plus the share missing
(:class:`FeatureReference`: aggregate shares only, never a row). The latest year, not every
training year: history features (change since the last checkup, 3-checkup slopes, number of
earlier checkups) depend on how many years the store holds, so early training rows lack them
and a reference over all years flags every history feature as shifted (demo ward: 28 features
≥ 0.25 against 2 with the latest year — the questionnaire items that really changed in 2024).
At scoring the same bins are counted chunk by chunk (:meth:`FeatureReference.counts`), and
the population stability index compares the two:

    PSI = Σ_bins (a − e) · ln(a / e)      (missing values are one more bin; shares floored at 1e-4)

Conventional reading: < 0.1 stable (``ok``), 0.1-0.25 worth a look (``watch``), ≥ 0.25 shifted
(``shift``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["FeatureReference", "drift_table", "psi", "psi_status"]

_FLOOR = 1e-4
WATCH, SHIFT = 0.10, 0.25


@dataclass
class FeatureReference:
    """Decile bins of each feature on the training rows (edges + shares; missing last)."""

    names: list[str]
    edges: dict[str, np.ndarray] = field(default_factory=dict)
    shares: dict[str, np.ndarray] = field(default_factory=dict)
    rows: int = 0
    #: fiscal year of the reference rows (None: not recorded)
    fiscal_year: int | None = None

    @classmethod
    def fit(
        cls, X: np.ndarray, names: list[str], bins: int = 10, fiscal_year: int | None = None
    ) -> FeatureReference:
        """Reference bins from a float matrix (rows × features, NaN = missing)."""
        ref = cls(list(names), rows=len(X), fiscal_year=fiscal_year)
        qs = np.linspace(0, 1, bins + 1)[1:-1]
        for j, name in enumerate(names):
            col = X[:, j]
            ok = col[~np.isnan(col)]
            edges = np.unique(np.quantile(ok, qs)) if len(ok) else np.array([])
            ref.edges[name] = edges
            ref.shares[name] = _bin_counts(col, edges) / max(len(col), 1)
        return ref

    def counts(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Bin counts of a float matrix with the same columns (add them up over chunks)."""
        return {n: _bin_counts(X[:, j], self.edges[n]) for j, n in enumerate(self.names)}

    def table(self, counts: dict[str, np.ndarray], labels: dict[str, str]) -> pd.DataFrame:
        """PSI per feature from accumulated scoring counts (the drift contract's columns)."""
        rows = []
        for n in self.names:
            c = counts.get(n)
            total = 0 if c is None else int(c.sum())
            value = psi(self.shares[n], c / total) if total else np.nan
            rows.append(
                {
                    "feature": n,
                    "label_ja": labels.get(n, n),
                    "psi": value,
                    "status": psi_status(value),
                    "missing_reference": float(self.shares[n][-1]),
                    "missing_scoring": float(c[-1] / total) if total else np.nan,
                }
            )
        out = pd.DataFrame(rows)
        return out.sort_values(["psi", "feature"], ascending=[False, True], ignore_index=True)


def _bin_counts(col: np.ndarray, edges: np.ndarray) -> np.ndarray:
    missing = np.isnan(col)
    idx = np.searchsorted(edges, col[~missing], side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype("float64")
    return np.append(counts, float(missing.sum()))


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=float), _FLOOR)
    a = np.maximum(np.asarray(actual, dtype=float), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_status(value: float) -> str:
    if value != value:
        return "n/a"
    return "shift" if value >= SHIFT else "watch" if value >= WATCH else "ok"


def drift_table(
    reference: FeatureReference | None,
    counts: dict[str, np.ndarray],
    names: list[str],
    labels: dict[str, str],
) -> pd.DataFrame:
    """The drift contract's table; every PSI ``n/a`` for an engine kept without reference bins."""
    if reference is not None:
        return reference.table(counts, labels)
    return pd.DataFrame(
        {
            "feature": names,
            "label_ja": [labels.get(n, n) for n in names],
            "psi": np.nan,
            "status": "n/a",
            "missing_reference": np.nan,
            "missing_scoring": np.nan,
        }
    )
