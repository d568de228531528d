"""What-if interventions of the synthetic ward (もしも): the true counterfactual of each scenario.

Each :class:`Intervention` mirrors one what-if scenario of the scoring configuration (same key;
a test checks the keys and ``when`` conditions against ``scoring/scoring.toml``). It applies to
the examinees whose *observed* answers and values at this year's checkup meet the same ``when``
conditions (missing never meets one) and whose edited items are present, and changes their
latent state at this checkup the way the scenario changes the record:

* ``weight_loss_3kg`` — adiposity falls so that the expected reported weight is 3 kg lower
  (at the person's measured height); the shift goes to the AR(1) part of adiposity, so it
  fades by the next checkup like any weight change in the ward (persistence 0.85: about
  2.5 kg of the 3 kg remain). Waist, glycaemia, BP, lipids and liver follow adiposity through
  the model's loadings (waist falls by 2.8 cm on average, close to the scenario's 3 cm).
* ``quit_smoking`` — current smoker → ex-smoker (relapse at the usual yearly rate) **without
  the post-cessation weight gain**: the advice kenshin gives (scoring.toml, the letter's
  sentence: 体重を増やさずに禁煙する), as 保健指導 pairs quitting with weight control. The
  ward's ex-smokers otherwise gain adiposity (``model.GAMMA``: about 1.1 kg by the next
  checkup, 2.3 kg in the long run; cohorts report 4-5 kg within a year), which raises some
  quitters' next-year risk of hypertension, metabolic syndrome (waist) and liver (ALT)
  findings — a promise of lower risk a letter cannot make for quitting alone. So the
  counterfactual sets ``keeps_weight``: while the person stays an ex-smoker, adiposity keeps
  the smoker's lifestyle effect (``model.step``); glycaemia, TG, HDL, γ-GT and kidney improve
  as for any quitter.
* ``exercise`` / ``no_late_dinner`` / ``no_snacks`` / ``eat_breakfast`` — the habit changes
  now (exercise: yes; late dinners: no; snacks: 3 = rarely; breakfast: not skipped) and lapses
  at the usual yearly redraw rates.
* ``less_alcohol`` — the amount per drinking day becomes code 1 (< 1 合): the latent amount is
  set to the middle of code 1's range for the person's sex and age; frequency is unchanged.
  BP, TG, γ-GT and uric acid fall, and so does HDL (alcohol raises HDL), which raises a few
  drinkers' metabolic-syndrome risk through its HDL < 40 criterion.

:func:`counterfactual_states` gives, per intervention, the persons it applies to and their
intervened states; :func:`data.synth.truth.p_true_with_counterfactuals` advances them one year
with the baseline's random draws (common random numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from data.synth import WHATIF_KEYS, model, ndb

__all__ = ["INTERVENTIONS", "Intervention", "counterfactual_states", "weight_shift"]

_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "eq": lambda x, v: x == v,
    "ne": lambda x, v: x != v,
    "ge": lambda x, v: x >= v,
    "gt": lambda x, v: x > v,
    "le": lambda x, v: x <= v,
    "lt": lambda x, v: x < v,
}

#: Reported-weight change of ``weight_loss_3kg`` (kg).
WEIGHT_LOSS_KG = 3.0


@dataclass(frozen=True)
class Intervention:
    """One scenario's change to the latent state.

    ``when``: (observed column, op, value) conditions on this year's checkup, all of which must
    hold (missing never holds). ``needs``: observed columns that must be present (the items the
    scenario edits by ``add``). ``change(st, obs, age_fy, cal)`` gets copies of the state and
    observation arrays of the persons it applies to and returns their intervened state.
    """

    key: str
    when: tuple[tuple[str, str, float], ...]
    change: Callable[[dict, dict, np.ndarray, model.Calibration], dict]
    needs: tuple[str, ...] = ()

    def applies(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        n = len(obs["sex"])
        ok = np.ones(n, dtype=bool)
        with np.errstate(invalid="ignore"):
            for col, op, value in self.when:
                x = np.asarray(obs[col], dtype="float64")
                ok &= _OPS[op](x, value) & ~np.isnan(x)
        for col in self.needs:
            ok &= ~np.isnan(np.asarray(obs[col], dtype="float64"))
        return ok


def _set(key: str, value) -> Callable[[dict, dict, np.ndarray, model.Calibration], dict]:
    def change(st: dict, obs: dict, age_fy: np.ndarray, cal: model.Calibration) -> dict:
        st[key] = np.full(len(st[key]), value, dtype=st[key].dtype)
        return st

    return change


def _invert(cal: model.Calibration, item: str, target, lo, hi, sex, age, steps: int = 40):
    """Raw latent ``w`` in [lo, hi] whose reported value is ``target`` (bisection; the value
    maps are non-decreasing)."""
    lo, hi = np.asarray(lo, dtype="float64").copy(), np.asarray(hi, dtype="float64").copy()
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        below = cal.value(item, mid, sex, age) < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def weight_shift(st: dict, height_cm: np.ndarray, age_fy: np.ndarray, cal: model.Calibration):
    """Change of the adiposity core (SD units, ≤ 0) that lowers the expected reported weight by
    :data:`WEIGHT_LOSS_KG` at ``height_cm``."""
    a = model.cores(st)["A"]
    sex = st["sex"]
    h2 = (np.asarray(height_cm, dtype="float64") / 100.0) ** 2
    target = cal.value("bmi", a, sex, age_fy) - WEIGHT_LOSS_KG / h2
    w = _invert(cal, "bmi", target, a - 4.0, a, sex, age_fy)
    return w - a


def _weight_loss(st: dict, obs: dict, age_fy: np.ndarray, cal: model.Calibration) -> dict:
    shift = weight_shift(st, obs["height_cm"], age_fy, cal)
    x = st["xA"]
    st["xA"] = (x + shift / model.AR["A"][1]).astype(x.dtype)
    return st


def _quit_keeping_weight(st: dict, obs: dict, age_fy: np.ndarray, cal: model.Calibration):
    st["smk"] = np.full(len(st["smk"]), 2, dtype=st["smk"].dtype)
    st["keeps_weight"] = np.ones(len(st["smk"]), dtype=bool)
    return st


def _less_alcohol(st: dict, obs: dict, age_fy: np.ndarray, cal: model.Calibration) -> dict:
    cum1 = model._age_table("amt_cum")[model.row_of(st["sex"], st["age"])][:, 0]
    x = st["amt_y"]
    st["amt_y"] = ndb.probit(0.5 * cum1).astype(x.dtype)
    return st


#: The interventions, by scenario key (the keys of ``[[scenario]]`` in scoring.toml).
INTERVENTIONS: dict[str, Intervention] = {
    iv.key: iv
    for iv in (
        Intervention(
            "weight_loss_3kg",
            (("bmi", "ge", 23.0),),
            _weight_loss,
            needs=("weight_kg", "waist_cm", "height_cm"),
        ),
        Intervention("quit_smoking", (("q_smoking", "eq", 1),), _quit_keeping_weight),
        Intervention("exercise", (("q_exercise", "eq", 2),), _set("exer", True)),
        Intervention("no_late_dinner", (("q_late_dinner", "eq", 1),), _set("late", False)),
        Intervention(
            "less_alcohol",
            (("q_alcohol_freq", "le", 4), ("q_alcohol_amount", "ge", 2)),
            _less_alcohol,
        ),
        Intervention("no_snacks", (("q_snacks", "eq", 1),), _set("snack", 3)),
        Intervention("eat_breakfast", (("q_skip_breakfast", "eq", 1),), _set("skipbf", False)),
    )
}


if tuple(INTERVENTIONS) != WHATIF_KEYS:  # pragma: no cover - caught by the tests at once
    raise ImportError("data.synth.whatif.INTERVENTIONS must follow data.synth.WHATIF_KEYS")


def counterfactual_states(
    st: dict,
    obs: dict[str, np.ndarray],
    age_fy: np.ndarray,
    cal: model.Calibration,
    interventions: dict[str, Intervention] | None = None,
) -> dict[str, tuple[np.ndarray, dict]]:
    """Per intervention: (sorted rows of ``st`` it applies to, their intervened state).

    ``st``/``obs``: state and observed checkup (:func:`data.synth.observe.observe`) of this
    year's examinees, row-aligned; ``age_fy``: their FY-end ages. ``st`` is not modified.
    """
    out: dict[str, tuple[np.ndarray, dict]] = {}
    for key, iv in (INTERVENTIONS if interventions is None else interventions).items():
        rows = np.flatnonzero(iv.applies(obs))
        sub = {k: v[rows] for k, v in st.items() if not k.startswith("_")}
        o = {k: np.asarray(v)[rows] for k, v in obs.items()}
        out[key] = (rows, iv.change(sub, o, np.asarray(age_fy)[rows], cal))
    return out
