"""The synthetic ward: NHI membership flows, checkup attendance and yearly observation.

One loop over fiscal years, vectorised across persons:

1. advance every person's latent state one year (:func:`data.synth.model.step`);
2. membership: members whose 75th birthday falls in the year leave on the day before it
   (``turned_75``); others die (age-, sex- and health-dependent), move out, change insurer or
   leave for other reasons; some earlier leavers rejoin (a second enrollment period); new
   members join — people turning 40, retirees around 60-65 and movers — so the pool stays close
   to ``residents``;
3. attendance among eligible members (FY-end age 40-74, member on the exam day): a Markov chain
   with ~80 % repeat attendance and an age-dependent return rate, scaled to the configured mean;
   exam dates April-March, concentrated June-October, usually in the person's usual month;
4. checkup rows for attendees (:func:`data.synth.observe.observe`) and their truth rows
   (:mod:`data.synth.truth`).

Letters (``config.letters``, ``letter_year``, ``letter_effect`` > 0): from ``letter_year + 1``
on the ward carries two states — the counterfactual one (no letters; it alone drives deaths,
moves, joiners and the attendance chain) and the actual one, in which the lettered residents'
lifestyle responded (:func:`data.synth.model.letter_response`, applied once in the step into
``letter_year + 1`` and fading afterwards). Both are advanced with the same draws, the letters
use streams of their own, and the extra attendees the letters bring in ``letter_year + 1`` are
measured with a stream of their own: everything up to ``letter_year`` and every row of a
resident who got no letter is identical to a run without letters.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from data.columns import CHECKUP_COLUMNS, OUTCOMES
from data.synth import WHATIF_KEYS, model, names, truth, whatif
from data.synth.observe import observe

_BAND_WEIGHTS = np.array([7, 8, 8, 9, 14, 24, 30], dtype=float)  # NHI 40-74 pool by 5-y band
_FEMALE_SHARE = np.array([0.49, 0.49, 0.50, 0.51, 0.53, 0.53, 0.54])
_REPEAT = 0.80  # P(attend | attended last year, still eligible)
_AGE_PROFILE = ([40, 50, 60, 70, 74], [0.22, 0.27, 0.38, 0.46, 0.47])
_LETTER_STREAM = 0x4C45545445  # entropy tag of the letters' own random streams


def _years(d: np.ndarray) -> np.ndarray:
    return d.astype("datetime64[Y]").astype(int) + 1970


def _months(d: np.ndarray) -> np.ndarray:
    return d.astype("datetime64[M]").astype(int) % 12 + 1


def _days(d: np.ndarray) -> np.ndarray:
    return (d - d.astype("datetime64[M]").astype("datetime64[D]")).astype(int) + 1


def age_fy_end(birth: np.ndarray, fy: int) -> np.ndarray:
    """年度末年齢: completed age on 31 March of ``fy + 1`` (same rule as data.normalise)."""
    return fy + 1 - _years(birth) - (_months(birth) >= 4)


def age_on(birth: np.ndarray, date: np.ndarray) -> np.ndarray:
    by, bm, bd = _years(birth), _months(birth), _days(birth)
    dy, dm, dd = _years(date), _months(date), _days(date)
    return dy - by - ((dm < bm) | ((dm == bm) & (dd < bd)))


def birthday_at(birth: np.ndarray, years: int) -> np.ndarray:
    m = birth.astype("datetime64[M]") + 12 * years
    return m.astype("datetime64[D]") + (_days(birth) - 1)


def _birth_dates(age_fy: np.ndarray, fy: int, rng: np.random.Generator) -> np.ndarray:
    """Birth dates giving FY-end age ``age_fy`` in ``fy``: 1 April of ``fy - age`` + 0..364 days."""
    y = (fy - age_fy.astype(np.int64) - 1970).astype("datetime64[Y]")
    start = (y.astype("datetime64[M]") + 3).astype("datetime64[D]")
    return start + rng.integers(0, 365, len(age_fy))


class Ward:
    """Mutable simulation state of the whole ward (all persons ever members)."""

    def __init__(self, config, cal: model.Calibration):
        self.cfg = config
        self.cal = cal
        ss = np.random.SeedSequence(config.seed)
        streams = ss.spawn(6)
        self.r_pop, self.r_dyn, self.r_att, self.r_obs, self.r_truth, self.r_names = (
            np.random.default_rng(s) for s in streams
        )
        self.n = 0
        self.st: dict[str, np.ndarray] = {}
        self.birth = np.array([], dtype="datetime64[D]")
        self.status = np.array([], dtype=np.int8)  # 0 member, 1 left (may rejoin), 2 gone
        self.att_last = np.array([], dtype=bool)
        self.elig_last = np.array([], dtype=bool)
        self.cur_from = np.array([], dtype="datetime64[D]")
        self.periods: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.checkups: list[pd.DataFrame] = []
        self.truth: list[pd.DataFrame] = []
        self.att_scale = 1.0
        #: (fiscal year, eligible members, attendees) per simulated year
        self.attendance_log: list[tuple[int, int, int]] = []
        letters = getattr(config, "letters", frozenset())
        self.letter_year: int | None = getattr(config, "letter_year", None)
        self.letters_on = (
            bool(letters)
            and self.letter_year is not None
            and (getattr(config, "letter_effect", 0.0) > 0)
        )
        #: sorted person indices of the lettered residents (resolved after ``letter_year``)
        self.letter_idx = np.array([], dtype=np.int64)
        #: person indices and medication keys of the see-a-doctor letters (same time)
        self.doctor_idx = np.array([], dtype=np.int64)
        self.doctor_meds = np.array([], dtype=object)
        #: counterfactual state (no letters), kept once the letters have acted
        self.st_cf: dict[str, np.ndarray] | None = None
        #: False: membership and attendance only (no checkup rows, no truth)
        self.measure = True

    # -- persons --------------------------------------------------------------------------
    def add(self, age_fy: np.ndarray, fy: int, enrolled_from: np.ndarray) -> None:
        k = len(age_fy)
        if k == 0:
            return
        rng = self.r_pop
        band = np.clip((age_fy - 40) // 5, 0, 6)
        sex = np.where(rng.random(k) < _FEMALE_SHARE[band], 2, 1).astype(np.int8)
        birth = _birth_dates(age_fy, fy, rng)
        new = model.init_state(sex, age_fy, self.r_dyn, self.cal)
        new["age"] = age_fy.astype(np.int64)
        if self.n == 0:
            self.st = new
        else:
            self.st = {key: np.concatenate([self.st[key], new[key]]) for key in self.st}
            if self.st_cf is not None:
                self.st_cf = {key: np.concatenate([self.st_cf[key], new[key]]) for key in new}
        self.birth = np.concatenate([self.birth, birth])
        self.status = np.concatenate([self.status, np.zeros(k, dtype=np.int8)])
        self.att_last = np.concatenate([self.att_last, np.zeros(k, dtype=bool)])
        self.elig_last = np.concatenate([self.elig_last, np.zeros(k, dtype=bool)])
        self.cur_from = np.concatenate([self.cur_from, enrolled_from])
        self.n += k

    def close(self, idx: np.ndarray, until: np.ndarray, reason: np.ndarray) -> None:
        self.periods.append((idx, self.cur_from[idx], until, reason))

    # -- letters ----------------------------------------------------------------------------
    def _letter_rng(self, fy: int, purpose: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, _LETTER_STREAM, fy, purpose])

    def _resolve_letters(self) -> None:
        """Person indices of ``config.letters`` (and of the see-a-doctor letters among them)
        among everybody who was a member so far."""
        pid = pd.Index(self.person_ids(copy.deepcopy(self.r_names)))
        wanted = np.array(sorted(self.cfg.letters), dtype=object)
        pos = pid.get_indexer(wanted)
        if (pos < 0).any():
            raise ValueError(
                f"{int((pos < 0).sum())} of {len(wanted)} lettered person_ids were never members "
                f"of the ward by FY{self.letter_year} (e.g. {wanted[pos < 0][0]!r})"
            )
        self.letter_idx = np.sort(pos).astype(np.int64)
        doctor = sorted(
            (p, model.TOPIC_MEDICATION[o])
            for p, o in getattr(self.cfg, "doctor_letters", ())
            if o in model.TOPIC_MEDICATION
        )
        self.doctor_idx = pid.get_indexer([p for p, _ in doctor]).astype(np.int64)
        self.doctor_meds = np.array([m for _, m in doctor], dtype=object)

    def _step_with_letters(self, fy: int, age_next: np.ndarray) -> None:
        """Advance the counterfactual and the actual state with the same draws."""
        if self.st_cf is None:
            self._resolve_letters()
        base = self.st if self.st_cf is None else self.st_cf
        twin = copy.deepcopy(self.r_dyn)
        cf = model.step(base, age_next, twin, self.cal)
        adjust = None
        if fy == self.letter_year + 1:
            rng, rng_doctor = self._letter_rng(fy, 0), self._letter_rng(fy, 3)
            rows, effect = self.letter_idx, self.cfg.letter_effect

            def adjust(st: dict) -> None:
                model.letter_response(st, rows, effect, rng)
                model.doctor_response(st, self.doctor_idx, self.doctor_meds, effect, rng_doctor)

        self.st = model.step(self.st, age_next, self.r_dyn, self.cal, adjust=adjust)
        if twin.bit_generator.state != self.r_dyn.bit_generator.state:  # pragma: no cover
            raise RuntimeError("letter effect changed the number of shared random draws")
        cf.pop("_cores")
        self.st.pop("_cores")
        self.st_cf = cf

    # -- one fiscal year ------------------------------------------------------------------
    def run_year(self, fy: int, first: bool) -> None:
        cfg, rng = self.cfg, self.r_pop
        fy_start = np.datetime64(f"{fy}-04-01")
        fy_end = np.datetime64(f"{fy + 1}-03-31")
        if first:
            n0 = cfg.residents
            w = np.repeat(_BAND_WEIGHTS / 5, 5)
            ages = 40 + rng.choice(35, size=n0, p=w / w.sum())
            ages = np.sort(ages)
            self.add(ages, fy, np.full(n0, fy_start))  # enrolled_from fixed below
            back = np.where(
                (ages >= 62) & (rng.random(n0) < 0.7),
                rng.random(n0) * (ages - 60),
                rng.random(n0) * np.minimum(ages - 20, 30),
            )
            self.cur_from = fy_start - np.maximum((back * 365.25).astype(int), 1)
            prof = np.interp(ages, *_AGE_PROFILE)
            self.att_scale = cfg.attendance / prof.mean()
        else:
            age_next = age_fy_end(self.birth, fy)
            if self.letters_on and fy > self.letter_year:
                self._step_with_letters(fy, age_next)
            else:
                self.st = model.step(self.st, age_next, self.r_dyn, self.cal)
                self.st.pop("_cores")
        age = age_fy_end(self.birth, fy)
        self.st["age"] = age
        if self.st_cf is not None:
            self.st_cf["age"] = age
        n = self.n
        exit_date = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
        exit_reason = np.full(n, "", dtype=object)
        member = self.status == 0

        if not first:
            # rejoin of earlier leavers
            rej = (self.status == 1) & (age <= 74) & (rng.random(n) < 0.06)
            ridx = np.flatnonzero(rej)
            self.status[ridx] = 0
            self.cur_from[ridx] = fy_start + rng.integers(0, 365, len(ridx))
            # exits of members present at the start of the year (counterfactual state: the
            # letters do not change who dies, moves or joins)
            ref = self.st if self.st_cf is None else self.st_cf
            c = model.cores(ref)
            sex = ref["sex"]
            a = age.astype(float)
            h_death = np.where(sex == 1, 0.0011, 0.0006) * np.exp(0.085 * (a - 40))
            h_death *= (
                np.exp(
                    0.15 * c["G"]
                    + 0.10 * c["B"]
                    + 0.5 * (ref["smk"] == 1)
                    + 0.3 * (ref["h_stroke"] | ref["h_heart"])
                )
                / 1.25
            )
            h_move = np.interp(a, [40, 60, 74], [0.025, 0.012, 0.008])
            h_ins = np.interp(a, [40, 59, 60, 65, 74], [0.04, 0.03, 0.015, 0.005, 0.003])
            h_oth = np.full(n, 0.002)
            haz = np.stack([h_death, h_move, h_ins, h_oth], axis=1)
            u = rng.random(n)
            cum = np.cumsum(haz, axis=1)
            kind = (u[:, None] >= cum).sum(axis=1)  # 0..3 event, 4 none
            cand = member & ~rej
            date = fy_start + rng.integers(0, 365, n)
            t75 = cand & (age == 75)
            bday75 = birthday_at(self.birth, 75) - 1
            died = cand & (kind == 0) & (~t75 | (date < bday75))
            left = cand & ~t75 & (kind >= 1) & (kind <= 3)
            reasons = np.array(["deceased", "moved_out", "changed_insurer", "other"], dtype=object)
            exit_date[died] = date[died]
            exit_reason[died] = "deceased"
            exit_date[left] = date[left]
            exit_reason[left] = reasons[kind[left]]
            t75 &= ~died
            exit_date[t75] = bday75[t75]
            exit_reason[t75] = "turned_75"
            # also those over 75 who were somehow still members (safety)
            old = member & (age > 75) & (exit_reason == "")
            exit_date[old] = np.maximum(self.cur_from[old], fy_start)
            exit_reason[old] = "turned_75"
            # joiners: new 40-year-olds (already NHI members), retirees and movers
            staying = int(((self.status == 0) & (exit_reason == "")).sum())
            n40 = int(round(cfg.residents * _BAND_WEIGHTS[0] / _BAND_WEIGHTS.sum() / 5))
            n_other = max(0, cfg.residents - staying - n40)
            n_ret = int(round(0.55 * n_other))
            ret_ages = rng.choice(np.arange(60, 66), size=n_ret, p=[0.3, 0.1, 0.1, 0.1, 0.1, 0.3])
            mov_ages = rng.integers(40, 74, n_other - n_ret)
            new_ages = np.concatenate([np.full(n40, 40), ret_ages, mov_ages]).astype(np.int64)
            new_from = np.concatenate(
                [
                    fy_start - rng.integers(365, 365 * 20, n40),
                    fy_start + rng.integers(0, 365, n_other),
                ]
            )
            old_n = self.n
            self.add(new_ages, fy, new_from)
            grow = self.n - old_n
            exit_date = np.concatenate([exit_date, np.full(grow, np.datetime64("NaT"))])
            exit_reason = np.concatenate([exit_reason, np.full(grow, "", dtype=object)])
            age = age_fy_end(self.birth, fy)
            self.st["age"] = age
            if self.st_cf is not None:
                self.st_cf["age"] = age
            n = self.n
        # close periods of leavers
        leaving = exit_reason != ""
        lidx = np.flatnonzero(leaving)
        if len(lidx):
            self.close(lidx, exit_date[lidx], exit_reason[lidx])
        # attendance among eligible members
        member = self.status == 0
        win_from = np.maximum(self.cur_from, fy_start)
        win_to = np.where(leaving, exit_date - 1, fy_end)
        win_to = np.where(np.isnat(win_to), fy_end, win_to)
        eligible = member & (age >= 40) & (age <= 74) & (win_to >= win_from)
        target = np.clip(np.interp(age, *_AGE_PROFILE) * self.att_scale, 0.01, 0.95)
        a0 = target * (1 - _REPEAT) / (1 - target)
        p = np.where(self.elig_last, np.where(self.att_last, _REPEAT, a0), target)
        ra = self.r_att
        attend = eligible & (ra.random(n) < p)
        ref = self.st if self.st_cf is None else self.st_cf
        month = np.where(ra.random(n) < 0.7, ref["pref_month"], model._exam_month(ra, n))
        m0 = np.datetime64(f"{fy}-04", "M") + month.astype(int)
        dim = ((m0 + 1).astype("datetime64[D]") - m0.astype("datetime64[D]")).astype(int)
        exam = m0.astype("datetime64[D]") + (ra.random(n) * dim).astype(int)
        outside = (exam < win_from) | (exam > win_to)
        span = (win_to - win_from).astype(int)
        resample = outside & (span >= 20)
        exam = np.where(
            resample,
            win_from + (ra.random(n) * np.maximum(span, 1)).astype(int),
            exam,
        )
        attend &= ~outside | resample
        self.elig_last = eligible
        self.att_last = attend  # the chain stays counterfactual
        extra = np.zeros(n, dtype=bool)
        if self.letters_on and fy == self.letter_year + 1:
            # letters bring some would-be non-attendees to this year's checkup
            q = 1.0 - np.exp(-model.LETTER_ATTEND * self.cfg.letter_effect)
            rows = self.letter_idx
            extra[rows[self._letter_rng(fy, 1).random(len(rows)) < q]] = True
            extra &= eligible & ~attend & (~outside | resample)
        self.attendance_log.append((fy, int(eligible.sum()), int(attend.sum() + extra.sum())))
        # statuses after the year
        self.status[leaving & (exit_reason == "deceased")] = 2
        self.status[leaving & (exit_reason == "turned_75")] = 2
        self.status[leaving & np.isin(exit_reason, ["moved_out", "changed_insurer", "other"])] = 1
        if not self.measure:
            return
        # observe attendees (the letters' extra attendees with streams of their own)
        idx = np.flatnonzero(attend)
        if len(idx):
            seed = np.random.SeedSequence([self.cfg.seed, 7, fy])
            self._observe(fy, idx, exam, age, self.r_obs, seed)
        xidx = np.flatnonzero(extra)
        if len(xidx):
            seed = np.random.SeedSequence([self.cfg.seed, 7, fy, _LETTER_STREAM])
            self._observe(fy, xidx, exam, age, self._letter_rng(fy, 2), seed)
        if self.st_cf is not None and len(idx) + len(xidx):
            self._letter_drivers(idx, xidx, age)

    def _observe(self, fy, idx, exam, age, rng, seed) -> None:
        """Checkup rows and truth probabilities of persons ``idx`` (drivers: below)."""
        sub = {k: v[idx] for k, v in self.st.items()}
        birth = self.birth[idx]
        exam_i = exam[idx]
        exam_age = age_on(birth, exam_i)
        by = _years(birth)
        obs = observe(sub, age[idx], exam_age, by, rng, self.cal)
        frame = {
            "person_idx": idx,
            "exam_date": exam_i,
            "birth_date": birth,
        }
        for col in CHECKUP_COLUMNS:
            if col in obs:
                frame[col] = obs[col]
        self.checkups.append(pd.DataFrame(frame))
        cfs = {}
        if fy > self.cfg.last_fiscal_year - getattr(self.cfg, "whatif_years", 0):
            cfs = whatif.counterfactual_states(sub, obs, age[idx], self.cal)
        pt, cf = truth.p_true_with_counterfactuals(sub, age[idx], exam_age, by, seed, self.cal, cfs)
        cols = {"person_idx": idx, "fiscal_year": np.full(len(idx), fy)}
        for j, o in enumerate(OUTCOMES):
            cols["p_true_" + o] = pt[:, j]
        for key in WHATIF_KEYS:  # NaN: the scenario does not apply (or no counterfactual year)
            for j, o in enumerate(OUTCOMES):
                col = np.full(len(idx), np.nan)
                if key in cf:
                    col[cfs[key][0]] = cf[key][:, j]
                cols[f"p_true_{o}__{key}"] = col
        tr = pd.DataFrame(cols)
        if self.st_cf is None:
            for view in ("generator", "observed"):
                drv = truth.drivers(sub, age[idx], self.cal, view=view)
                for c in drv:
                    tr[c] = drv[c].to_numpy()
        self.truth.append(tr)

    def _letter_drivers(self, idx: np.ndarray, xidx: np.ndarray, age: np.ndarray) -> None:
        """Drivers of this year's truth rows once the letters have acted.

        Population means come from the counterfactual examinees (exactly the no-letter run's),
        so nobody else's drivers move; lettered examinees get drivers of their actual state.
        """
        lettered = np.isin(idx, self.letter_idx)
        rows = np.concatenate([idx, idx[lettered], xidx])
        st = {
            k: np.concatenate([v[idx], self.st[k][rows[len(idx) :]]]) for k, v in self.st_cf.items()
        }
        drv = pd.concat(
            [truth.drivers(st, age[rows], self.cal, n_ref=len(idx) or None, view=v)
             for v in ("generator", "observed")],
            axis=1,
        )  # fmt: skip
        pick = np.concatenate(
            [np.where(lettered, len(idx) + np.cumsum(lettered) - 1, np.arange(len(idx))),
             len(idx) + int(lettered.sum()) + np.arange(len(xidx))]
        )  # fmt: skip
        chunks = self.truth[-2:] if len(idx) and len(xidx) else self.truth[-1:]
        picked = drv.iloc[pick].reset_index(drop=True)
        start = 0
        for tr in chunks:
            part = picked.iloc[start : start + len(tr)]
            for c in drv:
                tr[c] = part[c].to_numpy()
            start += len(tr)

    # -- outputs ------------------------------------------------------------------------------
    def person_ids(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """Person IDs ``NN-NNNNNN`` by person index (a prefix does not depend on later joiners)."""
        rng = self.r_names if rng is None else rng
        cand = rng.integers(10_000_000, 99_999_999, size=self.n * 2 + 100)
        _, first = np.unique(cand, return_index=True)
        uniq = cand[np.sort(first)][: self.n]
        return np.array([f"{v // 1_000_000:02d}-{v % 1_000_000:06d}" for v in uniq], dtype=object)

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        pid = self.person_ids()
        if self.st_cf is not None and not set(pid[self.letter_idx]) == self.cfg.letters:
            raise RuntimeError("person IDs of the lettered residents changed")  # pragma: no cover
        ch = pd.concat(self.checkups, ignore_index=True)
        ch["person_id"] = pid[ch["person_idx"].to_numpy()]
        ch = ch.sort_values(["exam_date", "person_id"], kind="stable").reset_index(drop=True)
        out = pd.DataFrame(index=ch.index)
        for col, kind in CHECKUP_COLUMNS.items():
            # Items the ward does not simulate (the facility's own judgements) stay missing.
            s = ch[col] if col in ch else pd.Series(np.nan, index=ch.index)
            if kind == "int":
                out[col] = pd.array(np.where(np.isnan(s), 0, s).astype(np.int64), dtype="Int64")
                out.loc[s.isna().to_numpy(), col] = pd.NA
            elif kind == "float":
                out[col] = s.astype("float64")
            elif kind == "date":
                out[col] = pd.to_datetime(s).astype("datetime64[ns]")
            else:
                out[col] = s.astype(str)
        tr = pd.concat(self.truth, ignore_index=True)
        tr.insert(0, "person_id", pid[tr.pop("person_idx").to_numpy()])
        tr = tr.sort_values(["fiscal_year", "person_id"], kind="stable").reset_index(drop=True)
        # enrollment
        rows_idx, rows_from, rows_until, rows_reason = [], [], [], []
        for idx, fr, un, rs in self.periods:
            rows_idx.append(idx)
            rows_from.append(fr)
            rows_until.append(un)
            rows_reason.append(rs)
        open_idx = np.flatnonzero(self.status == 0)
        rows_idx.append(open_idx)
        rows_from.append(self.cur_from[open_idx])
        rows_until.append(np.full(len(open_idx), np.datetime64("NaT"), dtype="datetime64[D]"))
        rows_reason.append(np.full(len(open_idx), None, dtype=object))
        en = pd.DataFrame(
            {
                "person_id": pid[np.concatenate(rows_idx)],
                "enrolled_from": pd.to_datetime(np.concatenate(rows_from)).astype("datetime64[ns]"),
                "enrolled_until": pd.to_datetime(np.concatenate(rows_until)).astype(
                    "datetime64[ns]"
                ),
                "end_reason": np.concatenate(rows_reason),
            }
        )
        en["end_reason"] = en["end_reason"].where(en["end_reason"].notna(), None)
        en = en.sort_values(["person_id", "enrolled_from"], kind="stable").reset_index(drop=True)
        ct = names.contacts(pid, self.st["sex"], self.r_names)
        return out, en, ct, tr
