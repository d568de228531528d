"""Inject the faults that real municipal exports have into a clean synthetic bundle.

Used by ``kenshin synth --dirty`` and by the ingest tests: every injected fault is counted in a
:class:`DirtyReport`, so a test can check that ingest rejects, merges or normalises exactly what
was injected and nothing else. Faults that stop a run (missing column, truncated
file, wrong encoding) are file-level and made separately by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data import normalise as nz
from data.columns import CHECKUP_COLUMNS, CONTACT_COLUMNS, ENROLLMENT_COLUMNS

_FULLWIDTH = str.maketrans("0123456789.-", "０１２３４５６７８９．－")
_ERA = (("R", "令和", 2019), ("H", "平成", 1989), ("S", "昭和", 1926))


@dataclass
class DirtyReport:
    """How many rows got each fault: ``rejected[(table, column)]`` and merged duplicates."""

    rejected: dict[tuple[str, str], int] = field(default_factory=dict)
    merged_duplicates: dict[str, int] = field(default_factory=dict)
    soft_flagged: int = 0
    bp_pairs_dropped: int = 0  # SBP/DBP swapped: both set aside and flagged, the row kept
    reformatted_dates: int = 0
    fullwidth_values: int = 0
    extra_columns: tuple[str, ...] = ("memo",)

    def summary(self) -> str:
        parts = [f"{t}.{c}: {n}" for (t, c), n in sorted(self.rejected.items())]
        parts += [f"{t} duplicates: {n}" for t, n in sorted(self.merged_duplicates.items())]
        return ", ".join(parts)


def as_text(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Render a typed frame as export text: ISO dates, integers without '.0', empty = missing."""
    out = pd.DataFrame(index=frame.index)
    for col, kind in columns.items():
        s = frame[col]
        if kind == "date":
            out[col] = pd.to_datetime(s).dt.strftime("%Y-%m-%d")
        elif kind == "int":
            out[col] = pd.array(s, dtype="Int64").astype("string")
        elif kind == "float":
            out[col] = s.astype("Float64").round(2).astype("string")
        elif kind == "bool":
            out[col] = s.map({True: "true", False: "false"})
        else:
            out[col] = s.astype("string")
    return out.astype(object).where(out.notna(), None)


def _era_date(d: pd.Series, kanji: bool) -> pd.Series:
    year = d.dt.year
    out = pd.Series(index=d.index, dtype=object)
    for letter, name, base in _ERA:  # newest era first; loop over three eras, not rows
        m = out.isna() & (d >= pd.Timestamp(f"{base}-05-01" if base == 2019 else f"{base}-01-08"))
        if base == 1926:
            m = out.isna() & (d >= pd.Timestamp("1926-12-25"))
        y = (year[m] - base + 1).astype(str)
        if kanji:
            out[m] = (
                name + y + "年" + d[m].dt.month.astype(str) + "月" + d[m].dt.day.astype(str) + "日"
            )
        else:
            out[m] = letter + y + "." + d[m].dt.month.astype(str) + "." + d[m].dt.day.astype(str)
    return out


def make_dirty(
    checkups: pd.DataFrame,
    enrollment: pd.DataFrame,
    contacts: pd.DataFrame,
    seed: int = 0,
    rate: float = 0.002,
    legacy_codes: bool = True,
) -> tuple[dict[str, pd.DataFrame], DirtyReport]:
    """Return text tables with faults injected at ``rate`` each, and what was injected.

    ``legacy_codes``: pre-FY2024 rows carry their own form's questionnaire codes (else 2024's).
    """
    rng = np.random.default_rng(seed + 7919)
    report = DirtyReport()
    chk = checkups.copy()
    chk["fiscal_year"] = nz.fiscal_year(chk["exam_date"])
    chk = (
        nz.to_legacy_export(chk) if legacy_codes else nz.to_legacy_export(chk, questionnaire=False)
    )
    dates = pd.to_datetime(chk["exam_date"])
    text = as_text(chk, CHECKUP_COLUMNS)
    n = len(text)
    k = max(1, int(rate * n))
    order = rng.permutation(n)
    picks = iter(np.array_split(order[: 12 * k], 12))

    def fault(column: str, values) -> np.ndarray:
        rows = next(picks)
        text.iloc[rows, text.columns.get_loc(column)] = values
        report.rejected[("checkups", column)] = report.rejected.get(("checkups", column), 0) + len(
            rows
        )
        return rows

    fault("exam_date", "不明")
    fault("sex", "3")
    rows = next(picks)  # SBP below DBP: swap the two readings (the pair is dropped and flagged)
    sbp, dbp = text["sbp"].to_numpy().copy(), text["dbp"].to_numpy().copy()
    ok = pd.notna(sbp[rows]) & pd.notna(dbp[rows])
    rows = rows[ok]
    text.iloc[rows, text.columns.get_loc("sbp")] = dbp[rows]
    text.iloc[rows, text.columns.get_loc("dbp")] = sbp[rows]
    report.bp_pairs_dropped = len(rows)
    fault("hba1c", "48")
    fault("weight_kg", "-61.5")
    fault("fpg", "検査中")

    # Soft outliers: kept and flagged.
    rows = next(picks)
    text.iloc[rows, text.columns.get_loc("ggt")] = "1500"
    report.soft_flagged = len(rows)

    # Harmless variety: date formats and full-width digits that ingest must normalise.
    untouched = next(picks)
    for i, fmt in enumerate(("%Y%m%d", "%Y/%m/%d", "era", "kanji")):
        rows = untouched[i::4]
        if fmt == "era":
            text.iloc[rows, text.columns.get_loc("exam_date")] = _era_date(dates.iloc[rows], False)
        elif fmt == "kanji":
            text.iloc[rows, text.columns.get_loc("exam_date")] = _era_date(dates.iloc[rows], True)
        else:
            text.iloc[rows, text.columns.get_loc("exam_date")] = dates.iloc[rows].dt.strftime(fmt)
    report.reformatted_dates = len(untouched)
    rows = next(picks)
    for col in ("height_cm", "weight_kg", "sbp"):
        vals = text[col].iloc[rows]
        text.iloc[rows, text.columns.get_loc(col)] = [
            v.translate(_FULLWIDTH) if isinstance(v, str) else v for v in vals
        ]
    report.fullwidth_values = len(rows)

    # One person with two birth dates: a later date on one of several checkups.
    used = set(order[: 12 * k].tolist())
    counts = text["person_id"].value_counts()
    multi = counts.index[counts >= 3]
    for pid in multi:
        idx = np.flatnonzero((text["person_id"] == pid).to_numpy())
        if not used.intersection(idx.tolist()):
            row = idx[1]
            bd = pd.Timestamp(text["birth_date"].iat[row]) + pd.DateOffset(years=1)
            text.iat[row, text.columns.get_loc("birth_date")] = bd.strftime("%Y-%m-%d")
            report.rejected[("checkups", "birth_date")] = 1
            used.update(idx.tolist())
            break

    # Duplicates: exact copies, and split copies (same person and date, values in two rows).
    free = np.array(sorted(set(range(n)) - used))
    dup_rows = rng.choice(free, size=2 * k, replace=False)
    exact, split = dup_rows[:k], dup_rows[k:]
    first_half = [c for c in CHECKUP_COLUMNS if c.startswith("q_")]
    a = text.iloc[split].copy()
    b = text.iloc[split].copy()
    a[first_half] = None
    text.iloc[split] = b.assign(**{c: None for c in ("tg", "hdl", "ldl")}).to_numpy()
    text = pd.concat([text, text.iloc[exact], a], ignore_index=True)
    report.merged_duplicates["checkups"] = 2 * k
    text["memo"] = None
    text.loc[rng.choice(len(text), size=k, replace=False), "memo"] = "再検査予定"
    text = text.sample(frac=1.0, random_state=seed).reset_index(drop=True)

    enr = as_text(enrollment, ENROLLMENT_COLUMNS)
    ended = np.flatnonzero(enr["enrolled_until"].notna().to_numpy())
    kk = max(1, min(len(ended), int(rate * len(enr))))
    rows = rng.choice(ended, size=kk, replace=False)
    frm, until = enr["enrolled_from"].to_numpy().copy(), enr["enrolled_until"].to_numpy().copy()
    enr.iloc[rows, enr.columns.get_loc("enrolled_from")] = until[rows]
    enr.iloc[rows, enr.columns.get_loc("enrolled_until")] = frm[rows]
    report.rejected[("enrollment", "enrolled_until")] = kk
    enr = pd.concat(
        [enr, enr.iloc[rng.choice(len(enr), size=kk, replace=False)]], ignore_index=True
    )
    report.merged_duplicates["enrollment"] = kk

    con = as_text(contacts, CONTACT_COLUMNS)
    return {"checkups": text, "enrollment": enr, "contacts": con}, report


def write_dirty(tables: dict[str, pd.DataFrame], out: Path) -> dict[str, Path]:
    """Write as a municipal system would: checkups in CP932, enrollment UTF-8 with BOM."""
    out.mkdir(parents=True, exist_ok=True)
    encodings = {"checkups": "cp932", "enrollment": "utf-8-sig", "contacts": "utf-8"}
    paths = {}
    for name, frame in tables.items():
        path = out / f"{name}.csv"
        frame.to_csv(path, index=False, encoding=encodings[name], lineterminator="\r\n")
        paths[name] = path
    return paths
