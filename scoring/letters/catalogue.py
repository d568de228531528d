"""The advice catalogue (catalogue.yaml): wording health staff edit, validated on load.

Rules enforced here, so that a wording edit cannot break a letter or a safety rule:

* every text has all of ``ja``, ``ja-easy`` and ``en``, none empty (an outcome's ``ja`` and
  ``en`` default to its declaration in data.outcomes);
* every language of a text uses the same ``{fields}`` (the program fills them in);
* every outcome, risk band, letter type and key item has its texts;
* every feature that features.declarations marks ``modifiable`` maps to an advice topic;
* a factor (or what-if scenario) on a feature that is **not** modifiable — age, sex, history,
  lab values — is dropped with a warning, never advised on (docs/domain.md §Letter safety).
"""

from __future__ import annotations

import hashlib
import json
import string
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator

from data.columns import OUTCOMES
from data.outcomes import OUTCOME_DECLARATIONS
from features.declarations import DECLARATIONS

from .schema import BANDS, KEY_ITEMS, LANGUAGES, LETTER_TYPES, OUTCOME_ITEMS

__all__ = [
    "DEFAULT_CATALOGUE",
    "Catalogue",
    "CatalogueError",
    "load_catalogue",
]

DEFAULT_CATALOGUE = Path(__file__).with_name("catalogue.yaml")
_MODIFIABLE = frozenset(d.name for d in DECLARATIONS if d.modifiable)
_DECLARED = frozenset(d.name for d in DECLARATIONS)


class CatalogueError(ValueError):
    """The catalogue file is missing, unreadable or breaks a rule (message names where)."""


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def _localised(v: dict[str, str]) -> dict[str, str]:
    missing = [lang for lang in LANGUAGES if not str(v.get(lang) or "").strip()]
    if missing:
        raise ValueError(f"missing or empty language(s) {missing}; every text needs {LANGUAGES}")
    extra = sorted(set(v) - set(LANGUAGES))
    if extra:
        raise ValueError(f"unknown language(s) {extra}; allowed {LANGUAGES}")
    return {lang: str(v[lang]) for lang in LANGUAGES}


Localised = Annotated[dict[str, str], AfterValidator(_localised)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contact(_Strict):
    office: Localised
    address: Localised
    phone: str
    hours: Localised


class Topic(_Strict):
    title: Localised
    advice: Localised


class WhatIfWording(_Strict):
    factor: str
    text: Localised

    @model_validator(mode="after")
    def _placeholders(self) -> WhatIfWording:
        for lang, text in self.text.items():
            if _fields(text) != {"before", "after"}:
                raise ValueError(
                    f"{lang}: a what-if text must use the fields {{before}} and {{after}}"
                )
        return self


class Item(_Strict):
    label: Localised
    unit: str
    decimals: int = 0


#: UI texts the template uses (with the fields each must carry).
UI_FIELDS: dict[str, set[str]] = {
    "lang_attr": set(), "date_format": {"y", "m", "d", "month"}, "issued": {"date"},
    "sender": set(), "title_advice": set(), "title_see_doctor": set(), "greeting": {"name"},
    "sec_values": {"exam_date"}, "col_item": set(), "col_value": set(), "col_guidance": set(),
    "col_referral": set(), "col_judgement": set(), "col_chart": set(), "judge_normal": set(),
    "judge_guidance": set(), "judge_referral": set(), "judge_none": set(), "legend": set(),
    "waist_note": set(), "sec_risk": {"outcome"}, "risk_sentence": {"years", "outcome", "risk"},
    "risk_people": {"n"}, "risk_caveat": set(), "sec_forecast": set(), "col_now": set(),
    "col_forecast": set(), "col_range": set(), "forecast_note": set(), "sec_factors": set(),
    "factors_intro": set(), "factors_none": set(), "sec_whatif": set(), "whatif_note": set(),
    "sec_doctor": set(), "doctor_message": set(), "doctor_items": {"items"},
    "doctor_bp_urgent": set(), "doctor_treatment": set(), "sec_contact": set(),
    "contact_intro": set(), "phone_label": set(), "hours_label": set(), "footer": set(),
}  # fmt: skip


class Catalogue(_Strict):
    """The validated catalogue. ``factors`` maps a modifiable feature to an advice topic."""

    version: int
    contact: Contact
    ui: dict[str, Localised]
    outcomes: dict[str, Localised]
    bands: dict[str, Localised]
    intros: dict[str, Localised]
    topics: dict[str, Topic]
    factors: dict[str, str]
    whatif: dict[str, WhatIfWording]
    items: dict[str, Item]

    @model_validator(mode="before")
    @classmethod
    def _drop_non_modifiable(cls, data):
        """Drop factors and scenarios on features that are not modifiable (with a warning)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        # An outcome's ja/en names default to its declaration (data.outcomes); the catalogue
        # adds the やさしい日本語 wording and may override the others for letters.
        outcomes = dict(data.get("outcomes") or {})
        for o in OUTCOME_DECLARATIONS:
            if isinstance(outcomes.get(o.name), dict):
                outcomes[o.name] = {"ja": o.label_ja, "en": o.label_en, **outcomes[o.name]}
        data["outcomes"] = outcomes
        factors = dict(data.get("factors") or {})
        for name in list(factors):
            if name in _DECLARED and name not in _MODIFIABLE:
                warnings.warn(
                    f"catalogue: factor {name!r} is not modifiable (features.declarations); "
                    "its advice is dropped",
                    stacklevel=2,
                )
                del factors[name]
        data["factors"] = factors
        whatif = dict(data.get("whatif") or {})
        for key, sc in list(whatif.items()):
            f = sc.get("factor") if isinstance(sc, dict) else None
            if f in _DECLARED and f not in _MODIFIABLE:
                warnings.warn(
                    f"catalogue: what-if {key!r} is on {f!r}, which is not modifiable; dropped",
                    stacklevel=2,
                )
                del whatif[key]
        data["whatif"] = whatif
        return data

    @model_validator(mode="after")
    def _complete(self) -> Catalogue:
        problems: list[str] = []

        def need(section: str, have, keys) -> None:
            missing = [k for k in keys if k not in have]
            if missing:
                problems.append(f"{section}: missing {missing}")

        need("outcomes", self.outcomes, OUTCOMES)
        need("bands", self.bands, BANDS)
        need("intros", self.intros, LETTER_TYPES)
        need("items", self.items, (*KEY_ITEMS, *OUTCOME_ITEMS))
        need("ui", self.ui, UI_FIELDS)

        def fields_ok(where: str, texts: dict[str, str], allowed: set[str]) -> None:
            for lang, text in texts.items():
                try:
                    unknown = _fields(text) - allowed
                except ValueError as e:  # unbalanced braces
                    problems.append(f"{where}.{lang}: {e}")
                    continue
                if unknown:
                    problems.append(f"{where}.{lang}: unknown fields {sorted(unknown)}")

        for key, want in UI_FIELDS.items():
            if key in self.ui:
                fields_ok(f"ui.{key}", self.ui[key], want)
        for key, texts in self.intros.items():
            fields_ok(f"intros.{key}", texts, {"fiscal_year", "outcome"})
        for section in ("outcomes", "bands"):
            for key, texts in getattr(self, section).items():
                fields_ok(f"{section}.{key}", texts, set())
        for key, t in self.topics.items():
            fields_ok(f"topics.{key}.title", t.title, set())
            fields_ok(f"topics.{key}.advice", t.advice, set())
        for name, topic in self.factors.items():
            if name not in _DECLARED:
                problems.append(f"factors.{name}: not a declared feature (features.declarations)")
            if topic not in self.topics:
                problems.append(f"factors.{name}: unknown topic {topic!r}")
        need("factors (every modifiable feature)", self.factors, sorted(_MODIFIABLE))
        for key, sc in self.whatif.items():
            if sc.factor not in _MODIFIABLE:
                problems.append(f"whatif.{key}: factor {sc.factor!r} is not a declared feature")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def topic_of(self, feature: str | None) -> str | None:
        """The advice topic of a feature, or None (unknown or not modifiable → no advice)."""
        if not feature or feature not in _MODIFIABLE:
            return None
        return self.factors.get(feature)

    def digest(self) -> str:
        """sha256 of the validated content (part of every letter's input hash)."""
        payload = json.dumps(self.model_dump(), ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Read and validate a catalogue file (default: the bundled catalogue.yaml)."""
    p = Path(path or DEFAULT_CATALOGUE).resolve()
    try:
        st = p.stat()
    except OSError as e:
        raise CatalogueError(f"cannot read letter catalogue {p}: {e}") from e
    return _load(str(p), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _load(path: str, _mtime_ns: int, _size: int) -> Catalogue:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise CatalogueError(f"cannot read letter catalogue {path}: {e}") from e
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as e:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in e.errors()
        ]
        raise CatalogueError(f"letter catalogue {path} is invalid:\n" + "\n".join(lines)) from e
