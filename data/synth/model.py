"""Latent person model of the synthetic ward: traits, lifestyle, yearly dynamics, measurements.

Everything is vectorised over persons; a *state* is a ``dict[str, np.ndarray]`` of equal-length
arrays (so it can be indexed, concatenated and replicated for Monte Carlo).

Structure (all latent quantities in standard-deviation units):

* **stable traits** ``g*`` (genetic / baseline propensities, N(0,1)), one per core latent, plus
  stable propensities for lifestyle answers, measurement regime and medication uptake (``u*``);
* **lifestyle states** (smoking 1/2/3, alcohol frequency/amount, exercise, walking, late dinner,
  snacks, breakfast, eating speed, sleep, …) that persist year to year with small transition
  probabilities (:func:`step`); cross-sectional shares follow NDB (smoking, daily drinking) or
  national survey-like age curves;
* **core latents** (:func:`cores`): adiposity ``A`` = stable part + AR(1) part + a smoothed
  lifestyle effect; every other core = loading × ``A`` + lifestyle effects + stable trait +
  AR(1) fluctuation (glycaemia ``G``, BP ``B``, TG ``T``, HDL ``H``, LDL ``L``, liver ``ALT``,
  ``AST``, ``GGT``, kidney ``K`` (high = good), proteinuria ``P``, uric acid, haemoglobin, waist
  ``W``, fasting glucose ``F``, DBP ``D``);
* **medication** (:func:`update_meds`): on treatment when a stable uniform ``u`` falls below
  ``Φ(α(sex, age) + β·core)`` — so people whose untreated level rises past the referral range
  start with increasing probability — and, once on, they stay on (small yearly stop rate);
  ``α`` is calibrated so the prevalence matches NDB by sex × age;
* **observations** (:func:`raw_observations`): core − medication effect + visit/measurement
  noise, in raw latent units. :class:`Calibration` maps raw values to reported values per sex
  and age through NDB-fitted quantile functions composed with the empirical distribution of the
  raw values in a fixed-seed pilot cohort, so attended checkups reproduce NDB FY2021 means and
  threshold prevalences by sex × 5-year band while individual trajectories keep the latent
  dynamics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from data.judgements import OUTCOME_MEDICATION
from data.synth import ndb

AGES = np.arange(40, 77)  # table rows: FY-end age 40..76 (75/76 only used for look-ahead)
N_AGE = len(AGES)

# ---------------------------------------------------------------------------------------------
# Lifestyle indicators and their effects on the core latents
# ---------------------------------------------------------------------------------------------

#: lifestyle indicator columns of :func:`lifestyle_matrix`, and the questionnaire item each
#: indicator belongs to (used to attribute driver contributions).
INDICATORS: tuple[tuple[str, str], ...] = (
    ("smk_cur", "q_smoking"),
    ("smk_ex", "q_smoking"),
    ("exer", "q_exercise"),
    ("walk", "q_walking"),
    ("late", "q_late_dinner"),
    ("snack_daily", "q_snacks"),
    ("snack_some", "q_snacks"),
    ("skipbf", "q_skip_breakfast"),
    ("fast", "q_eating_speed"),
    ("slow", "q_eating_speed"),
    ("sleep_bad", "q_sleep"),
    ("alc_freq20", "q_alcohol_freq"),  # 20 g/day units at a typical 1.5 合 per drinking day
    ("alc_amt20", "q_alcohol_amount"),  # extra 20 g/day units from the amount above 1.5 合
    ("alc_daily", "q_alcohol_freq"),
)
_IDX = {n: i for i, (n, _) in enumerate(INDICATORS)}
LIFE_CORES = ("A", "G", "B", "T", "H", "L", "ALT", "AST", "GGT", "K", "UA", "HB")
_GAMMA_SPEC: dict[str, dict[str, float]] = {
    "A": {
        "smk_cur": -0.10,
        "smk_ex": 0.08,
        "exer": -0.15,
        "walk": -0.10,
        "late": 0.12,
        "snack_daily": 0.15,
        "snack_some": 0.05,
        "skipbf": 0.08,
        "fast": 0.22,
        "slow": -0.10,
        "sleep_bad": 0.05,
        "alc_freq20": 0.03,
        "alc_amt20": 0.03,
    },
    "G": {
        "smk_cur": 0.12,
        "exer": -0.10,
        "walk": -0.06,
        "late": 0.04,
        "snack_daily": 0.06,
        "skipbf": 0.06,
        "sleep_bad": 0.04,
    },
    "B": {
        "exer": -0.10,
        "walk": -0.05,
        "sleep_bad": 0.06,
        "alc_freq20": 0.10,
        "alc_amt20": 0.10,
        "alc_daily": 0.05,
        "fast": 0.03,
    },
    "T": {
        "smk_cur": 0.15,
        "exer": -0.12,
        "late": 0.10,
        "snack_daily": 0.10,
        "skipbf": 0.06,
        "alc_freq20": 0.08,
        "alc_amt20": 0.08,
    },
    "H": {
        "smk_cur": -0.25,
        "exer": 0.15,
        "walk": 0.06,
        "alc_freq20": 0.12,
        "alc_amt20": 0.08,
        "alc_daily": 0.10,
    },
    "L": {"exer": -0.04, "snack_daily": 0.06, "alc_freq20": -0.04},
    "ALT": {
        "exer": -0.08,
        "late": 0.05,
        "snack_daily": 0.06,
        "alc_freq20": 0.03,
        "alc_amt20": 0.03,
    },
    "AST": {"alc_freq20": 0.10, "alc_amt20": 0.10, "exer": -0.04},
    "GGT": {"smk_cur": 0.12, "alc_freq20": 0.28, "alc_amt20": 0.28, "alc_daily": 0.10},
    "K": {"smk_cur": -0.05},
    "UA": {"alc_freq20": 0.12, "alc_amt20": 0.12},
    "HB": {"smk_cur": 0.15, "alc_freq20": 0.03},
}
GAMMA = np.zeros((len(INDICATORS), len(LIFE_CORES)))
for _c, _d in _GAMMA_SPEC.items():
    for _n, _v in _d.items():
        GAMMA[_IDX[_n], LIFE_CORES.index(_c)] = _v

#: AR(1) persistence and scale of the fluctuating part, and scale of the stable trait.
AR = {
    "A": (0.85, 0.34),
    "G": (0.90, 0.14),
    "B": (0.70, 0.22),
    "T": (0.60, 0.22),
    "H": (0.70, 0.20),
    "L": (0.60, 0.22),
    "ALT": (0.60, 0.28),
    "GGT": (0.70, 0.22),
    "K": (0.80, 0.20),
    "UA": (0.60, 0.30),
    "HB": (0.60, 0.30),
    "F": (0.50, 0.10),
}
TRAIT = {
    "A": 0.83,
    "G": 0.92,
    "B": 0.88,
    "T": 0.80,
    "H": 0.90,
    "L": 0.90,
    "ALT": 0.72,
    "AST": 0.55,
    "GGT": 0.75,
    "K": 0.95,
    "P": 0.60,
    "UA": 0.80,
    "HB": 0.90,
    "W": 0.35,
    "F": 0.20,
    "D": 0.45,
}
#: loadings of cores on other cores (child: {parent: loading}); order matters (parents first).
LOADINGS: dict[str, dict[str, float]] = {
    "G": {"A": 0.45},
    "B": {"A": 0.35},
    "T": {"A": 0.45},
    "H": {"A": -0.35},
    "L": {"A": 0.20},
    "ALT": {"A": 0.55},
    "AST": {"ALT": 0.55},
    "GGT": {"A": 0.30},
    "K": {"B": -0.12, "G": -0.10},
    "P": {"G": 0.25, "B": 0.25, "K": -0.30},
    "UA": {"A": 0.40, "K": -0.15},
    "HB": {},
    "W": {"A": 0.88},
    "F": {"G": 0.95},
    "D": {"B": 0.80},
}
CORE_ORDER = (
    "A",
    "G",
    "B",
    "T",
    "H",
    "L",
    "ALT",
    "AST",
    "GGT",
    "K",
    "P",
    "UA",
    "HB",
    "W",
    "F",
    "D",
)

#: observed items: (core, measurement noise sd); medication effects are in MED_EFFECT.
OBS: dict[str, tuple[str, float]] = {
    "bmi": ("A", 0.05),
    "waist_cm": ("W", 0.10),
    "sbp": ("B", 0.16),
    "dbp": ("D", 0.16),
    "tg": ("T", 0.22),
    "hdl": ("H", 0.15),
    "ldl": ("L", 0.18),
    "alt": ("ALT", 0.30),
    "ast": ("AST", 0.35),
    "ggt": ("GGT", 0.20),
    "fpg": ("F", 0.12),
    "hba1c": ("G", 0.05),
    "egfr": ("K", 0.25),
    "hemoglobin": ("HB", 0.30),
    "urine_protein": ("P", 0.50),
    "urine_glucose": ("G", 0.50),
    "uric_acid": ("UA", 0.30),
}
MEDS = ("bp", "glu", "lip")
MED_COLUMN = {"bp": "q_med_bp", "glu": "q_med_glucose", "lip": "q_med_lipid"}
MED_NDB = {
    "bp": "on_antihypertensive_med",
    "glu": "on_glucose_lowering_med_or_insulin",
    "lip": "on_lipid_lowering_med",
}
MED_BETA = {"bp": 1.6, "glu": 2.2, "lip": 1.4}
MED_STOP = {"bp": 0.03, "glu": 0.02, "lip": 0.05}
MED_EFFECT: dict[str, dict[str, float]] = {
    "bp": {"sbp": -0.80, "dbp": -0.60},
    "glu": {"hba1c": -0.90, "fpg": -0.90, "urine_glucose": -0.30},
    "lip": {"ldl": -1.40, "tg": -0.30, "hdl": 0.10},
}
#: non-fasting draws raise TG (採血時間 3: 3.5-10 h, 4: <3.5 h)
TG_NONFASTING = {3: 0.25, 4: 0.45}

# ---------------------------------------------------------------------------------------------
# Lifestyle stationary shares by sex and age (nodes at ages 40, 50, 60, 70, 75)
# ---------------------------------------------------------------------------------------------
_NODES = np.array([40.0, 50.0, 60.0, 70.0, 75.0])
_LIFE_P: dict[str, tuple[list[float], list[float]]] = {  # (men, women) P(answer "yes"/code 1)
    "exer": ([0.22, 0.24, 0.33, 0.45, 0.47], [0.17, 0.20, 0.30, 0.40, 0.41]),
    "walk": ([0.45, 0.46, 0.50, 0.55, 0.55], [0.42, 0.44, 0.50, 0.53, 0.52]),
    "walkfast": ([0.47, 0.47, 0.48, 0.50, 0.50], [0.45, 0.46, 0.48, 0.48, 0.47]),
    "late": ([0.38, 0.35, 0.25, 0.14, 0.12], [0.20, 0.17, 0.12, 0.08, 0.07]),
    "skipbf": ([0.25, 0.20, 0.12, 0.05, 0.04], [0.15, 0.12, 0.07, 0.04, 0.03]),
    "sleep_ok": ([0.64, 0.66, 0.74, 0.80, 0.81], [0.62, 0.64, 0.72, 0.78, 0.78]),
    "snack1": ([0.14, 0.14, 0.15, 0.16, 0.16], [0.30, 0.30, 0.30, 0.29, 0.28]),
    "snack2": ([0.55, 0.55, 0.55, 0.53, 0.53], [0.56, 0.56, 0.56, 0.56, 0.56]),
    "speed1": ([0.36, 0.35, 0.31, 0.27, 0.26], [0.27, 0.27, 0.25, 0.22, 0.22]),
    "speed3": ([0.07, 0.07, 0.08, 0.09, 0.09], [0.08, 0.08, 0.08, 0.09, 0.09]),
    "chew2": ([0.10, 0.14, 0.20, 0.26, 0.28], [0.09, 0.12, 0.18, 0.24, 0.26]),
    "chew3": ([0.003, 0.005, 0.008, 0.013, 0.015], [0.002, 0.004, 0.007, 0.011, 0.013]),
    "ex_of_non": ([0.42, 0.48, 0.55, 0.60, 0.60], [0.14, 0.14, 0.12, 0.10, 0.10]),
    "stroke": ([0.004, 0.010, 0.022, 0.045, 0.055], [0.003, 0.006, 0.012, 0.025, 0.032]),
    "heart": ([0.008, 0.018, 0.040, 0.080, 0.095], [0.004, 0.008, 0.018, 0.040, 0.050]),
    "kidney": ([0.003, 0.005, 0.008, 0.013, 0.016], [0.002, 0.004, 0.006, 0.010, 0.012]),
    "anemia": ([0.02, 0.025, 0.035, 0.05, 0.06], [0.16, 0.14, 0.10, 0.09, 0.10]),
    "guidance": ([0.10, 0.13, 0.16, 0.18, 0.18], [0.07, 0.10, 0.13, 0.15, 0.15]),
}
INTENTION_P = np.array([0.25, 0.30, 0.13, 0.08, 0.24])


def row_of(sex: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Flat row of a ``[sex, AGES]`` table (ages clipped to 40..76)."""
    return (np.asarray(sex, dtype=np.int64) - 1) * N_AGE + np.clip(
        np.asarray(age, dtype=np.int64) - 40, 0, N_AGE - 1
    )


@cache
def _life_table(name: str) -> np.ndarray:
    m, f = _LIFE_P[name]
    return np.concatenate([np.interp(AGES, _NODES, m), np.interp(AGES, _NODES, f)])


def life_p(name: str, sex: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Stationary share of a lifestyle/history answer for integer FY-end ages."""
    return _life_table(name)[row_of(sex, age)]


@cache
def _age_table(name: str) -> np.ndarray:
    """NDB-derived ``[sex*age, ...]`` tables (see :func:`ndb_targets`) for integer ages."""
    sexes = np.repeat([1, 2], N_AGE)
    ages = np.tile(AGES, 2).astype(float)
    if name == "alc_freq_cum":
        return _alc_freq_cum(sexes, ages)
    if name == "amt_cum":
        return _amt_cum(sexes, ages)
    return ndb.by_age(ndb_targets()[name], ages, sexes)


def _band_p(table: np.ndarray, sex: np.ndarray, age: np.ndarray) -> np.ndarray:
    return ndb.by_age(table, age, sex)


@lru_cache(maxsize=1)
def ndb_targets() -> dict[str, np.ndarray]:
    """Questionnaire-type NDB targets as ``[sex, band(, category)]`` tables."""
    freq = ndb.share_table(
        "q18_alcohol_frequency", ["毎日", "時々", "ほとんど飲まない（飲めない）"]
    )
    amt = ndb.share_table(
        "q19_alcohol_amount_per_day", ["1合未満", "1～2合未満", "2～3合未満", "3合以上"]
    )
    wg = ndb.share_table("q09_weight_gain_10kg_since_20", ["はい", "いいえ"])
    out = {
        "smoker": ndb.band_table("current_smoker"),
        "alc_freq": freq,
        "alc_amt": amt,
        "weight_gain": wg[..., 0],
    }
    for m, ind in MED_NDB.items():
        out["med_" + m] = ndb.band_table(ind)
    return out


def _alc_freq_cum(sex: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Cumulative shares of frequency codes ordered [1,2,3,4,5,6,8] (7 = quit is a flag)."""
    f = _band_p(ndb_targets()["alc_freq"], sex, age)  # daily, sometimes, hardly
    d, s, h = f[:, 0], f[:, 1], f[:, 2]
    probs = np.stack([d, 0.15 * s, 0.22 * s, 0.30 * s, 0.33 * s, 0.30 * h, 0.70 * h], axis=1)
    return np.cumsum(probs, axis=1)


_FREQ_ORDER = np.array([1, 2, 3, 4, 5, 6, 8])
_DAYS_PER_WEEK = np.array([0, 7.0, 5.5, 3.5, 1.5, 0.5, 0.1, 0.0, 0.0])  # by code 0..8
_GO_MID = np.array([0, 0.5, 1.5, 2.5, 4.0, 5.5])  # 合 by amount code 1..5


def _amt_cum(sex: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Cumulative amount shares (codes 1..5) among drinkers, from NDB q19 and q18."""
    a = _band_p(ndb_targets()["alc_amt"], sex, age)
    h = _band_p(ndb_targets()["alc_freq"], sex, age)[:, 2]
    drinkers = np.maximum(1 - h, 0.05)
    p1 = np.maximum(a[:, 0] - h, 0.05 * drinkers)
    probs = np.stack([p1, a[:, 1], a[:, 2], 0.8 * a[:, 3], 0.2 * a[:, 3]], axis=1)
    probs /= probs.sum(axis=1, keepdims=True)
    return np.cumsum(probs, axis=1)


def _ordinal(u: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """Index of the first cumulative share above ``u`` (row-wise)."""
    out = np.zeros(len(u), dtype=np.int64)
    for j in range(cum.shape[1] - 1):
        out += u > cum[:, j]
    return out


# ---------------------------------------------------------------------------------------------
# State initialisation and dynamics
# ---------------------------------------------------------------------------------------------

_TRAITS = tuple("g" + c for c in TRAIT) + (
    "t_exer",
    "t_walk",
    "t_walkfast",
    "t_late",
    "t_skipbf",
    "t_sleep",
    "t_snack",
    "t_speed",
    "t_chew",
    "t_smoke",
    "t_wg",
    "t_fast",
    "t_a1c",
    "t_cre",
    "t_ua",
    "t_hb",
    "t_ldl",
    "t_urine",
)
_ARS = tuple("x" + c for c in AR)


def _z(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal(n, dtype=np.float32)


def _binary(rng, p, trait, b=0.8):
    """Bernoulli(p) marginally, with a stable person propensity ``trait``."""
    c = ndb.probit(p) * np.sqrt(1 + b * b)
    return (c + b * trait + rng.standard_normal(len(p))) > 0


def _cat3(rng, p1, p2, trait, b=0.8):
    """Categories 1/2/3 with shares p1, p2, rest; stable propensity ``trait`` (low → 1)."""
    y = (b * trait + rng.standard_normal(len(p1))) / np.sqrt(1 + b * b)
    u = ndb.cdf(y)
    return np.where(u < p1, 1, np.where(u < p1 + p2, 2, 3)).astype(np.int8)


def _lifestyle_draw(st, sex, age, rng, redraw=None):
    """(Re)draw lifestyle answers from their stationary shares (all, or where ``redraw``)."""

    def p(name):
        return life_p(name, sex, age)

    makers = {
        "exer": lambda: _binary(rng, p("exer"), st["t_exer"]),
        "walk": lambda: _binary(rng, p("walk"), st["t_walk"]),
        "walkfast": lambda: _binary(rng, p("walkfast"), st["t_walkfast"]),
        "late": lambda: _binary(rng, p("late"), st["t_late"]),
        "skipbf": lambda: _binary(rng, p("skipbf"), st["t_skipbf"]),
        "sleep_ok": lambda: _binary(rng, p("sleep_ok"), st["t_sleep"]),
        "snack": lambda: _cat3(rng, p("snack1"), p("snack2"), st["t_snack"]),
        "speed": lambda: _cat3(
            rng, p("speed1"), 1 - p("speed1") - p("speed3"), st["t_speed"], b=1.5
        ),
        "chew": lambda: _cat3(rng, 1 - p("chew2") - p("chew3"), p("chew2"), st["t_chew"], b=1.2),
    }
    if redraw is None:
        for k, make in makers.items():
            st[k] = make()
        return
    for k, mask in redraw.items():
        st[k] = np.where(mask, makers[k](), st[k])


def init_state(sex: np.ndarray, age: np.ndarray, rng: np.random.Generator, cal) -> dict:
    """Draw persons of the given sex and FY-end age from the cross-sectional distribution."""
    n = len(sex)
    st: dict[str, np.ndarray] = {"sex": sex.astype(np.int8), "age": np.asarray(age)}
    for t in _TRAITS:
        st[t] = _z(rng, n)
    for x in _ARS:
        st[x] = _z(rng, n)
    for m in MEDS:
        st["u_" + m] = rng.random(n)
    st["height_z"] = _z(rng, n)
    # lifestyle
    _lifestyle_draw(st, sex, age, rng)
    p_smk = _age_table("smoker")[row_of(sex, age)]
    cur = _binary(rng, p_smk, st["t_smoke"], b=1.0)
    ex = ~cur & (rng.random(n) < life_p("ex_of_non", sex, age))
    st["smk"] = np.where(cur, 1, np.where(ex, 2, 3)).astype(np.int8)
    st["alc_y"] = _z(rng, n)
    st["amt_y"] = 0.55 * st["alc_y"] + 0.835 * _z(rng, n)
    freq = _FREQ_ORDER[
        _ordinal(ndb.cdf(-st["alc_y"]), _age_table("alc_freq_cum")[row_of(sex, age)])
    ]
    st["alc_quit"] = np.isin(freq, (6, 8)) & (rng.random(n) < 0.18)
    st["intention"] = (1 + np.searchsorted(np.cumsum(INTENTION_P)[:-1], rng.random(n))).astype(
        np.int8
    )
    st["guidance"] = rng.random(n) < life_p("guidance", sex, age)
    st["sglt2"] = rng.random(n) < 0.25
    st["pref_month"] = _exam_month(rng, n)
    life = lifestyle_matrix(st)
    st["LA"] = life @ GAMMA[:, 0]
    c = cores(st, life)
    for m in MEDS:
        st["m_" + m] = np.zeros(n, dtype=bool)
    update_meds(st, c, age, rng, cal, first=True)
    # histories: probit on age-specific prevalence with risk dependence
    risk = 0.35 * c["B"] + 0.25 * c["G"] + 0.3 * (st["smk"] == 1)
    for h in ("stroke", "heart"):
        st["h_" + h] = _binary(rng, life_p(h, sex, age), risk / 0.8, b=0.6)
    st["h_kidney"] = _binary(rng, life_p("kidney", sex, age), -c["K"], b=1.0)
    st["h_anemia"] = _binary(rng, life_p("anemia", sex, age), -st["gHB"], b=1.0)
    return st


def _exam_month(rng, n):
    # April..March weights (month index 0 = April), concentrated June-October
    w = np.array([2, 5, 12, 14, 12, 14, 15, 10, 6, 4, 3, 3], dtype=float)
    return rng.choice(12, size=n, p=w / w.sum()).astype(np.int8)


def lifestyle_matrix(st: dict) -> np.ndarray:
    """Indicator matrix (n × len(INDICATORS)) of the current lifestyle answers."""
    n = len(st["sex"])
    L = np.zeros((n, len(INDICATORS)))
    smk = st["smk"]
    L[:, _IDX["smk_cur"]] = smk == 1
    L[:, _IDX["smk_ex"]] = smk == 2
    L[:, _IDX["exer"]] = st["exer"]
    L[:, _IDX["walk"]] = st["walk"]
    L[:, _IDX["late"]] = st["late"]
    L[:, _IDX["snack_daily"]] = st["snack"] == 1
    L[:, _IDX["snack_some"]] = st["snack"] == 2
    L[:, _IDX["skipbf"]] = st["skipbf"]
    L[:, _IDX["fast"]] = st["speed"] == 1
    L[:, _IDX["slow"]] = st["speed"] == 3
    L[:, _IDX["sleep_bad"]] = ~st["sleep_ok"]
    freq, amt = alcohol_codes(st)
    days = _DAYS_PER_WEEK[freq] / 7.0
    go = np.where(np.isnan(amt), 0.5, _GO_MID[np.nan_to_num(amt, nan=1).astype(int)])
    L[:, _IDX["alc_freq20"]] = days * 1.5
    L[:, _IDX["alc_amt20"]] = np.clip(days * (go - 1.5), -1.0, 4.0)
    L[:, _IDX["alc_daily"]] = freq == 1
    return L


def alcohol_codes(st: dict) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (2024) alcohol frequency code 1..8 and amount code 1..5 (NaN if not asked)."""
    row = row_of(st["sex"], st["age"])
    freq = _FREQ_ORDER[_ordinal(ndb.cdf(-st["alc_y"]), _age_table("alc_freq_cum")[row])]
    freq = np.where(st["alc_quit"] & np.isin(freq, (5, 6, 8)), 7, freq)
    amt = (1 + _ordinal(ndb.cdf(st["amt_y"]), _age_table("amt_cum")[row])).astype(float)
    amt = np.where(np.isin(freq, (7, 8)), np.nan, amt)
    return freq, amt


def _cores_loop(get) -> dict[str, np.ndarray]:
    """Reference definition of the core latents (``get(name)`` returns an input column)."""
    eff_cols = {core: 0.0 for core in LIFE_CORES}
    life = get("L")
    for j, core in enumerate(LIFE_CORES):
        eff_cols[core] = life @ GAMMA[:, j]
    c: dict[str, np.ndarray] = {}
    for core in CORE_ORDER:
        v = TRAIT[core] * get("g" + core)
        if core in AR:
            v = v + AR[core][1] * get("x" + core)
        if core == "A":
            v = v + get("LA")
        elif core in LIFE_CORES:
            v = v + eff_cols[core]
        for parent, load in LOADINGS.get(core, {}).items():
            v = v + load * c[parent]
        c[core] = v
    return c


_G_KEYS = tuple("g" + c for c in CORE_ORDER)
_X_KEYS = tuple("x" + c for c in AR)


@lru_cache(maxsize=1)
def core_matrix() -> np.ndarray:
    """Linear map ``[g…, x…, LA, L…] → cores`` (rows: inputs, columns: CORE_ORDER)."""
    n_in = len(_G_KEYS) + len(_X_KEYS) + 1 + len(INDICATORS)
    eye = np.eye(n_in)

    def get(name):
        if name == "L":
            return eye[:, -len(INDICATORS) :]
        if name == "LA":
            return eye[:, len(_G_KEYS) + len(_X_KEYS)]
        keys = _G_KEYS + _X_KEYS
        return eye[:, keys.index(name)]

    c = _cores_loop(get)
    return np.stack([c[k] for k in CORE_ORDER], axis=1)


def cores(st: dict, life: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Untreated core latents of the current state (columns of a single matrix product)."""
    if life is None:
        life = lifestyle_matrix(st)
    n = len(st["sex"])
    ng = len(_G_KEYS)
    if "_gbase" in st:  # stable-trait part precomputed per person (Monte-Carlo replicates)
        start, mat = ng, st["_gbase"].copy()
    else:
        start, mat = 0, 0.0
    keys = (_G_KEYS + _X_KEYS)[start:]
    inp = np.empty((len(keys) + 1 + len(INDICATORS), n))  # inputs × persons
    for i, k in enumerate(keys):
        inp[i] = st[k]
    inp[len(keys)] = st["LA"]
    inp[-len(INDICATORS) :] = life.T
    mat = mat + core_matrix()[start:].T @ inp  # cores × persons, rows contiguous
    return {k: mat[i] for i, k in enumerate(CORE_ORDER)}


def _med_core(c: dict, m: str) -> np.ndarray:
    return {"bp": c["B"], "glu": c["G"], "lip": c["L"] + 0.3 * c["T"]}[m]


def update_meds(st, c, age, rng, cal, first=False):
    """Medication status: on when ``u < Φ(α(sex, age) + β·core)``; sticky once on."""
    sex = st["sex"]
    ai = np.clip(np.asarray(age, dtype=int) - 40, 0, N_AGE - 1)
    for m in MEDS:
        alpha = cal.alpha[m][sex - 1, ai]
        crit = st["u_" + m] < ndb.cdf(alpha + MED_BETA[m] * _med_core(c, m))
        if first:
            st["m_" + m] = crit
        else:
            keep = st["m_" + m] & (rng.random(len(sex)) >= MED_STOP[m])
            new = crit & ~st["m_" + m]
            st["m_" + m] = crit | keep
            if m == "glu":
                st["sglt2"] = np.where(new, rng.random(len(sex)) < 0.25, st["sglt2"])


#: optional state of a what-if counterfactual (data.synth.whatif), kept when replicated:
#: ``keeps_weight`` — quit smoking without the post-cessation weight gain.
_WHATIF_STATE = ("keeps_weight",)

#: state needed to advance and observe outcome-relevant values (Monte-Carlo replicates)
_OUTCOME_STATE = (
    "sex",
    "age",
    "LA",
    "smk",
    "alc_y",
    "amt_y",
    "alc_quit",
    "exer",
    "walk",
    "late",
    "skipbf",
    "sleep_ok",
    "snack",
    "speed",
    "sglt2",
    "m_bp",
    "m_glu",
    "m_lip",
) + _X_KEYS

_BIN_ITEMS = {  # item: (share name, trait, b, yearly redraw probability)
    "exer": ("exer", "t_exer", 0.8, 0.15),
    "walk": ("walk", "t_walk", 0.8, 0.15),
    "walkfast": ("walkfast", "t_walkfast", 0.8, 0.12),
    "late": ("late", "t_late", 0.8, 0.18),
    "skipbf": ("skipbf", "t_skipbf", 0.8, 0.12),
    "sleep_ok": ("sleep_ok", "t_sleep", 0.8, 0.20),
}
_CAT_ITEMS = {  # item: (trait, b, redraw probability)
    "snack": ("t_snack", 0.8, 0.15),
    "speed": ("t_speed", 1.5, 0.04),
    "chew": ("t_chew", 1.2, 0.10),
}


def _cat_shares(item, sex, age):
    p = lambda name: life_p(name, sex, age)  # noqa: E731
    if item == "snack":
        return p("snack1"), p("snack1") + p("snack2")
    if item == "speed":
        return p("speed1"), 1 - p("speed3")
    return 1 - p("chew2") - p("chew3"), 1 - p("chew3")


def prepare_step(st: dict, age_next: np.ndarray, cal) -> dict[str, np.ndarray]:
    """Per-person transition probabilities for the coming year (exactly the laws of
    :func:`_binary` / :func:`_cat3` redraws, smoking transitions and medication criteria)."""
    sex = st["sex"]
    a = np.asarray(age_next)
    af = a.astype(float)
    prep: dict[str, np.ndarray] = {}
    for item, (share, trait, b, _) in _BIN_ITEMS.items():
        c = ndb.probit(life_p(share, sex, a)) * np.sqrt(1 + b * b)
        prep["P_" + item] = ndb.cdf(c + b * st[trait])
    for item, (trait, b, _) in _CAT_ITEMS.items():
        c1, c12 = _cat_shares(item, sex, a)
        k = np.sqrt(1 + b * b)
        prep["Q1_" + item] = ndb.cdf(ndb.probit(c1) * k - b * st[trait])
        prep["Q12_" + item] = ndb.cdf(ndb.probit(c12) * k - b * st[trait])
    prep["smk_q"] = np.interp(af, [40, 70], [0.03, 0.06]) + 0.04 * (st["m_bp"] | st["m_glu"])
    prep["smk_r"] = np.interp(af, [40, 70], [0.03, 0.005])
    prep["smk_s"] = np.interp(af, [40, 60], [0.003, 0.0005])
    ai = np.clip(a.astype(int) - 40, 0, N_AGE - 1)
    for m in MEDS:
        alpha = cal.alpha[m][sex - 1, ai]
        prep["thr_" + m] = (ndb.probit(st["u_" + m]) - alpha) / MED_BETA[m]
    return prep


def step(
    st: dict,
    age_next: np.ndarray,
    rng: np.random.Generator,
    cal,
    outcomes_only: bool = False,
    k: int = 1,
    adjust: Callable[[dict], None] | None = None,
) -> dict:
    """Advance the state one fiscal year (persons age to ``age_next``). Returns a new dict.

    With ``k > 1`` every person is replicated ``k`` times (consecutive rows) and the replicates
    get independent transitions — the Monte-Carlo truth uses this. ``outcomes_only`` skips the
    updates that cannot affect any measured value or medication next year (histories,
    intention, guidance, exam month, chewing, walking speed); the law of everything else is
    unchanged. The computed cores are left in ``st["_cores"]``.

    ``adjust(st)``, if given, may replace arrays of the new state after this year's lifestyle
    transitions and AR(1) innovations and before adiposity, cores and medication are derived
    from them (the synthetic letter effect, :func:`letter_response`); it must not draw from
    ``rng``, so the draws — and everybody else's state — are the same with or without it.
    """
    prep = prepare_step(st, age_next, cal)
    if k > 1:
        keep = _OUTCOME_STATE if outcomes_only else tuple(x for x in st if not x.startswith("_"))
        keep += tuple(x for x in _WHATIF_STATE if x in st and x not in keep)
        gbase = core_matrix()[: len(_G_KEYS)].T @ np.stack([st[g] for g in _G_KEYS])
        st = {key: np.repeat(st[key], k) for key in keep}
        st["_gbase"] = np.repeat(gbase, k, axis=1)
        prep = {key: np.repeat(v, k) for key, v in prep.items()}
        age_next = np.repeat(age_next, k)
    else:
        st = {key: v for key, v in st.items() if not key.startswith("_")}
    n = len(st["sex"])
    st["age"] = np.asarray(age_next)
    # AR(1) fluctuations
    for core, (rho, _) in AR.items():
        st["x" + core] = rho * st["x" + core] + np.sqrt(1 - rho * rho) * rng.standard_normal(
            n, dtype=np.float32
        )
    # smoking transitions (quit more with age and once on medication, relapse less with age)
    u = rng.random(n)
    smk = st["smk"]
    smk = np.where(
        (smk == 1) & (u < prep["smk_q"]),
        2,
        np.where(
            (smk == 2) & (u < prep["smk_r"]), 1, np.where((smk == 3) & (u < prep["smk_s"]), 1, smk)
        ),
    )
    st["smk"] = smk.astype(np.int8)
    # alcohol: AR latent frequency/amount; quitting
    st["alc_y"] = 0.92 * st["alc_y"] + np.sqrt(1 - 0.92**2) * rng.standard_normal(
        n, dtype=np.float32
    )
    st["amt_y"] = 0.90 * st["amt_y"] + np.sqrt(1 - 0.90**2) * rng.standard_normal(
        n, dtype=np.float32
    )
    u = rng.random(n)
    st["alc_quit"] = np.where(st["alc_quit"], u >= 0.03, u < 0.008)
    # other lifestyle: redraw from the stationary shares with an item-specific probability
    for item, (_, _, _, r) in _BIN_ITEMS.items():
        if outcomes_only and item == "walkfast":
            continue
        u = rng.random(n)
        st[item] = np.where(u < r, (u / r) < prep["P_" + item], st[item])
    for item, (_, _, r) in _CAT_ITEMS.items():
        if outcomes_only and item == "chew":
            continue
        u = rng.random(n)
        v = u / r
        new = 1 + (v > prep["Q1_" + item]).astype(np.int8) + (v > prep["Q12_" + item])
        st[item] = np.where(u < r, new, st[item]).astype(np.int8)
    if adjust is not None:
        adjust(st)
    # smoothed lifestyle effect on adiposity, cores, medication
    life = lifestyle_matrix(st)
    la = life @ GAMMA[:, 0]
    if "keeps_weight" in st:  # what-if: an ex-smoker's adiposity stays where smoking kept it
        held = st["keeps_weight"] & (st["smk"] == 2)
        la = la + held * (GAMMA[_IDX["smk_cur"], 0] - GAMMA[_IDX["smk_ex"], 0])
    st["LA"] = 0.5 * st["LA"] + 0.5 * la
    c = cores(st, life)
    for m in MEDS:
        crit = _med_core(c, m) > prep["thr_" + m]
        keep = st["m_" + m] & (rng.random(n) >= MED_STOP[m])
        if m == "glu":
            new = crit & ~st["m_glu"]
            st["sglt2"] = np.where(new, rng.random(n) < 0.25, st["sglt2"])
        st["m_" + m] = crit | keep
    st["_cores"] = c
    if outcomes_only:
        return st
    sex = st["sex"]
    age = st["age"]
    st["intention"] = np.where(
        rng.random(n) < 0.35,
        1 + np.searchsorted(np.cumsum(INTENTION_P)[:-1], rng.random(n)),
        st["intention"],
    ).astype(np.int8)
    st["guidance"] = st["guidance"] | (rng.random(n) < 0.02)
    st["pref_month"] = np.where(rng.random(n) < 0.15, _exam_month(rng, n), st["pref_month"])
    # histories accumulate (incidence ≈ slope of the age-specific prevalence × risk)
    risk = np.exp(0.35 * c["B"] + 0.25 * c["G"] + 0.3 * (st["smk"] == 1))
    for h in ("stroke", "heart", "kidney"):
        slope = life_p(h, sex, age + 1) - life_p(h, sex, age)
        rr = risk if h != "kidney" else np.exp(-0.6 * c["K"])
        st["h_" + h] = st["h_" + h] | (rng.random(n) < 1.2 * slope * rr / 1.3)
    st["h_anemia"] = np.where(
        rng.random(n) < 0.05,
        _binary(rng, life_p("anemia", sex, age), -st["gHB"], b=1.0),
        st["h_anemia"],
    )
    return st


# ---------------------------------------------------------------------------------------------
# Letter effect (介入効果, for testing the intervention evaluation)
# ---------------------------------------------------------------------------------------------

#: Per unit of ``letter_effect``: shift of a lettered resident's core latents (SD units) in the
#: first follow-up year. Applied to the AR(1) part, so it fades with that core's persistence
#: (adiposity 0.85, glycaemia 0.90, BP 0.70 a year) and reaches the other cores through the
#: loadings (glycaemia, BP, lipids, liver, waist all follow adiposity).
LETTER_SHIFT: dict[str, float] = {"A": -0.08, "G": -0.03, "B": -0.05}
#: Per unit of ``letter_effect``: probability that each unfavourable modifiable habit (no
#: exercise, no walking, late dinners, daily snacks) of a lettered resident improves; the
#: habits then lapse at the usual yearly redraw rates.
LETTER_HABIT = 0.25
#: Per unit of ``letter_effect``: rate ``λ`` of the attendance uplift — a lettered resident who
#: would not have attended the next checkup attends with probability ``1 − exp(−λ·effect)``.
LETTER_ATTEND = 0.5
#: Per unit of ``letter_effect``: rate ``λ`` of treatment after a see-a-doctor letter — a
#: recipient not on medication for the letter's condition starts it (受診 → 治療開始) with
#: probability ``1 − exp(−λ·effect)`` (0.3 → 14 %); it then stops at the usual yearly rate.
LETTER_TREAT = 0.5
#: The medication that treats each letter topic (outcomes without one get no treatment effect).
TOPIC_MEDICATION = {
    outcome: m for outcome, col in OUTCOME_MEDICATION.items() for m, c in MED_COLUMN.items()
    if c == col
}  # fmt: skip


def letter_response(st: dict, rows: np.ndarray, effect: float, rng: np.random.Generator) -> None:
    """Lifestyle response of the lettered persons ``rows`` (a :func:`step` ``adjust`` hook).

    Replaces (never mutates) the affected arrays of ``st``: habits improve with probability
    ``min(1, LETTER_HABIT·effect)`` each (uniforms from ``rng``, a stream of the letters' own),
    and the AR(1) parts of adiposity, glycaemia and BP move by ``LETTER_SHIFT·effect`` SD of the
    core. ``effect = 0`` leaves ``st`` unchanged.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if effect <= 0 or len(rows) == 0:
        return
    u = rng.random((len(rows), 4))
    p = min(1.0, LETTER_HABIT * effect)
    improve = {
        "exer": (u[:, 0] < p, True),
        "walk": (u[:, 1] < p, True),
        "late": (u[:, 2] < p, False),
    }
    for item, (hit, good) in improve.items():
        v = st[item].copy()
        v[rows] = np.where(hit, good, v[rows])
        st[item] = v
    snack = st["snack"].copy()
    snack[rows] = np.where((u[:, 3] < p) & (snack[rows] == 1), 2, snack[rows])
    st["snack"] = snack
    for core, shift in LETTER_SHIFT.items():
        x = st["x" + core].copy()
        x[rows] = x[rows] + np.float32(effect * shift / AR[core][1])
        st["x" + core] = x


def doctor_response(
    st: dict, rows: np.ndarray, meds: np.ndarray, effect: float, rng: np.random.Generator
) -> None:
    """Treatment started by see-a-doctor letters (a :func:`step` ``adjust`` hook).

    ``rows``: lettered persons, ``meds``: the medication key (``glu``/``bp``/``lip``) of each
    one's letter topic. Each starts that medication with probability
    ``1 − exp(−LETTER_TREAT·effect)`` (uniforms from ``rng``, a stream of the letters' own);
    replaces (never mutates) the ``m_*`` arrays. ``effect = 0`` leaves ``st`` unchanged.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if effect <= 0 or len(rows) == 0:
        return
    start = rng.random(len(rows)) < 1 - np.exp(-LETTER_TREAT * effect)
    for m in MEDS:
        hit = rows[start & (meds == m)]
        if len(hit):
            v = st["m_" + m].copy()
            v[hit] = True
            st["m_" + m] = v


# ---------------------------------------------------------------------------------------------
# Observation
# ---------------------------------------------------------------------------------------------


def p_fasting(st: dict) -> np.ndarray:
    """Person's probability of a fasting draw (~85 % overall, person-specific)."""
    return ndb.cdf(1.39 + 0.9 * st["t_fast"])


def draw_timing(st: dict, rng: np.random.Generator, p_fast: np.ndarray | None = None) -> np.ndarray:
    """採血時間 code: 2 fasting, else 3 (60 %) or 4 (<3.5 h)."""
    n = len(st["sex"])
    p_fast = p_fasting(st) if p_fast is None else p_fast
    u = rng.random(n)
    return np.where(u < p_fast, 2, np.where(rng.random(n) < 0.6, 3, 4)).astype(np.int8)


def raw_observations(
    st: dict, c: dict, timing: np.ndarray, rng: np.random.Generator, items=None
) -> dict[str, np.ndarray]:
    """Observed values in raw latent units: core − medication effect + measurement noise."""
    n = len(st["sex"])
    items = OBS if items is None else items
    out = {}
    e_sbp = rng.standard_normal(n, dtype=np.float32)
    e_alt = rng.standard_normal(n, dtype=np.float32)
    for item in items:
        core, sd = OBS[item]
        if item == "dbp":
            e = 0.6 * e_sbp + 0.8 * rng.standard_normal(n, dtype=np.float32)
        elif item == "sbp":
            e = e_sbp
        elif item == "ast":
            e = 0.5 * e_alt + 0.866 * rng.standard_normal(n, dtype=np.float32)
        elif item == "alt":
            e = e_alt
        else:
            e = rng.standard_normal(n, dtype=np.float32)
        v = c[core] + sd * e
        if item == "urine_glucose":
            v = 0.9 * c["G"] + sd * e + 2.5 * (st["m_glu"] & st["sglt2"])
        for m in MEDS:
            eff = MED_EFFECT[m].get(item)
            if eff:
                v = v + eff * st["m_" + m]
        if item == "tg":
            v = v + np.where(
                timing == 3, TG_NONFASTING[3], np.where(timing == 4, TG_NONFASTING[4], 0)
            )
        out[item] = v
    return out


# ---------------------------------------------------------------------------------------------
# Calibration (value maps and medication intercepts)
# ---------------------------------------------------------------------------------------------

W_GRID = np.linspace(-7.0, 9.0, 321)


@dataclass
class Calibration:
    """Medication intercepts ``alpha[med][sex, age]`` and value maps ``tables[item][sex, age, w]``.

    ``tables`` map raw latent observations (on :data:`W_GRID`) to reported values for FY-end ages
    :data:`AGES`; ``None`` before the pilot has been run (raw values are then returned).
    """

    alpha: dict[str, np.ndarray]
    tables: dict[str, np.ndarray] | None = None

    def value(self, item: str, w: np.ndarray, sex: np.ndarray, age: np.ndarray) -> np.ndarray:
        tab = self.tables[item]
        pos = (np.clip(w, W_GRID[0], W_GRID[-1]) - W_GRID[0]) / (W_GRID[1] - W_GRID[0])
        i = np.minimum(pos.astype(np.int64), len(W_GRID) - 2)
        f = pos - i
        row = (np.asarray(sex, dtype=np.int64) - 1) * N_AGE + np.clip(
            np.asarray(age, dtype=np.int64) - 40, 0, N_AGE - 1
        )
        flat = tab.reshape(-1, len(W_GRID))
        return flat[row, i] * (1 - f) + flat[row, i + 1] * f

    def threshold(self, item: str, value: float, sex: np.ndarray, age: np.ndarray) -> np.ndarray:
        """Raw latent level at which ``item`` reaches ``value`` for each sex × FY-end age."""
        key = (item, float(value))
        cache = self.__dict__.setdefault("_thr", {})
        if key not in cache:
            tab = self.tables[item].reshape(-1, len(W_GRID))
            cache[key] = np.array([np.interp(value, r, W_GRID) for r in tab])
        row = (np.asarray(sex, dtype=np.int64) - 1) * N_AGE + np.clip(
            np.asarray(age, dtype=np.int64) - 40, 0, N_AGE - 1
        )
        return cache[key][row]


def _initial_alpha() -> dict[str, np.ndarray]:
    out = {}
    ages = AGES.astype(float)
    for m in MEDS:
        tab = ndb_targets()["med_" + m]
        a = np.zeros((2, N_AGE))
        for s in (1, 2):
            p = ndb.by_age(tab, ages, np.full(N_AGE, s))
            a[s - 1] = ndb.probit(p) * np.sqrt(1 + MED_BETA[m] ** 2 * 1.3)
        out[m] = a
    return out


def _pilot(cal: Calibration, n: int = 40_000, years: int = 6, seed: int = 20211):
    """Pilot ward (fixed seed): raw observations and medication by sex × band, pooled over years.

    Starts with uniform FY-end ages 40-74 and, like the ward, takes in fresh members every year
    (people turning 40, retirees at 60-65, movers), so each band mixes long-followed and newly
    initialised persons in about the same proportions as :class:`data.synth.ward.Ward`.
    """
    rng = np.random.default_rng(seed)

    def new(k, ages):
        sex = np.where(rng.random(k) < 0.5, 1, 2).astype(np.int8)
        return init_state(sex, ages, rng, cal)

    st = new(n, rng.integers(40, 75, n))
    obs: dict[str, list] = {k: [] for k in OBS}
    meds: dict[str, list] = {m: [] for m in MEDS}
    keys: list[np.ndarray] = []
    for y in range(years):
        if y:
            st = step(st, st["age"] + 1, rng, cal)
            st.pop("_cores")
            st = {k: v[st["age"] <= 75] for k, v in st.items()}
            k40, kret, kmov = n // 35, int(0.04 * n), int(0.035 * n)
            ages = np.concatenate(
                [np.full(k40, 40), rng.integers(60, 66, kret), rng.integers(40, 74, kmov)]
            )
            add = new(len(ages), ages)
            st = {k: np.concatenate([st[k], add[k]]) for k in st}
        alive = st["age"] <= 74
        sub = {k: v[alive] for k, v in st.items()}
        c = cores(sub)
        timing = draw_timing(sub, rng)
        raw = raw_observations(sub, c, timing, rng)
        band = (sub["age"] - 40) // 5
        keys.append((sub["sex"].astype(int) - 1) * 7 + band)
        for k in OBS:
            obs[k].append(raw[k])
        for m in MEDS:
            meds[m].append(sub["m_" + m])
    key = np.concatenate(keys)
    return (
        key,
        {k: np.concatenate(v) for k, v in obs.items()},
        {m: np.concatenate(v) for m, v in meds.items()},
    )


def _band_to_age(per_band: np.ndarray) -> np.ndarray:
    """[sex, band, ...] → [sex, age 40..76, ...] by interpolation between band mid-ages."""
    out = []
    for s in (1, 2):
        out.append(ndb.by_age(per_band, AGES.astype(float), np.full(N_AGE, s)))
    return np.stack(out)


@lru_cache(maxsize=1)
def calibration() -> Calibration:
    """Fit medication intercepts and value maps on the fixed-seed pilot (cached per process)."""
    cal = Calibration(alpha=_initial_alpha())
    # 1) medication intercepts: one probit-scale correction per sex × band
    key, _, meds = _pilot(cal, n=30_000)
    for m in MEDS:
        target = ndb_targets()["med_" + m]
        got = np.array([meds[m][key == k].mean() for k in range(14)]).reshape(2, 7)
        corr = (ndb.probit(target) - ndb.probit(got)) * np.sqrt(1 + MED_BETA[m] ** 2 * 1.3)
        cal.alpha[m] = cal.alpha[m] + _band_to_age(corr)
    # 2) value maps: empirical CDF of raw values per sex × band, composed with NDB quantiles
    key, obs, _ = _pilot(cal)
    qt = ndb.quantile_tables()
    zq = np.linspace(-3.3, 3.3, 133)
    tables = {}
    for item in OBS:
        per_band = np.zeros((2, 7, len(W_GRID)))
        for k in range(14):
            s, b = divmod(k, 7)
            w = np.sort(obs[item][key == k])
            qw = np.quantile(w, ndb.cdf(zq))
            qw = np.maximum.accumulate(qw + np.arange(len(qw)) * 1e-9)
            # z(w): empirical normal scores, linear extrapolation in the tails
            lo_slope = (zq[8] - zq[0]) / max(qw[8] - qw[0], 1e-6)
            hi_slope = (zq[-1] - zq[-9]) / max(qw[-1] - qw[-9], 1e-6)
            z = np.interp(W_GRID, qw, zq)
            z = np.where(W_GRID < qw[0], zq[0] + (W_GRID - qw[0]) * lo_slope, z)
            z = np.where(W_GRID > qw[-1], zq[-1] + (W_GRID - qw[-1]) * hi_slope, z)
            z = np.clip(z, -4.2, 4.2)  # beyond ±4.2 SD the NDB tails are extrapolation
            if item in qt:
                per_band[s, b] = np.interp(z, ndb.Z_GRID, qt[item][s, b])
            else:  # uric acid: no NDB table (log-normal, sex-specific)
                mu = 6.0 if s == 0 else 4.5 + 0.1 * b
                per_band[s, b] = mu * np.exp(0.21 * np.clip(z, -5, 5) - 0.022)
        tables[item] = _band_to_age(per_band)
    cal.tables = tables
    return cal
