"""What an explanation line says about a clinical item (項目の値): "6.3%(前回比 +0.2)".

Column-wise over residents (one pass per item, never per row): the item's latest values
(:attr:`features.declarations.ClinicalItem.show`; a reading such as blood pressure printed as
"142/88 mmHg"), its change since the previous checkup, and coded answers in words
(:data:`features.declarations.CODE_JA`). Missing values read "未測定" / "未回答".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.declarations import CODE_JA, get, item

__all__ = ["DECIMALS", "item_values"]

#: Decimals of the printed values (default 0: mg/dL, mmHg, U/L, codes); the staff report's too.
DECIMALS: dict[str, int] = {
    "hba1c": 1, "bmi": 1, "waist_cm": 1, "weight_kg": 1, "height_cm": 1, "egfr": 1,
    "creatinine": 2, "uric_acid": 1, "hemoglobin": 1, "years_since_previous": 1,
}  # fmt: skip
_UNIT_JA = {"g/day": "g/日", "years": "年", "count": "回"}
_NO_UNIT = ("code", "level", "flag", "%", "kg/m²")
#: Short labels where an item prints several values ("LDL 150・Non-HDL 172 mg/dL").
_SHORT = {"ldl": "LDL", "non_hdl": "Non-HDL", "fpg": "空腹時", "random_glucose": "随時",
          "bmi": "BMI", "waist_cm": "腹囲"}  # fmt: skip
#: What a missing value reads, by the item's first shown feature (default 未測定).
_MISSING = {"alcohol_g_per_day": "未回答", "mets_level": "判定なし",
            "guidance_intensity": "判定なし(服薬中等)"}  # fmt: skip


def _num(x: np.ndarray, decimals: int, sign: bool = False) -> np.ndarray:
    """``x`` as text with ``decimals`` (``+`` for changes), '' where NaN."""
    spec = f"%{'+' if sign else ''}.{decimals}f"
    out = np.array([spec % v for v in np.nan_to_num(x).tolist()], dtype=object)
    out[np.isnan(x)] = ""
    return out


def _column(features: pd.DataFrame, name: str) -> np.ndarray:
    if name not in features:
        return np.full(len(features), np.nan)
    return pd.to_numeric(features[name], errors="coerce").to_numpy(dtype="float64")


def _reading(features: pd.DataFrame, name: str, decimals_of: str | None = None) -> np.ndarray:
    """One feature's latest value as staff read it: number + unit, or the coded answer;
    printed with the decimals of ``decimals_of`` (default: of ``name``)."""
    x = _column(features, name)
    if name in CODE_JA:
        words = CODE_JA[name]
        table = np.full(max(words) + 2, "", dtype=object)  # last slot: missing / unknown
        table[list(words)] = list(words.values())
        codes = np.nan_to_num(x, nan=-1).astype(int)
        return table[np.where((codes >= 0) & (codes <= max(words)), codes, -1)]
    if name == "age":
        text = _num(x, 0)
        return np.where(text != "", text + "歳", "")
    if name == "n_prior_checkups":
        text = _num(x, 0)
        return np.where(text != "", "過去" + text + "回", "")
    d = get(name)
    unit = "" if d.unit in _NO_UNIT else " " + _UNIT_JA.get(d.unit, d.unit)
    text = _num(x, DECIMALS.get(decimals_of or name, 0))
    return np.where(text != "", text + ("%" if d.unit == "%" else unit), "")


def item_values(features: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(main value, value text) of clinical item ``key`` for every row of ``features``.

    The main value is the first ``show`` feature (NaN when missing); the text joins the shown
    values ("BMI 26.1・腹囲 92.0 cm", "142/88 mmHg") and the change since the previous checkup
    ("(前回比 +0.2)"); "未測定" when nothing is known.
    """
    it = item(key)
    n = len(features)
    shown = [f for f in it.show if f in features]
    main = _column(features, shown[0]) if shown else np.full(n, np.nan)
    if not shown:
        return main, np.full(n, "", dtype=object)
    if it.joint:  # one reading: "142/88 mmHg", change "+6/+2"
        vals = [_num(_column(features, f), DECIMALS.get(f, 0)) for f in shown]
        unit = get(shown[0]).unit
        have = np.logical_and.reduce([v != "" for v in vals])
        text = np.where(have, vals[0], "")
        for v in vals[1:]:
            text = np.where(have, text + "/" + v, text)
        text = np.where(have, text + " " + unit, "")
        chg = [_num(_column(features, f"{f}_change"), DECIMALS.get(f, 0), sign=True)
               for f in shown]  # fmt: skip
        both = np.logical_and.reduce([c != "" for c in chg])
        delta = chg[0]
        for c in chg[1:]:
            delta = delta + "/" + c
        delta = np.where(both & have, delta, "")
    else:
        parts = [_reading(features, f) for f in shown]
        if len(parts) > 1:  # several values: each with its label
            parts = [np.where(p != "", _SHORT.get(f, get(f).ja) + " " + p, "") for p, f in
                     zip(parts, shown, strict=True)]  # fmt: skip
        text = parts[0]
        for p in parts[1:]:
            text = np.where((text != "") & (p != ""), text + "・" + p, text + p)
        delta = np.full(n, "", dtype=object)
        if it.change and it.change in features:
            base = it.change.removesuffix("_change")
            d = _num(_column(features, it.change), DECIMALS.get(base, 0), sign=True)
            # the main value's own change needs no label or unit: "6.3%(前回比 +0.2)"
            label, unit = "", ""
            if base != shown[0]:
                label, unit = get(base).ja + " ", get(base).unit
                unit = "" if unit in _NO_UNIT else " " + unit
            delta = np.where(d != "", label + d + unit, "")
    text = np.where(delta != "", text + "(前回比 " + delta + ")", text)
    missing = "未回答" if shown[0].startswith("q_") else _MISSING.get(shown[0], "未測定")
    missing = np.full(n, missing, dtype=object)
    for f in shown:
        if f"{f}_recent" in it.members and f"{f}_recent" in features:
            # the model reads the latest reading when this checkup has none: so does the nurse
            last = _reading(features, f"{f}_recent", decimals_of=f)
            label = _SHORT.get(f, "") + " " if len(shown) > 1 else ""
            missing = np.where((last != "") & (missing == "未測定"),
                               "未測定(直近 " + label + last + ")", missing)  # fmt: skip
    return main, np.where(text == "", missing, text).astype(object)
