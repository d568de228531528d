"""NDB FY2021 calibration targets for the synthetic ward (厚生労働省 第9回NDBオープンデータ).

Reads the derived national tables in ``data/reference/ndb_japan/`` (no network) and turns
them into what the generator needs:

* :func:`quantile_tables` — for every calibrated measurement and each sex × 5-year age band, a
  quantile function ``Q(z)`` on a fixed grid of standard-normal scores. ``Q`` passes exactly
  through every NDB bin edge (the share below each edge) and matches the NDB mean: between
  edges it is linear in ``t(x)`` (``log(x - shift)`` for skewed items, ``x`` for the others),
  and beyond the outermost edges it continues with a common slope chosen so the mean of
  ``Q(Z)`` equals the NDB mean. Bin edges are put half a reporting unit below the printed
  limit, because values are rounded when reported (HbA1c ``≥6.5`` means ≥6.45 before rounding).
* :func:`band_table` — NDB prevalence/share per sex × band for questionnaire-type targets
  (medication, smoking, daily drinking, weight gain, alcohol frequency/amount).

Age bands are the NDB strings ``40～44歳`` … ``70～74歳``; ``中計`` (all ages) is never used as
a band. Sex is coded 1 male / 2 female here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

BANDS: tuple[str, ...] = tuple(f"{a}～{a + 4}歳" for a in range(40, 75, 5))
ALL_AGES = "中計"
BAND_MID_AGES = np.array([42.0, 47.0, 52.0, 57.0, 62.0, 67.0, 72.0])
#: Grid of standard-normal scores on which quantile functions are tabulated.
Z_GRID = np.linspace(-6.0, 6.0, 241)
_SEX = {"男": 1, "女": 2, "M": 1, "F": 2}


def ndb_dir() -> Path:
    """Folder of the NDB CSVs: ``KENSHIN_NDB_DIR``, else the copy shipped in ``data/reference``.

    The shipped files are byte copies of the project's NDB tables (data/reference/README.md; a
    test checks them against the originals when present), so a fresh clone needs nothing beside it.
    """
    env = os.environ.get("KENSHIN_NDB_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "reference" / "ndb_japan"


@lru_cache(maxsize=1)
def _read(name: str) -> pd.DataFrame:
    df = pd.read_csv(ndb_dir() / name)
    df["sex"] = df["sex"].map(_SEX).astype(int)
    return df


def distributions() -> pd.DataFrame:
    return _read("ndb9_fy2021_tokuteikenshin_national_distribution_by_sex_age.csv")


def means() -> pd.DataFrame:
    return _read("ndb9_fy2021_tokuteikenshin_national_means_by_sex_age.csv")


def prevalences() -> pd.DataFrame:
    return _read("ndb9_fy2021_threshold_prevalence_by_sex_age.csv")


@dataclass(frozen=True)
class ItemSpec:
    """How one measurement is calibrated: NDB item/table set, transform and reporting unit."""

    ndb_item: str
    table_set: str = "A"
    shift: float | None = 0.0  # t(x) = log(x - shift); None → t(x) = x (linear family)
    unit: float = 1.0  # reporting resolution (values are rounded to this)
    lo: float = -np.inf  # plausible range of the reported value
    hi: float = np.inf
    has_mean: bool = True


#: Calibrated measurements (canonical column → spec). urine_* are dipstick codes 1..5.
ITEMS: dict[str, ItemSpec] = {
    "bmi": ItemSpec("BMI", shift=10.0, unit=0.1, lo=13.0, hi=60.0),
    "waist_cm": ItemSpec("waist", shift=40.0, unit=0.1, lo=55.0, hi=160.0),
    "sbp": ItemSpec("sbp", shift=40.0, unit=1.0, lo=80.0, hi=250.0),
    "dbp": ItemSpec("dbp", shift=20.0, unit=1.0, lo=40.0, hi=150.0),
    "tg": ItemSpec("triglycerides", shift=10.0, unit=1.0, lo=20.0, hi=3000.0),
    "hdl": ItemSpec("hdl", shift=5.0, unit=1.0, lo=15.0, hi=180.0),
    "ldl": ItemSpec("ldl", shift=-20.0, unit=1.0, lo=25.0, hi=400.0),
    "ast": ItemSpec("ast", shift=5.0, unit=1.0, lo=7.0, hi=800.0),
    "alt": ItemSpec("alt", shift=2.0, unit=1.0, lo=3.0, hi=900.0),
    "ggt": ItemSpec("ggt", shift=3.0, unit=1.0, lo=5.0, hi=1500.0),
    "fpg": ItemSpec("fasting_glucose", shift=55.0, unit=1.0, lo=55.0, hi=500.0),
    "hba1c": ItemSpec("hba1c", shift=4.0, unit=0.1, lo=4.0, hi=15.0),
    "egfr": ItemSpec("egfr", table_set="B", shift=None, unit=0.1, lo=5.0, hi=160.0),
    "hemoglobin": ItemSpec("hemoglobin", table_set="B", shift=None, unit=0.1, lo=6.0, hi=20.0),
    "urine_protein": ItemSpec("urine_protein", shift=None, unit=1.0, lo=1, hi=5, has_mean=False),
    "urine_glucose": ItemSpec("urine_glucose", shift=None, unit=1.0, lo=1, hi=5, has_mean=False),
}

_DIPSTICK = {"－": 1, "±": 2, "＋": 3, "＋＋": 4, "＋＋＋": 5}
_NUM = r"([0-9]+(?:\.[0-9]+)?)"


def _bin_range(label: str, unit: float) -> tuple[float, float]:
    """Continuous [lower, upper) of an NDB bin label, allowing for rounding to ``unit``."""
    if label in _DIPSTICK:
        c = _DIPSTICK[label]
        return c - 0.5, c + 0.5
    lo, hi = -np.inf, np.inf
    m = re.search(_NUM + "以上", label)
    if m:
        lo = float(m.group(1)) - unit / 2
    m = re.search(_NUM + "未満", label)
    if m:
        hi = float(m.group(1)) - unit / 2
    m = re.search(_NUM + "以下", label)
    if m:
        hi = float(m.group(1)) + unit / 2
    return lo, hi


def _knots(g: pd.DataFrame, unit: float) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges and the share below each edge, from one sex × band slice of the distribution."""
    rows = [(*_bin_range(b, unit), c) for b, c in zip(g["bin"], g["count"], strict=True)]
    total = float(sum(r[2] for r in rows))
    edges = sorted({r[1] for r in rows if np.isfinite(r[1])})
    below = [sum(r[2] for r in rows if r[1] <= e) / total for e in edges]
    return np.asarray(edges), np.asarray(below)


def _fit_quantile(
    edges: np.ndarray, cdf: np.ndarray, mean: float | None, shift: float | None
) -> np.ndarray:
    """Tabulate ``Q`` on :data:`Z_GRID` (see module docstring)."""
    keep = (cdf > 2e-4) & (cdf < 1 - 2e-4)
    edges, cdf = edges[keep], cdf[keep]
    zk = ndtri(cdf)
    tk = np.log(edges - shift) if shift is not None else edges.astype(float)
    order = np.argsort(zk)
    zk, tk = zk[order], tk[order]
    # monotone knots only
    ok = np.concatenate([[True], (np.diff(zk) > 1e-6) & (np.diff(tk) > 0)])
    zk, tk = zk[ok], tk[ok]
    if len(zk) >= 2:
        slope0 = np.polyfit(zk, tk, 1)[0]
    else:
        slope0 = 0.25 if shift is not None else 1.0

    def table(slope: float) -> np.ndarray:
        t = np.interp(Z_GRID, zk, tk)
        t = np.where(Z_GRID < zk[0], tk[0] + slope * (Z_GRID - zk[0]), t)
        t = np.where(Z_GRID > zk[-1], tk[-1] + slope * (Z_GRID - zk[-1]), t)
        return np.exp(t) + shift if shift is not None else t

    if mean is None or not np.isfinite(mean):
        return table(slope0)
    # E[Q(Z)] on a fine grid (trapezoid over the tabulated Z grid with normal weights)
    w = np.exp(-0.5 * Z_GRID**2)
    w /= w.sum()
    cands = slope0 * np.exp(np.linspace(np.log(0.25), np.log(4.0), 161))
    errs = np.array([abs(float(table(s) @ w) - mean) for s in cands])
    return table(float(cands[int(np.argmin(errs))]))


@lru_cache(maxsize=1)
def quantile_tables() -> dict[str, np.ndarray]:
    """``{item: array[sex 0/1, band 0..6, len(Z_GRID)]}`` of calibrated quantile functions."""
    dist, mn = distributions(), means()
    out: dict[str, np.ndarray] = {}
    for item, spec in ITEMS.items():
        tab = np.zeros((2, len(BANDS), len(Z_GRID)))
        d = dist[(dist["item"] == spec.ndb_item) & (dist["table_set"] == spec.table_set)]
        m = mn[(mn["item"] == spec.ndb_item) & (mn["table_set"] == spec.table_set)]
        for s in (1, 2):
            for b, band in enumerate(BANDS):
                g = d[(d["sex"] == s) & (d["age_band"] == band)]
                g = g[g["count"] > 0]
                edges, cdf = _knots(g, spec.unit)
                target = None
                if spec.has_mean:
                    mm = m[(m["sex"] == s) & (m["age_band"] == band)]["weighted_mean"]
                    target = float(mm.iloc[0]) if len(mm) else None
                tab[s - 1, b] = _fit_quantile(edges, cdf, target, spec.shift)
        out[item] = np.clip(tab, spec.lo, spec.hi)
    return out


def band_table(indicator: str) -> np.ndarray:
    """NDB prevalence of ``indicator`` (threshold CSV) as ``array[sex 0/1, band 0..6]``."""
    p = prevalences()
    p = p[p["indicator"] == indicator]
    out = np.zeros((2, len(BANDS)))
    for s in (1, 2):
        for b, band in enumerate(BANDS):
            out[s - 1, b] = float(
                p[(p["sex"] == s) & (p["age_band"] == band)]["prevalence"].iloc[0]
            )
    return out


def share_table(ndb_item: str, bins: list[str]) -> np.ndarray:
    """Share of each of ``bins`` for a questionnaire item as ``array[sex, band, len(bins)]``."""
    d = distributions()
    d = d[d["item"] == ndb_item]
    out = np.zeros((2, len(BANDS), len(bins)))
    for s in (1, 2):
        for b, band in enumerate(BANDS):
            g = d[(d["sex"] == s) & (d["age_band"] == band)].set_index("bin")["count"]
            v = np.array([float(g.get(x, 0.0)) for x in bins])
            out[s - 1, b] = v / v.sum()
    return out


def by_age(table: np.ndarray, age: np.ndarray, sex: np.ndarray) -> np.ndarray:
    """Interpolate a ``[sex, band, ...]`` table linearly between band mid-ages (clamped)."""
    a = np.clip(np.asarray(age, dtype=float), BAND_MID_AGES[0], BAND_MID_AGES[-1])
    pos = (a - BAND_MID_AGES[0]) / 5.0
    i0 = np.minimum(np.floor(pos).astype(int), len(BANDS) - 2)
    f = pos - i0
    s = np.asarray(sex, dtype=int) - 1
    lo, hi = table[s, i0], table[s, i0 + 1]
    if table.ndim == 3:
        f = f[:, None]
    return lo * (1 - f) + hi * f


def probit(p: np.ndarray) -> np.ndarray:
    return ndtri(np.clip(p, 1e-6, 1 - 1e-6))


def cdf(z: np.ndarray) -> np.ndarray:
    return ndtr(z)
