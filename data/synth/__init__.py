"""Synthetic NHI ward (架空区) with 特定健診 histories, calibrated to NDB FY2021.

Public API::

    bundle = generate(SynthConfig(residents=10_000, years=6, last_fiscal_year=2025, seed=0))
    paths = write_bundle(bundle, Path("out"), fmt="csv", legacy_codes=True)

The ward starts with ``residents`` NHI members whose age at the end of the first fiscal year
(年度末年齢) is 40-74; members age, leave (75th birthday, death, moving, changing insurer) and
join (turning 40, retirement, moving in), and about ``attendance`` of eligible members attend
each year. Measurements come from a latent person model (:mod:`data.synth.model`) whose
reported values are calibrated by sex × 5-year band to the NDB FY2021 means and threshold
prevalences; ``truth`` holds next-year outcome probabilities and drivers
(:mod:`data.synth.truth`). Same config → identical frames and byte-identical files.

Modules: :mod:`~data.synth.ndb` (targets), :mod:`~data.synth.model` (latent model and
calibration), :mod:`~data.synth.observe` (measurement), :mod:`~data.synth.ward` (population
flows and attendance), :mod:`~data.synth.truth` (ground truth), :mod:`~data.synth.names`
(fictional contacts). :func:`data.synth_calibration.calibration_report` compares a bundle with
the NDB targets.

Letters (intervention evaluation, 介入効果の評価): with ``letters`` (person_ids) and
``letter_year``, the lettered residents respond from ``letter_year + 1`` on with strength
``letter_effect`` (:func:`data.synth.model.letter_response`; 0 = no effect). Everything up to
``letter_year`` and every row of a resident without a letter stays identical to the run
without letters; :func:`ward_person_ids` gives the IDs to choose letters from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from data.columns import CHECKUP_COLUMNS, CONTACT_COLUMNS, ENROLLMENT_COLUMNS, OUTCOMES

__all__ = [
    "SynthBundle",
    "SynthConfig",
    "TRUTH_COLUMNS",
    "WHATIF_KEYS",
    "generate",
    "ward_person_ids",
    "write_bundle",
]

#: What-if scenarios whose true counterfactual the ward knows (:mod:`data.synth.whatif`; the
#: same keys as the ``[[scenario]]`` tables of the scoring configuration).
WHATIF_KEYS = (
    "weight_loss_3kg",
    "quit_smoking",
    "exercise",
    "no_late_dinner",
    "less_alcohol",
    "no_snacks",
    "eat_breakfast",
)

#: Columns of ``truth``: ``p_true_<outcome>``, ``drivers_<outcome>`` (levels credited to their
#: upstream causes), ``drivers_observed_<outcome>`` (measured items credited with their current
#: level; :mod:`data.synth.truth`) and the counterfactual ``p_true_<outcome>__<scenario>``
#: (:data:`WHATIF_KEYS`).
TRUTH_COLUMNS = (
    ("person_id", "fiscal_year")
    + tuple("p_true_" + o for o in OUTCOMES)
    + tuple("drivers_" + o for o in OUTCOMES)
    + tuple("drivers_observed_" + o for o in OUTCOMES)
    + tuple(f"p_true_{o}__{s}" for s in WHATIF_KEYS for o in OUTCOMES)
)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate.

    ``letters``: person_ids sent a letter after ``letter_year``'s checkups; ``letter_effect``
    (≥ 0, default 0.3 = small) scales their response in ``letter_year + 1`` and after: per unit,
    the latent adiposity falls by 0.08 SD (glycaemia 0.03, BP 0.05 SD more), each unfavourable
    habit (no exercise / walking, late dinners, daily snacks) improves with probability 0.25, and
    would-be non-attendees come to the next checkup with probability ``1 − exp(−0.5·effect)``
    (:data:`data.synth.model.LETTER_SHIFT` etc.). The default 0.3 gives about −0.4 kg weight,
    −0.02 % HbA1c and −0.7 mmHg SBP (mean change to ``letter_year + 1``, letter − control) and
    +2.5 points attendance; no letters or ``letter_effect = 0`` → no effect at all.

    ``whatif_years``: the last fiscal years whose truth rows carry the what-if counterfactuals
    ``p_true_<outcome>__<scenario>`` (:mod:`data.synth.whatif`; earlier rows: NaN). Two by
    default — the test year of a training run and the year after, scored by the annual run —
    because each year costs about two more Monte-Carlo truths (:func:`data.synth.truth.p_true`).

    ``doctor_letters``: (person_id, outcome) of the letters among ``letters`` that urge a
    doctor's visit (受診勧奨, letter type ``see_doctor``); the recipient also starts the
    medication for that outcome (diabetes, hypertension, dyslipidemia) with probability
    ``1 − exp(−0.5·effect)`` (:data:`data.synth.model.LETTER_TREAT`).
    """

    residents: int = 10_000
    years: int = 6
    last_fiscal_year: int = 2025
    seed: int = 0
    attendance: float = 0.37
    letter_effect: float = 0.3
    letters: frozenset[str] = field(default=frozenset(), repr=False)
    letter_year: int | None = None
    doctor_letters: frozenset[tuple[str, str]] = field(default=frozenset(), repr=False)
    whatif_years: int = 2

    def __post_init__(self) -> None:
        if self.whatif_years < 0:
            raise ValueError("whatif_years must be ≥ 0")
        if self.residents < 1:
            raise ValueError("residents must be ≥ 1")
        if self.years < 1:
            raise ValueError("years must be ≥ 1")
        if not 0.01 <= self.attendance <= 0.9:
            raise ValueError("attendance must be in [0.01, 0.9]")
        if not (math.isfinite(self.letter_effect) and 0 <= self.letter_effect <= 20):
            raise ValueError("letter_effect must be in [0, 20]")
        object.__setattr__(self, "letters", frozenset(self.letters))
        object.__setattr__(self, "doctor_letters", frozenset(self.doctor_letters))
        outside = {pid for pid, _ in self.doctor_letters} - self.letters
        if outside:
            raise ValueError(f"{len(outside)} doctor_letters are not among letters")
        unknown = {o for _, o in self.doctor_letters} - set(OUTCOMES)
        if unknown:
            raise ValueError(f"doctor_letters with unknown outcomes {sorted(unknown)}")
        if self.letter_year is not None and self.letter_year not in self.fiscal_years:
            raise ValueError(
                f"letter_year {self.letter_year} is not a generated fiscal year "
                f"({self.fiscal_years.start}-{self.fiscal_years.stop - 1})"
            )
        if self.letters and self.letter_year is None:
            raise ValueError("letters need a letter_year")

    @property
    def fiscal_years(self) -> range:
        return range(self.last_fiscal_year - self.years + 1, self.last_fiscal_year + 1)


@dataclass
class SynthBundle:
    """The generated tables, canonical 2024 questionnaire coding (docs/contract.md §Truth)."""

    checkups: pd.DataFrame
    enrollment: pd.DataFrame
    contacts: pd.DataFrame
    truth: pd.DataFrame


def generate(config: SynthConfig) -> SynthBundle:
    """Simulate the ward for ``config.years`` fiscal years ending ``config.last_fiscal_year``."""
    from data.synth.model import calibration
    from data.synth.ward import Ward

    ward = Ward(config, calibration())
    for i, fy in enumerate(config.fiscal_years):
        ward.run_year(fy, first=i == 0)
    checkups, enrollment, contacts, truth = ward.frames()
    return SynthBundle(
        checkups=checkups[list(CHECKUP_COLUMNS)],
        enrollment=enrollment[list(ENROLLMENT_COLUMNS)],
        contacts=contacts[list(CONTACT_COLUMNS)],
        truth=truth[list(TRUTH_COLUMNS)],
    )


def ward_person_ids(config: SynthConfig, through_fiscal_year: int | None = None) -> list[str]:
    """person_ids of everybody who was a member of the ward by ``through_fiscal_year``.

    Runs only the membership flows (no measurements, no truth), so it is cheap; the IDs are
    those :func:`generate` gives with the same ``seed``, ``residents`` and first fiscal year.
    """
    from data.synth.model import calibration
    from data.synth.ward import Ward

    last = config.last_fiscal_year if through_fiscal_year is None else through_fiscal_year
    plain = {**_plain(config), "letters": frozenset(), "doctor_letters": frozenset()}
    ward = Ward(SynthConfig(**plain), calibration())
    ward.measure = False
    for i, fy in enumerate(config.fiscal_years):
        if fy > last:
            break
        ward.run_year(fy, first=i == 0)
    return ward.person_ids().tolist()


def _plain(config: SynthConfig) -> dict:
    from dataclasses import fields

    return {f.name: getattr(config, f.name) for f in fields(config)}


def _csv(df: pd.DataFrame, path: Path) -> None:
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].dt.strftime("%Y-%m-%d")
    out.to_csv(path, index=False, encoding="utf-8", lineterminator="\n", na_rep="")


def write_bundle(
    bundle: SynthBundle,
    out_dir: Path,
    fmt: Literal["csv", "parquet"] = "csv",
    legacy_codes: bool = True,
) -> dict[str, Path]:
    """Write ``checkups``/``enrollment``/``contacts`` as NAME.csv or NAME.parquet, and truth.csv.

    CSV: UTF-8, ISO dates, empty cell = missing. With ``legacy_codes`` checkups in FY ≤ 2023
    carry the pre-2024 questionnaire codes (:func:`data.normalise.to_legacy_questionnaire`), as
    many real exports do; without, every year is in the 2024 coding, as exports that converted
    their history are. HbA1c of FY ≤ 2012 is in JDS units either way. Deterministic: the same bundle gives byte-identical files.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet': {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkups = bundle.checkups
    from data.normalise import fiscal_year, to_legacy_export

    # Real exports of FY ≤ 2012 carry HbA1c in JDS units whatever their questionnaire coding.
    tmp = checkups.assign(fiscal_year=fiscal_year(checkups["exam_date"]))
    checkups = to_legacy_export(tmp, questionnaire=legacy_codes)
    checkups = checkups.drop(columns="fiscal_year")[list(CHECKUP_COLUMNS)]
    tables = {
        "checkups": checkups,
        "enrollment": bundle.enrollment,
        "contacts": bundle.contacts,
    }
    paths: dict[str, Path] = {}
    for name, df in tables.items():
        path = out_dir / f"{name}.{fmt}"
        if fmt == "csv":
            _csv(df, path)
        else:
            df.to_parquet(path, index=False, compression="zstd")
        paths[name] = path
    tpath = out_dir / "truth.csv"
    bundle.truth.to_csv(
        tpath, index=False, encoding="utf-8", lineterminator="\n", float_format="%.6g"
    )
    paths["truth"] = tpath
    return paths
