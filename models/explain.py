"""Explanations by clinical item (項目別の寄与) and the analysts' shap views.

The engine's contributions (:meth:`models.train.TrainedEngine.contributions`: LightGBM's native
SHAP values, ``pred_contrib``, or the blend / logistic member's exact linear terms; log-odds)
are summed per clinical item of :data:`features.declarations.ITEMS` with one matrix product
(contributions @ a 0/1 feature → item matrix). The sums are exact: per row, the items plus the
bias add up to the raw score :meth:`~models.train.TrainedEngine.predict_raw`.

For analysts the grouped values become a :class:`shap.Explanation` (values: item sums; data:
the item's main value, e.g. the latest HbA1c; base values: the bias), drawn with
``shap.plots.beeswarm`` and ``shap.plots.scatter`` (dependence) and logged with every training
run (models.registry). ``shap`` is imported only here and only when an Explanation is built:
bulk scoring uses the native contributions, which are the same numbers as shap's
``TreeExplainer`` on the booster (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.declarations import item, item_matrix
from models.rowwise import rowwise_matmul

__all__ = [
    "GroupedContributions",
    "group_contributions",
    "grouped_contributions",
    "item_data",
    "shap_explanation",
    "shap_plots",
]


@dataclass(frozen=True)
class GroupedContributions:
    """Per-row contributions of each clinical item (log-odds) and the bias.

    ``values``: (n, G) item sums; ``bias``: (n,); ``items``: the G item keys. Rows add up:
    ``values.sum(1) + bias`` is the raw score.
    """

    values: np.ndarray
    bias: np.ndarray
    items: tuple[str, ...]

    @property
    def raw(self) -> np.ndarray:
        """The raw score (log-odds) each row adds up to."""
        return self.values.sum(axis=1) + self.bias

    def frame(self) -> pd.DataFrame:
        """Item columns plus ``bias``."""
        return pd.DataFrame(np.column_stack([self.values, self.bias]),
                            columns=[*self.items, "bias"])  # fmt: skip


def group_contributions(contrib: np.ndarray, names: list[str]) -> GroupedContributions:
    """Sum (n, F[+1]) feature contributions per clinical item; a trailing column is the bias.

    One matrix product with :func:`features.declarations.item_matrix`: no loop over rows.
    """
    c = np.asarray(contrib, dtype="float64")
    F = len(names)
    M, keys = item_matrix(names)
    bias = c[:, F] if c.shape[1] > F else np.zeros(len(c))
    return GroupedContributions(rowwise_matmul(c[:, :F], M), bias, keys)


def grouped_contributions(engine, X: np.ndarray | pd.DataFrame, outcome: str):
    """The engine's contributions to ``outcome`` for rows ``X``, summed per clinical item."""
    c = engine.contributions(X, outcome).to_numpy()
    return group_contributions(c, list(engine.feature_names))


def item_data(X: np.ndarray, names: list[str], items: tuple[str, ...]) -> np.ndarray:
    """(n, G): each item's main value (its first ``show`` feature that ``names`` has; NaN
    if none) — what a dependence plot puts on the x axis and a beeswarm colours by."""
    pos = {n: j for j, n in enumerate(names)}
    out = np.full((len(X), len(items)), np.nan)
    for g, key in enumerate(items):
        main = next((f for f in item(key).show if f in pos), None)
        if main is not None:
            out[:, g] = X[:, pos[main]]
    return out


def shap_explanation(engine, X: np.ndarray, outcome: str):
    """A :class:`shap.Explanation` of ``outcome`` on rows ``X`` with one column per item.

    Values: the exact item sums of the engine's contributions (log-odds); base values: the
    bias; data: the item's main value; feature names: the items' English labels.
    """
    import shap

    g = grouped_contributions(engine, X, outcome)
    names = list(engine.feature_names)
    return shap.Explanation(
        values=g.values,
        base_values=g.bias,
        data=item_data(np.asarray(X, dtype="float64"), names, g.items),
        feature_names=[item(k).en for k in g.items],
        output_names=outcome,
    )


def shap_plots(expl, outcome: str, out: Path, dependence: int = 3, dpi: int = 90) -> list[Path]:
    """Beeswarm of ``expl`` and dependence plots of its ``dependence`` strongest items.

    Written as ``shap_beeswarm_<outcome>.png`` and ``shap_dependence_<outcome>_<k>.png``
    (k = 1 strongest); returns the paths. Uses matplotlib's current backend (Agg in runs).
    """
    import matplotlib.pyplot as plt
    import shap

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(8, 6))
    shap.plots.beeswarm(expl, max_display=12, ax=ax, show=False, plot_size=None)
    ax.set_title(f"{outcome}: SHAP by clinical item (log-odds)")
    fig.tight_layout()
    paths.append(out / f"shap_beeswarm_{outcome}.png")
    fig.savefig(paths[-1], dpi=dpi)
    plt.close(fig)
    strength = np.abs(expl.values).mean(axis=0)
    for k, j in enumerate(np.argsort(-strength, kind="stable")[:dependence], start=1):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        shap.plots.scatter(expl[:, int(j)], ax=ax, show=False, ylabel="SHAP (log-odds)")
        ax.set_title(f"{outcome}: {expl.feature_names[int(j)]}")
        fig.tight_layout()
        paths.append(out / f"shap_dependence_{outcome}_{k}.png")
        fig.savefig(paths[-1], dpi=dpi)
        plt.close(fig)
    return paths
