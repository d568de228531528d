"""Ground truth of the synthetic ward: next-year outcome probabilities and drivers.

The truth.csv columns: docs/contract.md §Truth.

``p_true_<outcome>`` — the probability that the outcome is met at a checkup in the next fiscal
year, conditional on attending and on the checkup being able to judge it, given the person's
full latent state at this year's checkup: kenshin's risk, whose label is missing, not 0, where
the next checkup cannot judge the outcome (docs/domain.md §Labels). For hyperuricaemia that
conditions on uric acid, its only item, being measured: an optional item, measured with a
person-specific probability that does not depend on health, so the outcome is judged as if it
were (before, the probability that it was met *and* measured: 0.6 × the risk on average, and
what-if changes with it). Every other outcome's items are measured in ≥ 99 % of checkups, so
they are judged as measured.
Computed by Monte Carlo with ``K = 64`` replicates per person: the state is advanced one year
with :func:`data.synth.model.step` (the same function the ward uses; independent noise per
replicate: lifestyle transitions, AR(1) innovations, medication start/stop) and judged by
:func:`judge_next`, which applies the measurement law of :func:`data.synth.observe.observe`
(noise, fasting status, missingness) and the outcome rules of
:func:`data.judgements.outcomes_met` directly on the raw latent values (tests check it against
``outcomes_met`` on generated checkups). It is computed for everybody, including people who
already meet the outcome.

``p_true_<outcome>__<scenario>`` — the same probability had the person made a what-if
scenario's change at this checkup (:mod:`data.synth.whatif`), from the same 64 futures (common
random numbers, :func:`p_true_with_counterfactuals`): the difference to ``p_true_<outcome>`` is
the change's true effect on next year's risk.

``drivers_<outcome>`` — the generator's top-3 true drivers, ``;``-joined canonical column names.
Definition (first-order attribution of the next-year risk):

1. Every outcome is a set of threshold crossings of observed items (e.g. diabetes: HbA1c ≥6.5
   or FPG ≥126; MetS: waist and ≥2 of BP / lipids / glucose). For each item ``i`` the model gives
   the expected next-year raw latent ``m_i`` as an exact sum of terms, each owned by one input
   column: the person's own persistent level of an item (stable trait + expected AR part) is
   owned by that item's column (``hba1c``, ``sbp``, ``ldl``, ``egfr``, …); adiposity is owned by
   ``weight_kg`` (``waist_cm`` for metabolic syndrome); each lifestyle answer owns its effect
   (directly and through adiposity); loadings between latents (glycaemia → kidney, …) pass
   terms on unchanged. The threshold ``τ_i(sex, age)`` owns the age (``age``) and sex (``sex``)
   part of the risk.
2. The sensitivity of the outcome probability to ``m_i`` is taken from a Gaussian approximation
   of the predictive distribution, ``∂P/∂m_i`` (density at the threshold times the probability
   that the other branches do not already decide the outcome; product rule for MetS).
3. Contribution of a column = Σ_i ∂P/∂m_i × (term owned by the column − its population mean among
   this year's examinees), with sign so that positive means "raises the risk". The three
   columns with the largest contributions are the drivers. Medication for the condition makes
   the outcome met outright; the medication column (``q_med_*``) is then the first driver.

``drivers_observed_<outcome>`` — the same attribution (same ``m_i``, thresholds, Gaussian
approximation, combination of branches and medication rule) with ``m_i − τ_i(sex, age + 1)``
split the way a checkup sees it, i.e. into what a model given the measured values can credit.
The reference population is the model's: this year's examinees who do **not** meet the outcome
now (judged on their current latent levels and medication, without noise); the generator view
takes all examinees, among whom (with the treated and the already-met) an LDL of 135 is about
average. The sensitivity of each item is the *secant* of ``P`` between the reference's mean
level ``m̄_i`` and the person's (the mean of ``∂P/∂m_i`` along the way, as an attribution of a
level from the average up needs), not the tangent at the person's level, which vanishes when a
level is far past its cut. The owned terms:

* the measured item ``i`` owns its **current level** relative to its cut, ``c_i(now) −
  τ_i(sex, age now)`` (the whole current core latent — including what adiposity, habits, age
  and sex have already put into it — on the scale of this year's reported value and cut), and
  its own expected mean reversion ``σ_i(ρ_i − 1)·x_i`` (the persistence of its latent);
* the rest is the expected change from now to next year: an upstream core's own reversion is
  owned by its item (``weight_kg`` — ``waist_cm`` for metabolic syndrome — for adiposity,
  ``hba1c`` for glycaemia, ``sbp`` for blood pressure, ``egfr`` for kidney function) and reaches
  item ``i`` through the loadings; adiposity's lifestyle part moving half-way to what the
  current habits sustain, ``0.5·(Σ γ·habit − LA)``, is owned by the habits that push it that
  way, in proportion to how far each pushes from the average habit of this year's examinees
  (``weight_kg`` if none does). Habits whose effect the current level already contains get
  nothing;
* ``age`` owns one year of threshold drift, ``−(τ_i(age + 1) − τ_i(age now))``; ``sex`` owns
  nothing (the sex difference is in the measured value and in the cut it is judged against).

So "your HbA1c is high" is credited to ``hba1c``, and weight or habits only where they will
move next year's value beyond this year's. Contributions are centred on the reference's means;
the three largest are the drivers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from scipy.special import ndtr

from data.columns import OUTCOMES
from data.synth import model
from data.synth import observe as obs_mod
from data.synth.observe import presence_probs

K_DEFAULT = 64
_CHUNK_ROWS = 131_072


def p_true(
    st: dict,
    age_fy: np.ndarray,
    exam_age: np.ndarray,
    birth_year: np.ndarray,
    seed: np.random.SeedSequence,
    cal: model.Calibration,
    k: int = K_DEFAULT,
    workers: int = 2,
) -> np.ndarray:
    """``(n, len(OUTCOMES))`` Monte-Carlo probabilities of meeting each outcome next year.

    Persons are processed in chunks, each with its own generator spawned from ``seed`` (so the
    result does not depend on ``workers``); chunks run on a small thread pool (numpy releases
    the GIL in the heavy array work).
    """
    base, _ = p_true_with_counterfactuals(
        st, age_fy, exam_age, birth_year, seed, cal, {}, k, workers
    )
    return base


def p_true_with_counterfactuals(
    st: dict,
    age_fy: np.ndarray,
    exam_age: np.ndarray,
    birth_year: np.ndarray,
    seed: np.random.SeedSequence,
    cal: model.Calibration,
    counterfactuals: dict[str, tuple[np.ndarray, dict]],
    k: int = K_DEFAULT,
    workers: int = 2,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`p_true`, and the same probabilities under each counterfactual.

    ``counterfactuals``: name → (sorted rows of ``st``, the state of those persons with an
    intervention applied; :func:`data.synth.whatif.counterfactual_states`). Each is advanced
    and judged with **common random numbers**: replicate ``r`` of person ``i`` under the
    intervention uses exactly the random draws of replicate ``r`` of person ``i`` in the
    baseline (every draw of :func:`model.step` and :func:`judge_next` is one value per
    replicate row and their number does not depend on the state, so the baseline's draws of a
    chunk are recorded and replayed row by row). The difference to the baseline is therefore
    the intervention's effect on the same 64 futures, not Monte-Carlo noise between two sets
    of futures; an intervention that changes nothing gives exactly the baseline. The baseline
    is exactly :func:`p_true`'s. Returns (baseline ``(n, 6)``, name → ``(len(rows), 6)``).
    """
    n = len(st["sex"])
    out = np.zeros((n, len(OUTCOMES)))
    cf_out = {
        name: np.zeros((len(rows), len(OUTCOMES))) for name, (rows, _) in counterfactuals.items()
    }
    per = max(1, _CHUNK_ROWS // k)
    starts = list(range(0, n, per))
    seeds = seed.spawn(len(starts))

    def run(j: int) -> None:
        lo, hi = starts[j], min(n, starts[j] + per)
        rng = np.random.default_rng(seeds[j])
        tape = _Tape(rng) if counterfactuals else rng
        idx = np.arange(lo, hi)
        sub = {key: v[idx] for key, v in st.items() if not key.startswith("_")}
        out[idx] = _advance_and_judge(sub, age_fy[idx], exam_age[idx], k, tape, cal)
        for name, (rows, cf_st) in counterfactuals.items():
            a, b = np.searchsorted(rows, [lo, hi])
            if a == b:
                continue
            local = rows[a:b] - lo
            replay = _Replay(tape.draws, (local[:, None] * k + np.arange(k)).ravel())
            cf_sub = {key: v[a:b] for key, v in cf_st.items() if not key.startswith("_")}
            cf_out[name][a:b] = _advance_and_judge(
                cf_sub, age_fy[rows[a:b]], exam_age[rows[a:b]], k, replay, cal
            )
            replay.done()

    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, range(len(starts))))
    else:
        for j in range(len(starts)):
            run(j)
    return out, cf_out


def _advance_and_judge(sub, age_fy, exam_age, k, rng, cal) -> np.ndarray:
    a1 = age_fy + 1
    nxt = model.step(sub, a1, rng, cal, outcomes_only=True, k=k)
    met = judge_next(nxt, sub, a1, exam_age + 1, k, rng, cal)
    return met.reshape(len(age_fy), k, len(OUTCOMES)).mean(axis=1)


class _Tape:
    """A generator that records every array it draws (the baseline of a chunk)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.draws: list[tuple[str, np.ndarray]] = []

    def random(self, size, dtype=np.float64):
        a = self.rng.random(size, dtype=dtype)
        self.draws.append(("random", a))
        return a

    def standard_normal(self, size, dtype=np.float64):
        a = self.rng.standard_normal(size, dtype=dtype)
        self.draws.append(("standard_normal", a))
        return a


class _Replay:
    """Replays a :class:`_Tape`'s draws in order, restricted to replicate ``rows``; any other
    call sequence (another method, size or dtype) is an error, never silently new draws."""

    def __init__(self, draws: list[tuple[str, np.ndarray]], rows: np.ndarray):
        self.draws, self.rows, self.i = draws, rows, 0

    def _next(self, kind: str, size, dtype) -> np.ndarray:
        if self.i >= len(self.draws):
            raise RuntimeError("counterfactual drew more random numbers than the baseline")
        got, a = self.draws[self.i]
        self.i += 1
        shape = (len(self.rows), *a.shape[1:])
        if got != kind or a.dtype != np.dtype(dtype) or tuple(np.atleast_1d(size)) != shape:
            raise RuntimeError(
                f"counterfactual draw {self.i} ({kind}, {size}, {np.dtype(dtype)}) differs from "
                f"the baseline's ({got}, {a.shape}, {a.dtype})"
            )
        return a[self.rows]

    def random(self, size, dtype=np.float64):
        return self._next("random", size, dtype)

    def standard_normal(self, size, dtype=np.float64):
        return self._next("standard_normal", size, dtype)

    def done(self) -> None:
        if self.i != len(self.draws):
            raise RuntimeError("counterfactual drew fewer random numbers than the baseline")


#: Metabolic syndrome's waist cut by sex (腹囲: men ≥ 85 cm, women ≥ 90 cm), below the
#: measured 0.1 cm step so a value at the cut meets it.
WAIST_CUT = {1: 84.95, 2: 89.95}

_THRESHOLDS = (
    ("hba1c", 6.45),
    ("hba1c", 5.95),
    ("hba1c", 5.55),
    ("fpg", 125.5),
    ("fpg", 109.5),
    ("sbp", 139.5),
    ("sbp", 129.5),
    ("sbp", 104.5),
    ("sbp", 99.5),
    ("dbp", 89.5),
    ("dbp", 84.5),
    ("ldl", 139.5),
    ("tg", 299.5),
    ("tg", 399.5),
    ("tg", 149.5),
    ("tg", 174.5),
    ("hdl", 39.5),
    ("waist_cm", WAIST_CUT[1]),
    ("waist_cm", WAIST_CUT[2]),
    ("urine_protein", 2.5),
    ("alt", 50.5),
    ("ggt", 100.5),
    ("uric_acid", 6.95),
)


def judge_next(
    nxt: dict,
    now: dict,
    age_next: np.ndarray,
    exam_age_next: np.ndarray,
    k: int,
    rng: np.random.Generator,
    cal: model.Calibration,
) -> np.ndarray:
    """Outcomes met at the next checkup for the ``k``-replicated state ``nxt`` (R × 6 bool).

    The same measurement law as :func:`data.synth.observe.observe` followed by
    :func:`data.judgements.outcomes_met`, evaluated without building the reported values: a
    reported value meets a cut exactly when the raw latent value passes the cut's pre-image
    under the (monotone) value map — e.g. HbA1c rounds to ≥6.5 iff its unrounded value is
    ≥6.45. eGFR goes through the creatinine round trip as in :func:`observe`. Per-person
    quantities (thresholds, regime probabilities) are computed once and repeated.
    Hyperuricaemia is judged as if uric acid were measured (the module doc: given that it is).
    """
    R = len(nxt["sex"])
    sex_n = now["sex"]
    thr = {key: np.repeat(cal.threshold(key[0], key[1], sex_n, age_next), k) for key in _THRESHOLDS}
    pp = {key: np.repeat(v, k) for key, v in presence_probs(now).items()}
    sex = nxt["sex"]
    c = nxt["_cores"]

    def u():
        return rng.random(R, dtype=np.float32)

    fasting = u() < pp["fast"]
    timing = np.where(fasting, 2, np.where(u() < 0.6, 3, 4)).astype(np.int8)
    raw = model.raw_observations(nxt, c, timing, rng, obs_mod.OUTCOME_ITEMS)
    q = {m: (u() < obs_mod.P_QMED) & nxt["m_" + m] for m in model.MEDS}
    waist_ok, tg_ok, hdl_ok = u() < obs_mod.P_WAIST, u() < obs_mod.P_TG, u() < obs_mod.P_HDL
    tg_w, sbp_w, dbp_w = raw["tg"], raw["sbp"], raw["dbp"]
    tg400 = tg_w >= thr["tg", 399.5]
    ldl_ok = (u() < pp["ldl"]) & (~tg400 | (u() < obs_mod.P_LDL_TG400))
    nhdl_ok = (~ldl_ok | tg400 | (u() < obs_mod.P_NHDL_EXTRA)) & hdl_ok
    liver_ok = u() < obs_mod.P_LIVER
    fpg_ok, a1c_ok = obs_mod.glucose_measured(fasting, pp, u)
    urine_ok = (u() < obs_mod.P_URINE) & (u() < obs_mod.P_UP)
    trig = (sbp_w >= thr["sbp", 129.5]) | (
        (dbp_w >= thr["dbp", 84.5]) & (sbp_w >= thr["sbp", 99.5])
    )
    trig |= raw["hba1c"] >= thr["hba1c", 5.55]
    cre_ok = (u() < pp["cre"]) | (trig & (u() < obs_mod.P_CRE_TRIGGER))
    a_rep = np.repeat(age_next, k)
    sexf = np.where(sex == 2, 0.739, 1.0)
    _, egfr = obs_mod.creatinine_from_egfr(
        cal.value("egfr", raw["egfr"], sex, a_rep), np.repeat(exam_age_next, k), sexf
    )
    tg_v = np.round(cal.value("tg", tg_w, sex, a_rep))
    ldl_v = cal.value("ldl", raw["ldl"], sex, a_rep)
    tg_part = np.where(fasting, np.minimum(tg_v, 400) / 5.0, np.minimum(tg_v, 400) / 6.0)
    nhdl = np.round(ldl_v + tg_part + 3.0 * rng.standard_normal(R, dtype=np.float32))

    sbp140 = sbp_w >= thr["sbp", 139.5]
    dbp90 = (dbp_w >= thr["dbp", 89.5]) & (sbp_w >= thr["sbp", 104.5])
    met = {}
    met["diabetes"] = (
        q["glu"]
        | (a1c_ok & (raw["hba1c"] >= thr["hba1c", 6.45]))
        | (fpg_ok & (raw["fpg"] >= thr["fpg", 125.5]))
    )
    met["hypertension"] = q["bp"] | sbp140 | dbp90
    met["dyslipidemia"] = (
        q["lip"]
        | (ldl_ok & (raw["ldl"] >= thr["ldl", 139.5]))
        | (tg_ok & (tg_w >= thr["tg", 299.5]))
        | (nhdl_ok & (nhdl >= 170))
    )
    waist_cut = np.where(sex == 1, thr["waist_cm", WAIST_CUT[1]], thr["waist_cm", WAIST_CUT[2]])
    glu = q["glu"] | np.where(
        fpg_ok, raw["fpg"] >= thr["fpg", 109.5], a1c_ok & (raw["hba1c"] >= thr["hba1c", 5.95])
    )
    tg_cut = np.where(fasting, thr["tg", 149.5], thr["tg", 174.5])
    lip = q["lip"] | (tg_ok & (tg_w >= tg_cut)) | (hdl_ok & (raw["hdl"] < thr["hdl", 39.5]))
    bp = (
        q["bp"]
        | (sbp_w >= thr["sbp", 129.5])
        | ((dbp_w >= thr["dbp", 84.5]) & (sbp_w >= thr["sbp", 99.5]))
    )
    n_comp = glu.astype(np.int8) + lip + bp
    met["metabolic_syndrome"] = waist_ok & (raw["waist_cm"] >= waist_cut) & (n_comp >= 2)
    met["ckd"] = (cre_ok & (egfr < 60)) | (
        urine_ok & (raw["urine_protein"] >= thr["urine_protein", 2.5])
    )
    met["liver"] = liver_ok & ((raw["alt"] >= thr["alt", 50.5]) | (raw["ggt"] >= thr["ggt", 100.5]))
    # 尿酸: drawn last, so the other outcomes' futures are the same draws as without it. Met
    # given that it is measured (module doc): whether it is does not depend on health.
    ua = model.raw_observations(nxt, c, timing, rng, ("uric_acid",))["uric_acid"]
    met["hyperuricemia"] = ua >= thr["uric_acid", 6.95]
    return _stack(met)


def _stack(met: dict[str, np.ndarray]) -> np.ndarray:
    """Per-outcome arrays as columns in OUTCOMES order; an outcome without a rule is an error."""
    missing = [o for o in OUTCOMES if o not in met]
    if missing:
        raise NotImplementedError(f"the synthetic truth has no rule for the outcomes {missing}")
    return np.column_stack([met[o] for o in OUTCOMES])


# ---------------------------------------------------------------------------------------------
# Drivers
# ---------------------------------------------------------------------------------------------

_OWN_COLUMN = {
    "A": "weight_kg",
    "G": "hba1c",
    "B": "sbp",
    "T": "tg",
    "H": "hdl",
    "L": "ldl",
    "ALT": "alt",
    "AST": "ast",
    "GGT": "ggt",
    "K": "egfr",
    "P": "urine_protein",
    "UA": "uric_acid",
    "HB": "hemoglobin",
    "W": "waist_cm",
    "F": "fpg",
    "D": "dbp",
}
# (item, core, threshold, direction +1 high-bad / -1 low-bad, predictive sd in raw units)
_ITEM = {
    "hba1c": ("G", 0.32),
    "fpg": ("F", 0.55),
    "sbp": ("B", 0.60),
    "dbp": ("D", 0.58),
    "ldl": ("L", 0.45),
    "tg": ("T", 0.75),
    "hdl": ("H", 0.35),
    "waist_cm": ("W", 0.30),
    "egfr": ("K", 0.40),
    "urine_protein": ("P", 0.70),
    "alt": ("ALT", 0.60),
    "ggt": ("GGT", 0.40),
    "uric_acid": ("UA", 0.38),
}


def _decompose(st: dict) -> dict[str, dict[str, np.ndarray]]:
    """Expected next-year core latents, split into terms owned by input columns."""
    life = model.lifestyle_matrix(st)
    life_terms: dict[str, dict[str, np.ndarray]] = {}
    for j, core in enumerate(model.LIFE_CORES):
        d: dict[str, np.ndarray] = {}
        for i, (_, col) in enumerate(model.INDICATORS):
            g = model.GAMMA[i, j]
            if g:
                d[col] = d.get(col, 0.0) + g * life[:, i]
        life_terms[core] = d
    dec: dict[str, dict[str, np.ndarray]] = {}
    for core in model.CORE_ORDER:
        d: dict[str, np.ndarray] = {}
        own = model.TRAIT[core] * st["g" + core]
        if core in model.AR:
            rho, sx = model.AR[core]
            own = own + sx * rho * st["x" + core]
        if core == "A":
            own = own + 0.5 * st["LA"]
            for col, t in life_terms["A"].items():
                d[col] = d.get(col, 0.0) + 0.5 * t
        elif core in model.LIFE_CORES:
            for col, t in life_terms[core].items():
                d[col] = d.get(col, 0.0) + t
        d[_OWN_COLUMN[core]] = d.get(_OWN_COLUMN[core], 0.0) + own
        for parent, load in model.LOADINGS.get(core, {}).items():
            for col, t in dec[parent].items():
                d[col] = d.get(col, 0.0) + load * t
        dec[core] = d
    return dec


def _decompose_change(st: dict, ref: slice) -> dict[str, dict[str, np.ndarray]]:
    """Expected change of each core latent from now to next year, split into owned terms.

    Own change of a core (the mean reversion of its AR(1) part, ``σ(ρ − 1)·x``): owned by the
    core's item column. Adiposity's lifestyle part moves half-way to the level the current
    habits sustain, ``0.5·(Σ γ·habit − LA)``: owned by the habits that push it that way, in
    proportion to how far each pushes from the average habit of the reference rows (``weight_kg``
    if none does). Loadings pass a parent core's change terms on unchanged.
    """
    life = model.lifestyle_matrix(st)
    ga = model.GAMMA[:, model.LIFE_CORES.index("A")]
    push_ind = ga * (life - life[ref].mean(axis=0))  # n × indicators
    cols = sorted({col for _, col in model.INDICATORS})
    push = {c: 0.0 for c in cols}
    for i, (_, col) in enumerate(model.INDICATORS):
        push[col] = push[col] + push_ind[:, i]
    drift = 0.5 * (life @ ga - st["LA"])
    sign = np.sign(drift)
    w = {c: np.maximum(0.0, sign * push[c]) for c in cols}
    tot = sum(w.values())
    has = tot > 0
    safe = np.where(has, tot, 1.0)
    out: dict[str, dict[str, np.ndarray]] = {}
    for core in model.CORE_ORDER:
        d: dict[str, np.ndarray] = {}
        own = _OWN_COLUMN[core]
        if core in model.AR:
            rho, sx = model.AR[core]
            d[own] = sx * (rho - 1) * st["x" + core]
        if core == "A":
            for c in cols:
                d[c] = d.get(c, 0.0) + np.where(has, drift * w[c] / safe, 0.0)
            d[own] = d.get(own, 0.0) + np.where(has, 0.0, drift)
        for parent, load in model.LOADINGS.get(core, {}).items():
            for col, t in out[parent].items():
                d[col] = d.get(col, 0.0) + load * t
        out[core] = d
    return out


def _med_shift(st: dict, item: str) -> np.ndarray:
    s = 0.0
    for m in model.MEDS:
        e = model.MED_EFFECT[m].get(item)
        if e:
            s = s + e * st["m_" + m]
    return s


def _threshold(cal: model.Calibration, item: str, value: float, sex, age) -> np.ndarray:
    """An item's threshold on the latent scale at ``age``; the waist's is its sex's cut of
    metabolic syndrome (:data:`WAIST_CUT`; ``value`` unused)."""
    if item == "waist_cm":
        return np.where(
            sex == 1,
            cal.threshold(item, WAIST_CUT[1], sex, age),
            cal.threshold(item, WAIST_CUT[2], sex, age),
        )
    return cal.threshold(item, value, sex, age)


def drivers(
    st: dict,
    age_fy: np.ndarray,
    cal: model.Calibration,
    top: int = 3,
    n_ref: int | None = None,
    view: str = "generator",
) -> pd.DataFrame:
    """Top-``top`` driver columns per person and outcome (see module docstring).

    ``view``: ``"generator"`` → columns ``drivers_<outcome>`` (levels credited to their
    upstream causes); ``"observed"`` → ``drivers_observed_<outcome>`` (a measured item owns its
    current level; habits, adiposity and age only the change beyond it; secant sensitivities).

    Population means are taken over the first ``n_ref`` rows (default: all) — the ward passes
    this year's examinees first and appends rows (lettered residents' actual states) that must
    not move anybody else's reference.
    """
    if view not in ("generator", "observed"):
        raise ValueError(f"unknown driver view {view!r}")
    observed = view == "observed"
    n = len(st["sex"])
    ref = slice(None) if n_ref is None else slice(0, n_ref)
    sex = st["sex"]
    a0 = np.asarray(age_fy)
    a1 = a0 + 1
    dec = _decompose(st)
    in_ref = np.zeros(n, dtype=bool)
    in_ref[ref] = True
    refm = in_ref  # the rows a term is centred on (observed view: set per outcome below)
    if observed:
        now = model.cores(st)
        change = _decompose_change(st, ref)

    def past_cut(item, value, direction):
        """Observed view: the current (treated) level is past the cut at this year's age."""
        core, _ = _ITEM[item]
        tau0 = _threshold(cal, item, value, sex, a0)
        return direction * (now[core] + _med_shift(st, item) - tau0) >= 0

    def met_now(outcome):
        """Observed view: the outcome met on this year's latent levels (no noise), i.e. the
        rows the model is not trained on."""
        if outcome == "metabolic_syndrome":
            n_comp = (
                (st["m_bp"] | past_cut("sbp", 129.5, 1) | past_cut("dbp", 84.5, 1)).astype(int)
                + (st["m_lip"] | past_cut("tg", 149.5, 1) | past_cut("hdl", 39.5, -1))
                + (st["m_glu"] | past_cut("fpg", 109.5, 1))
            )
            return past_cut("waist_cm", 0.0, 1) & (n_comp >= 2)
        parts_spec, med = specs[outcome]
        met = np.zeros(n, dtype=bool) if med is None else st["m_" + med].copy()
        for i, v, d in parts_spec:
            met |= past_cut(i, v, d)
        return met

    def comp(item, value, direction, mets=False):
        core, sd = _ITEM[item]
        terms = dict(dec[core])
        if mets and "weight_kg" in terms:
            terms["waist_cm"] = terms.get("waist_cm", 0.0) + terms.pop("weight_kg")
        m = sum(terms.values()) + _med_shift(st, item)

        def thr(age):
            return _threshold(cal, item, value, sex, age)

        tau = thr(a1)
        r = direction * (m - tau) / sd  # standardised distance beyond the threshold
        p = ndtr(r)
        rc = np.clip(r, -2.5, 2.5)  # keep relative weights meaningful far from the threshold
        dens = np.exp(-0.5 * rc * rc) / (np.sqrt(2 * np.pi) * sd)
        if observed:
            # The level is attributed from the population's mean level up to the person's, so
            # the slope is the secant of P over that way (the mean of ∂P/∂m along it), not the
            # tangent at the person's level, which vanishes for a level far past the cut.
            r_ref = direction * (m[refm].mean() - tau) / sd
            step = r - r_ref
            far = np.abs(step) > 1e-3
            dens = np.where(far, (p - ndtr(r_ref)) / np.where(far, step, 1.0) / sd, dens)
            # m − τ(age + 1) = [level now − τ(age now)] + expected change − one year of τ drift
            tau0 = thr(a0)
            terms = dict(change[core])
            if mets and "weight_kg" in terms:
                terms["waist_cm"] = terms.get("waist_cm", 0.0) + terms.pop("weight_kg")
            own = _OWN_COLUMN[core]
            terms[own] = terms.get(own, 0.0) + now[core] - tau0
            terms = {c: direction * t for c, t in terms.items()}
            terms["age"] = -direction * (tau - tau0)
            return p, dens, terms
        # age/sex own the threshold: relative to the same-sex and overall mean thresholds
        tr, sr = tau[ref], sex[ref]
        tau_sex = np.where(
            sex == 1,
            tr[sr == 1].mean() if (sr == 1).any() else 0.0,
            tr[sr == 2].mean() if (sr == 2).any() else 0.0,
        )
        terms = {c: direction * t for c, t in terms.items()}
        terms["age"] = -direction * (tau - tau_sex)
        terms["sex"] = -direction * (tau_sex - tr.mean())
        return p, dens, terms

    def or_grads(parts):
        ps = [p for p, _, _ in parts]
        grads = []
        for i, (_, dens, terms) in enumerate(parts):
            others = (
                np.prod([1 - ps[j] for j in range(len(parts)) if j != i], axis=0)
                if len(parts) > 1
                else 1.0
            )
            grads.append((dens * others, terms))
        return 1 - np.prod([1 - p for p in ps], axis=0), grads

    specs = {
        "diabetes": ([("hba1c", 6.45, 1), ("fpg", 125.5, 1)], "glu"),
        "hypertension": ([("sbp", 139.5, 1), ("dbp", 89.5, 1)], "bp"),
        "dyslipidemia": ([("ldl", 139.5, 1), ("tg", 299.5, 1)], "lip"),
        "ckd": ([("egfr", 59.95, -1), ("urine_protein", 2.5, 1)], None),
        "liver": ([("alt", 50.5, 1), ("ggt", 100.5, 1)], None),
        "hyperuricemia": ([("uric_acid", 6.95, 1)], None),
    }
    result = {}
    for outcome in OUTCOMES:
        big: dict[str, np.ndarray] = {}
        if observed and (outcome == "metabolic_syndrome" or outcome in specs):
            # centred on the examinees who do not meet the outcome now (the model's rows)
            refm = in_ref & ~met_now(outcome)
            if not refm.any():
                refm = in_ref
        if outcome == "metabolic_syndrome":
            pw, dw, tw = comp("waist_cm", 0.0, 1, mets=True)
            groups = {
                "bp": ([comp("sbp", 129.5, 1, True), comp("dbp", 84.5, 1, True)], "bp"),
                "lip": ([comp("tg", 149.5, 1, True), comp("hdl", 39.5, -1, True)], "lip"),
                "glu": ([comp("fpg", 109.5, 1, True)], "glu"),
            }
            pk, gk, raw_p = {}, {}, {}
            for g, (parts, med) in groups.items():
                p, grads = or_grads(parts)
                on = st["m_" + med]
                raw_p[g] = p
                pk[g] = np.where(on, 1.0, p)
                gk[g] = [(np.where(on, 0.0, gr), t) for gr, t in grads]
            p1, p2, p3 = pk["bp"], pk["lip"], pk["glu"]
            p_two = p1 * p2 + p1 * p3 + p2 * p3 - 2 * p1 * p2 * p3
            dp = {
                "bp": p2 + p3 - 2 * p2 * p3,
                "lip": p1 + p3 - 2 * p1 * p3,
                "glu": p1 + p2 - 2 * p1 * p2,
            }
            contrib = [(dw * p_two, tw)]
            for g, (_, med) in groups.items():
                contrib += [(pw * dp[g] * gr, t) for gr, t in gk[g]]
                # medication: the rise in P from counting the component as met
                on = st["m_" + med]
                big[model.MED_COLUMN[med]] = np.where(on, pw * dp[g] * (1 - raw_p[g]), 0.0)
        elif outcome not in specs:
            raise NotImplementedError(f"the synthetic truth has no drivers for {outcome!r}")
        else:
            parts_spec, med = specs[outcome]
            parts = [comp(i, v, d) for i, v, d in parts_spec]
            _, contrib = or_grads(parts)
            if med is not None:
                on = st["m_" + med]
                contrib = [(np.where(on, 0.0, g), t) for g, t in contrib]
                big[model.MED_COLUMN[med]] = np.where(on, 1e6, 0.0)
        scores: dict[str, np.ndarray] = {}
        for grad, terms in contrib:
            for col, t in terms.items():
                t = np.broadcast_to(np.asarray(t, dtype=float), (n,))
                centre = t[refm].mean() if observed else t[ref].mean()
                scores[col] = scores.get(col, 0.0) + grad * (t - centre)
        for col, v in big.items():
            scores[col] = scores.get(col, 0.0) + v
        cols = sorted(scores)
        mat = np.stack([np.broadcast_to(scores[c], (n,)) for c in cols], axis=1)
        order = np.argsort(-mat, axis=1, kind="stable")[:, :top]
        combos, inv = np.unique(order, axis=0, return_inverse=True)
        labels = np.array([";".join(cols[i] for i in row) for row in combos], dtype=object)
        result[("drivers_observed_" if observed else "drivers_") + outcome] = labels[inv.ravel()]
    return pd.DataFrame(result)
