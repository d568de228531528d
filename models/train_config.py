"""``train.toml``: everything training reads, in one validated file (analysts never edit Python).

The file holds the models step (models.config.ModelConfig: its scalar settings at the top
level, ``[lgbm]``, ``[forecast]``, ``[split]``, ``[masking]``) and the training tables
(features.tables.TrainingTablesConfig: ``[features]``, ``[labels]``). ``horizon_years`` is set
once, at the top level: the labels and the models share it. Unset keys keep the code's
defaults; the shipped ``models/train.toml`` spells every default out, so a run without
``--config`` trains exactly the model the defaults train.

Validated with pydantic like the scoring configs: an unknown key or a bad value is a
:class:`data.errors.BadInputError` (exit code 2) with one line naming the key and the value,
e.g. ``train.toml: lgbm.learning_rate = -1: must be > 0``.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from data.errors import BadInputError
from features.build import FeatureConfig
from features.labels import LabelConfig
from features.tables import TrainingTablesConfig
from models.config import ModelConfig

__all__ = ["DEFAULT_TRAIN_CONFIG", "TrainConfig", "load_train_config"]

DEFAULT_TRAIN_CONFIG = Path(__file__).with_name("train.toml")
_SECTIONS = ("features", "labels")  # the training tables; every other key is ModelConfig's


class TrainConfig(BaseModel):
    """A validated ``train.toml``: :attr:`model` for models.run, :attr:`tables` for features."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelConfig = Field(default_factory=ModelConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)

    @model_validator(mode="before")
    @classmethod
    def _from_file_layout(cls, raw: Any) -> Any:
        """The file's flat layout → ``{model, features, labels}``; one horizon for both."""
        if not isinstance(raw, dict) or isinstance(raw.get("model"), ModelConfig):
            return raw  # built in Python: TrainConfig(model=ModelConfig(…), …)
        model = {k: v for k, v in raw.items() if k not in _SECTIONS}
        out: dict[str, Any] = {"model": model, **{k: raw[k] for k in _SECTIONS if k in raw}}
        labels = out.get("labels", {})
        if isinstance(labels, dict):
            if "horizon_years" in labels:
                raise ValueError(
                    f"labels.horizon_years = {_shown(labels['horizon_years'])}: set "
                    "horizon_years at the top level instead (labels and models share it)"
                )
            h = model.get("horizon_years", ModelConfig().horizon_years)
            if h in (1, 2, 3) and not isinstance(h, bool):
                out["labels"] = {**labels, "horizon_years": h}
        return out

    @model_validator(mode="after")
    def _one_horizon(self) -> TrainConfig:
        if self.labels.horizon_years != self.model.horizon_years:
            raise ValueError(
                f"labels.horizon_years ({self.labels.horizon_years}) differs from "
                f"horizon_years ({self.model.horizon_years})"
            )
        return self

    @classmethod
    def from_model(cls, model: ModelConfig) -> TrainConfig:
        """``model`` with the default training tables (the labels take its horizon)."""
        return cls(model=model, labels=LabelConfig(horizon_years=model.horizon_years))

    @property
    def tables(self) -> TrainingTablesConfig:
        return TrainingTablesConfig(features=self.features, labels=self.labels)

    def file_dict(self) -> dict[str, Any]:
        """The settings in the file's layout (what :meth:`to_toml` writes; None = unset)."""
        model = asdict(self.model)
        masking = model["masking"]
        masking["optional_items"] = {k: list(g) for k, g in masking["optional_items"]}
        labels = {k: v for k, v in asdict(self.labels).items() if k != "horizon_years"}
        return {**model, "features": asdict(self.features), "labels": labels}

    def to_toml(self) -> str:
        """The resolved settings as a TOML file that loads back to this config."""
        head = "# Resolved training configuration (kenshin train; models/train_config.py).\n"
        return head + "\n".join(_toml_lines(self.file_dict(), ())) + "\n"


def load_train_config(path: Path | str | None = None) -> TrainConfig:
    """Read and validate a training TOML (default: the shipped ``models/train.toml``)."""
    path = Path(path) if path is not None else DEFAULT_TRAIN_CONFIG
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such training config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: not a TOML file ({e})") from None
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise BadInputError(f"{path}: {describe_error(e)}") from None


# ------------------------------------------------------------------------------ messages


def describe_error(e: ValidationError) -> str:
    """The first error of ``e`` in one line: ``key.path = value: what is expected``."""
    first = e.errors()[0]
    loc = [str(p) for p in first["loc"]]
    if loc[:1] == ["model"]:
        loc = loc[1:]
    where = ".".join(loc)
    kind = first["type"]
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"{where}: unknown key{_known_keys(loc)}{more}"
    if kind == "value_error" or not where:  # a rule across keys: the message names them
        msg = first["msg"].removeprefix("Value error, ")
        return f"{where + ': ' if where else ''}{msg}{more}"
    return f"{where} = {_shown(first['input'])}: {_expected(first)}{more}"


def _expected(err: dict) -> str:
    ctx = err.get("ctx") or {}
    bounds = {"greater_than": ">", "greater_than_equal": "≥", "less_than": "<"}
    bounds |= {"less_than_equal": "≤"}
    if err["type"] in bounds:
        bound = next(iter(ctx.values()))
        return f"must be {bounds[err['type']]} {bound:g}"
    if err["type"] == "literal_error":
        return f"must be {ctx['expected']}"
    return err["msg"].replace("Input should be", "must be")


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _known_keys(loc: list[str]) -> str:
    """A hint for an unknown key: the closest known key of its table, else the known keys."""
    table: Any = TrainConfig().file_dict()
    for part in loc[:-1]:
        table = table.get(part) if isinstance(table, dict) else None
    if not isinstance(table, dict):
        return ""
    close = difflib.get_close_matches(loc[-1], list(table), n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(table)})"


# ------------------------------------------------------------------------------ TOML writer


def _toml_lines(table: dict[str, Any], prefix: tuple[str, ...]) -> list[str]:
    scalars = [(k, v) for k, v in table.items() if v is not None and not isinstance(v, dict)]
    lines = [f"\n[{'.'.join(_key(p) for p in prefix)}]"] if prefix and scalars else []
    lines += [f"{_key(k)} = {_toml_value(v)}" for k, v in scalars]
    for k, v in table.items():
        if isinstance(v, dict):
            lines += _toml_lines(v, (*prefix, k))
    return lines


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {type(v).__name__}")
