"""One checkup of a (sub-)population: measured values, missingness and questionnaire answers.

:func:`observe` is shared by the ward simulation and by the Monte-Carlo truth (so next year's
outcome probabilities use exactly the same measurement process as the real next-year draw).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from data.synth import model, ndb

#: columns :func:`observe` fills when ``outcomes_only`` (what outcome judgement needs)
OUTCOME_INPUTS = (
    "sex",
    "waist_cm",
    "sbp",
    "dbp",
    "blood_draw_timing",
    "tg",
    "hdl",
    "ldl",
    "non_hdl",
    "fpg",
    "hba1c",
    "urine_protein",
    "egfr",
    "alt",
    "ggt",
    "q_med_bp",
    "q_med_glucose",
    "q_med_lipid",
)
#: Items the outcomes (docs/contract.md §Outcomes) are judged on (also used by the Monte-Carlo
#: truth).
OUTCOME_ITEMS = (
    "waist_cm",
    "sbp",
    "dbp",
    "tg",
    "hdl",
    "ldl",
    "alt",
    "ggt",
    "fpg",
    "hba1c",
    "egfr",
    "urine_protein",
)


def egfr_jsn(creatinine: np.ndarray, age: np.ndarray, sex_factor: np.ndarray) -> np.ndarray:
    """JSN equation 194 × Cr^−1.094 × age^−0.287 (× 0.739 women), as data.judgements.egfr_jsn.

    A plain-numpy copy for speed (judgements' version coerces arbitrary input); tests check the
    two agree.
    """
    return 194.0 * creatinine**-1.094 * age**-0.287 * sex_factor


def _present(rng, n, p):
    return rng.random(n) < p


def _regime_p(trait: np.ndarray, p: float, b: float = 1.0) -> np.ndarray:
    """Person-specific probability that an item is measured (marginal ``p``, propensity ``trait``)."""
    return ndb.cdf(ndb.probit(np.full(len(trait), p)) * np.sqrt(1 + b * b) + b * trait)


#: measurement-regime probabilities shared by :func:`observe` and the Monte-Carlo truth
P_TG, P_HDL, P_LIVER, P_WAIST, P_URINE, P_UP, P_FPG = (
    0.997,
    0.997,
    0.996,
    0.995,
    0.97,
    0.995,
    0.985,
)
P_LDL_TG400, P_NHDL_EXTRA, P_CRE_TRIGGER, P_QMED = 0.3, 0.2, 0.35, 0.997

#: Glucose panels of the checkup facilities (健診機関): 0 both fasting glucose (when the draw is
#: fasting) and HbA1c, 1 fasting glucose only, 2 HbA1c only. The glucose rule needs one of
#: the two, so a fasting-glucose-only facility takes HbA1c when the draw is not fasting (or
#: the glucose failed). NDB FY2021 records fasting glucose for 82 % and HbA1c for 79 % of
#: examinees (about 60 % both, 20 % / 18 % one only); with 85 % fasting draws these shares give
#: about 59 % both, 12 % fasting glucose only and 29 % HbA1c only (half of it non-fasting).
FACILITY_SHARES = (0.72, 0.13, 0.15)
#: a checkup at another facility than the person's usual one (its panel drawn from the shares)
P_OTHER_FACILITY = 0.1
#: HbA1c at a fasting draw of a facility measuring both
P_A1C_BOTH = 0.98


def facility_panel(u: np.ndarray) -> np.ndarray:
    """Facility glucose panel (0 both, 1 FPG only, 2 HbA1c only) of uniform draws ``u``."""
    c = np.cumsum(FACILITY_SHARES)
    return ((u >= c[0]).astype(np.int8) + (u >= c[1])).astype(np.int8)


def glucose_measured(
    fasting: np.ndarray, pp: dict[str, np.ndarray], uniform: Callable[[], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(fasting glucose measured, HbA1c measured) at one checkup of each row.

    The checkup's facility is the person's usual one (``pp["facility"]``), or another one with
    probability :data:`P_OTHER_FACILITY`; its panel decides what is measured. ``uniform()``
    returns one U(0,1) draw per row; it is called exactly four times, whatever the inputs (the
    Monte-Carlo truth replays draws). Missingness depends on the facility and the draw's
    timing, never on the person's glucose.
    """
    other = uniform() < P_OTHER_FACILITY
    fac = np.where(other, facility_panel(uniform()), pp["facility"])
    fpg_ok = fasting & (fac != 2) & (uniform() < P_FPG)
    a1c_ok = (fac == 2) | ((fac == 0) & (uniform() < P_A1C_BOTH)) | ~fpg_ok
    return fpg_ok, a1c_ok


def presence_probs(st: dict) -> dict[str, np.ndarray]:
    """Per-person measurement law: probability of a fasting draw, the usual facility's glucose
    panel (:func:`facility_panel` of the stable regime trait ``t_a1c``, independent of every
    health latent) and the probabilities of the facility's optional items (LDL, creatinine,
    uric acid, haemoglobin)."""
    return {
        "fast": model.p_fasting(st),
        "facility": facility_panel(ndb.cdf(st["t_a1c"])),
        "ldl": _regime_p(st["t_ldl"], 0.95, b=1.5),
        "cre": _regime_p(st["t_cre"], 0.74),
        "ua": _regime_p(st["t_ua"], 0.6),
        "hb": _regime_p(st["t_hb"], 0.27),
    }


def creatinine_from_egfr(egfr, exam_age, sexf):
    """Creatinine (mg/dL, rounded to 0.01) whose JSN eGFR is ``egfr``, and the reported eGFR."""
    age_e = np.maximum(exam_age, 18).astype(float)
    cre = (egfr / (194.0 * age_e**-0.287 * sexf)) ** (-1 / 1.094)
    cre = np.maximum(np.round(cre, 2), 0.2)
    return cre, np.round(egfr_jsn(cre, age_e, sexf), 1)


def height_cm(st: dict, birth_year: np.ndarray) -> np.ndarray:
    """Adult height: sex- and birth-cohort-specific mean, stable person deviation."""
    sex = st["sex"]
    older = np.clip(1985 - birth_year, 0, 40)
    mean = np.where(sex == 1, 171.5 - 0.24 * older, 158.5 - 0.22 * older)
    sd = np.where(sex == 1, 5.8, 5.3)
    return mean + sd * np.clip(st["height_z"], -3.5, 3.5)


def observe(
    st: dict,
    age_fy: np.ndarray,
    exam_age: np.ndarray,
    birth_year: np.ndarray,
    rng: np.random.Generator,
    cal: model.Calibration,
    outcomes_only: bool = False,
) -> dict[str, np.ndarray]:
    """Checkup columns (canonical names) for every person of ``st``; NaN = missing.

    ``age_fy`` is the FY-end age (年度末年齢, drives the value maps), ``exam_age`` the completed
    age on the exam day (used by the eGFR equation).
    """
    n = len(st["sex"])
    sex = st["sex"]
    c = st["_cores"] if "_cores" in st else model.cores(st)
    pp = presence_probs(st)
    timing = model.draw_timing(st, rng, pp["fast"])
    items = OUTCOME_ITEMS if outcomes_only else tuple(model.OBS)
    raw = model.raw_observations(st, c, timing, rng, items)
    v = {k: cal.value(k, raw[k], sex, age_fy) for k in items}
    out: dict[str, np.ndarray] = {
        "sex": sex.astype(float),
        "blood_draw_timing": timing.astype(float),
    }
    fasting = timing == 2

    # anthropometry
    out["waist_cm"] = np.where(_present(rng, n, P_WAIST), np.round(v["waist_cm"], 1), np.nan)
    sbp = np.round(v["sbp"])
    dbp = np.minimum(np.round(v["dbp"]), sbp - 15)
    out["sbp"], out["dbp"] = sbp, dbp
    # lipids
    tg = np.round(v["tg"])
    out["tg"] = np.where(_present(rng, n, P_TG), tg, np.nan)
    out["hdl"] = np.where(_present(rng, n, P_HDL), np.round(v["hdl"]), np.nan)
    ldl_ok = _present(rng, n, pp["ldl"]) & ((tg < 400) | _present(rng, n, P_LDL_TG400))
    out["ldl"] = np.where(ldl_ok, np.round(v["ldl"]), np.nan)
    tg_part = np.where(fasting, np.minimum(tg, 400) / 5.0, np.minimum(tg, 400) / 6.0)
    nhdl = np.round(v["ldl"] + tg_part + 3.0 * rng.standard_normal(n))
    nhdl_ok = ~ldl_ok | (tg >= 400) | _present(rng, n, P_NHDL_EXTRA)
    out["non_hdl"] = np.where(nhdl_ok & ~np.isnan(out["hdl"]), nhdl, np.nan)
    # liver (one panel)
    liver_ok = _present(rng, n, P_LIVER)
    for k in ("alt", "ggt") + (() if outcomes_only else ("ast",)):
        out[k] = np.where(liver_ok, np.round(v[k]), np.nan)
    # glucose: what the facility's panel measures (FPG only when fasting; HbA1c when no FPG)
    fpg_ok, a1c_ok = glucose_measured(fasting, pp, lambda: rng.random(n))
    out["hba1c"] = np.where(a1c_ok, np.round(v["hba1c"], 1), np.nan)
    out["fpg"] = np.where(fpg_ok, np.round(v["fpg"]), np.nan)
    # urine
    urine_ok = _present(rng, n, P_URINE)
    out["urine_protein"] = np.where(
        urine_ok & _present(rng, n, P_UP), np.clip(np.round(v["urine_protein"]), 1, 5), np.nan
    )
    # kidney: creatinine for most (baseline regime), more often when triggered (詳細な健診)
    trig = (sbp >= 130) | (dbp >= 85) | (v["hba1c"] >= 5.55)
    cre_ok = _present(rng, n, pp["cre"]) | (trig & _present(rng, n, P_CRE_TRIGGER))
    sexf = np.where(sex == 2, 0.739, 1.0)
    cre, egfr = creatinine_from_egfr(v["egfr"], exam_age, sexf)
    out["creatinine"] = np.where(cre_ok, cre, np.nan)
    out["egfr"] = np.where(cre_ok, egfr, np.nan)
    for m in model.MEDS:
        col = model.MED_COLUMN[m]
        out[col] = np.where(_present(rng, n, P_QMED), np.where(st["m_" + m], 1.0, 2.0), np.nan)
    if outcomes_only:  # uric acid as the Monte-Carlo truth draws it (last)
        ua_ok = _present(rng, n, pp["ua"])
        ua = model.raw_observations(st, c, timing, rng, ("uric_acid",))["uric_acid"]
        out["uric_acid"] = np.where(
            ua_ok, np.round(cal.value("uric_acid", ua, sex, age_fy), 1), np.nan
        )
        return out

    # everything else -------------------------------------------------------------------------
    h = height_cm(st, birth_year) + 0.3 * rng.standard_normal(n)
    h = np.round(h, 1)
    w = np.round(v["bmi"] * (h / 100) ** 2, 1)
    out["height_cm"], out["weight_kg"] = h, w
    out["bmi"] = np.round(w / (h / 100) ** 2, 1)
    rg_inc = np.where(timing == 4, 0.28, 0.12) * np.exp(0.35 * rng.standard_normal(n))
    rg_ok = ~fasting & (~a1c_ok | _present(rng, n, 0.3))
    out["random_glucose"] = np.where(rg_ok, np.round(v["fpg"] * (1 + rg_inc)), np.nan)
    out["urine_glucose"] = np.where(
        urine_ok & _present(rng, n, 0.995), np.clip(np.round(v["urine_glucose"]), 1, 5), np.nan
    )
    out["uric_acid"] = np.where(_present(rng, n, pp["ua"]), np.round(v["uric_acid"], 1), np.nan)
    hb_ok = _present(rng, n, pp["hb"]) | (st["h_anemia"] & _present(rng, n, 0.6))
    out["hemoglobin"] = np.where(hb_ok, np.round(v["hemoglobin"], 1), np.nan)

    # questionnaire (canonical 2024 codes) ----------------------------------------------------
    def yn(b):
        return np.where(b, 1.0, 2.0)

    q = {
        "q_hist_stroke": yn(st["h_stroke"]),
        "q_hist_heart": yn(st["h_heart"]),
        "q_hist_kidney": yn(st["h_kidney"]),
        "q_anemia": yn(st["h_anemia"]),
        "q_smoking": st["smk"].astype(float),
        "q_exercise": yn(st["exer"]),
        "q_walking": yn(st["walk"]),
        "q_walk_fast": yn(st["walkfast"]),
        "q_chewing": st["chew"].astype(float),
        "q_eating_speed": st["speed"].astype(float),
        "q_late_dinner": yn(st["late"]),
        "q_snacks": st["snack"].astype(float),
        "q_skip_breakfast": yn(st["skipbf"]),
        "q_sleep": yn(st["sleep_ok"]),
        "q_intention": st["intention"].astype(float),
        "q_guidance_received": yn(st["guidance"]),
    }
    p_wg = ndb.by_age(model.ndb_targets()["weight_gain"], age_fy, sex)
    wg_score = (0.8 * c["A"] + 0.6 * st["t_wg"]) / 1.0
    q["q_weight_gain"] = yn(wg_score > ndb.probit(1 - p_wg))
    freq, amt = model.alcohol_codes(st)
    q["q_alcohol_freq"] = freq.astype(float)
    amt = np.where(np.isnan(amt) & _present(rng, n, 0.5), 1.0, amt)
    q["q_alcohol_amount"] = amt
    miss = {"q_smoking": 0.003, "q_intention": 0.05, "q_guidance_received": 0.05}
    for k, val in q.items():
        out[k] = np.where(_present(rng, n, miss.get(k, 0.03)), np.nan, val)
    return out
