"""Next-year value targets for the forecasts (翌年度の検査値), leakage-free by construction.

For the index row of person *p* in fiscal year *t*, the target of item *i* is the value of *i*
at *p*'s index checkup of fiscal year *t*+1 (the latest checkup of that year), read from the
same as-of feature table: the feature row at *t* uses data up to *t* only, the target only the
row at *t*+1. Missing when *p* has no checkup in *t*+1 or the item was not measured.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["next_year_values"]


def next_year_values(features: pd.DataFrame, items: tuple[str, ...]) -> pd.DataFrame:
    """Float frame (same rows as ``features``) of each item's value at the next fiscal year."""
    keys = features[["pseudonym", "fiscal_year"]].astype({"pseudonym": object})
    keys = keys.assign(fiscal_year=keys["fiscal_year"].astype("int64"))
    nxt = features[list(items)].astype("float64")
    nxt = pd.concat(
        [keys.assign(fiscal_year=keys["fiscal_year"] - 1).reset_index(drop=True),
         nxt.reset_index(drop=True)],
        axis=1,
    )  # fmt: skip
    merged = keys.reset_index(drop=True).merge(
        nxt, on=["pseudonym", "fiscal_year"], how="left", validate="1:1"
    )
    out = merged[list(items)].astype("float64")
    out.index = features.index
    return out.fillna(np.nan)
