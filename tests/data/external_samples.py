"""Helpers of the tests on real samples we did not write (../shared/data/external)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data.ingest import IngestConfig, IngestResult, ingest

SHARED = Path(__file__).resolve().parents[2].parent / "shared/data/external"


def ingest_foreign_export(checkups: pd.DataFrame, folder: Path) -> tuple[IngestResult, Path]:
    """``checkups`` (an analyst's mapping onto the contract) written as a bundle in ``folder``,
    every person enrolled since FY2015 with a contact row, and ingested: (result, store)."""
    bundle = folder / "bundle"
    bundle.mkdir()
    checkups.to_csv(bundle / "checkups.csv", index=False)
    ids = checkups[["person_id"]]
    ids.assign(enrolled_from="2015-04-01").to_csv(bundle / "enrollment.csv", index=False)
    ids.to_csv(bundle / "contacts.csv", index=False)
    return ingest(bundle, folder / "store", IngestConfig(today="2026-12-01")), folder / "store"


def median_by_band(values: pd.Series, risk: pd.Series, edges: list[float]) -> np.ndarray:
    """The median of ``risk`` in each left-closed band of ``values`` between ``edges``."""
    band = pd.cut(pd.to_numeric(values, errors="coerce"), edges, right=False)
    return risk.groupby(band, observed=False).median().to_numpy()
