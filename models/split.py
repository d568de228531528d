"""Temporal split by index fiscal year, grouped by person (時系列分割).

With *T* the last labelled index year and horizon *h*:

* ``test``  — index rows of fiscal year *T*;
* ``val``   — index rows of *T*−1 (early stopping and calibration);
* ``train`` — index rows of years ≤ *T*−1−*h* (*T*−2 for the default horizon 1), so every
  training label was observed by the validation year and none comes from the test period.

Grouping (``SplitConfig.group == "person_hash"``, the default): each person is put in the
test group or the development group by a fixed hash of the pseudonym (share
``test_person_share``); test-group persons contribute only their year-*T* rows (to ``test``),
development-group persons only their earlier rows (to ``train`` / ``val``). A person in test
therefore never appears in train or validation, and the grouping is independent of outcomes.

Why not "drop every test-year person's earlier rows" (the obvious rule): a labelled row in
*T*−1 needs a checkup in *T*, so its person has an index row in *T*; the only such persons not
in an outcome's test set are those *not at risk* in *T* — who met the outcome there. Dropping
test persons thus leaves a validation year of mostly events (event rate ×2-3 on the demo
cohort) and ruins calibration. The hash rule selects on nothing but the ID.
``group == "none"``: temporal split only (persons may appear in several parts).
Deterministic: the assignment depends only on the keys.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.config import SplitConfig

__all__ = ["SPLITS", "assign_split", "last_labelled_year", "person_hash"]

SPLITS = ("train", "val", "test")


def last_labelled_year(labels: pd.DataFrame) -> int:
    """Last index fiscal year whose horizon lies inside the data and has any known label."""
    y = [c for c in labels.columns if c.startswith("y_")]
    known = labels["in_window"].to_numpy(dtype=bool) & labels[y].notna().any(axis=1).to_numpy()
    if not known.any():
        from models.train import NotEnoughDataError

        raise NotEnoughDataError(
            "labels have no known outcome in any index year: nothing to train on "
            "(the store needs checkups in at least two consecutive fiscal years)"
        )
    return int(labels.loc[known, "fiscal_year"].max())


def person_hash(pseudonyms: pd.Series) -> np.ndarray:
    """Deterministic uniform number in [0, 1) per person (pandas' fixed-key SipHash)."""
    h = pd.util.hash_pandas_object(pseudonyms.astype("string"), index=False).to_numpy()
    return (h >> np.uint64(11)).astype("float64") / float(1 << 53)


def assign_split(
    keys: pd.DataFrame, test_year: int, horizon_years: int = 1, config: SplitConfig | None = None
) -> np.ndarray:
    """Split name (``train``/``val``/``test``/``""`` = unused) for each row of ``keys``.

    ``keys`` needs ``pseudonym`` and ``fiscal_year``; rows after ``test_year`` or between the
    training window and validation (horizon > 1) are unused.
    """
    config = config or SplitConfig()
    fy = keys["fiscal_year"].to_numpy(dtype="float64", na_value=np.nan)
    out = np.full(len(keys), "", dtype=object)
    out[fy <= test_year - 1 - horizon_years] = "train"
    out[fy == test_year - 1] = "val"
    test = fy == test_year
    out[test] = "test"
    if config.group == "person_hash":
        in_test = person_hash(keys["pseudonym"]) < config.test_person_share
        out[(in_test & ~test) | (~in_test & test)] = ""
    elif config.group != "none":
        raise ValueError(f"unknown split group policy {config.group!r}")
    return out
