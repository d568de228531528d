"""Shared fixtures: a fixed pseudonym key, small hand-made bundles, a small synthetic ward."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

TEST_KEY = "kenshin-test-key"


@contextmanager
def temporary_env(**values: str) -> Iterator[None]:
    """Set environment variables for a block (module fixtures cannot use monkeypatch)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def assert_one_line_error(result, *parts: str) -> None:
    """A CLI result that exited 2 with one stderr line naming every part."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1, result.stderr
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test touches the user's key file, MLflow store or working folder."""
    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def checkup_row(**overrides) -> dict:
    """One plausible checkup as export text; override any column."""
    row = {
        "person_id": "12-000001",
        "exam_date": "2024-06-10",
        "sex": "1",
        "birth_date": "1970-05-01",
        "height_cm": "170.0",
        "weight_kg": "72.5",
        "waist_cm": "86.0",
        "sbp": "132",
        "dbp": "84",
        "blood_draw_timing": "2",
        "tg": "140",
        "hdl": "55",
        "ldl": "130",
        "ast": "24",
        "alt": "28",
        "ggt": "40",
        "fpg": "102",
        "hba1c": "5.7",
        "urine_glucose": "1",
        "urine_protein": "1",
        "creatinine": "0.86",
        "q_med_bp": "2",
        "q_med_glucose": "2",
        "q_med_lipid": "2",
        "q_smoking": "3",
        "q_alcohol_freq": "4",
        "q_alcohol_amount": "2",
    }
    row.update(overrides)
    return row


def write_bundle(folder: Path, checkups: list[dict], enrollment=None, contacts=None, **kw) -> Path:
    """Write a small bundle folder as CSV (UTF-8 unless ``encoding`` is given)."""
    folder.mkdir(parents=True, exist_ok=True)
    encoding = kw.get("encoding", "utf-8")
    pd.DataFrame(checkups).to_csv(folder / "checkups.csv", index=False, encoding=encoding)
    ids = sorted({r["person_id"] for r in checkups if r.get("person_id")})
    if enrollment is None:
        enrollment = [{"person_id": p, "enrolled_from": "2015-04-01"} for p in ids]
    if contacts is None:
        contacts = [
            {"person_id": p, "name": "架空 太郎", "address": "東京都架空区1-2-3", "language": "ja"}
            for p in ids
        ]
    pd.DataFrame(enrollment).to_csv(folder / "enrollment.csv", index=False)
    pd.DataFrame(contacts).to_csv(folder / "contacts.csv", index=False)
    return folder


@pytest.fixture(scope="session")
def small_ward():
    """A small synthetic ward (generated once per test session)."""
    from data.synth import SynthConfig, generate

    return generate(SynthConfig(residents=3_000, years=4, seed=11))


def trained_ward(tmp: Path, residents: int, years: int, seed: int, fiscal_year: int):
    """A synthetic ward ingested into ``tmp/store``, trained and promoted in ``tmp/work``
    (LightGBM on every outcome: the small-ward fallback is tested in tests/models). Call it
    inside ``temporary_env(KENSHIN_PSEUDONYM_KEY=…, MLFLOW_TRACKING_URI=…)``; returns the bundle."""
    from data.ingest import ingest
    from data.synth import SynthConfig, generate, write_bundle
    from kenshin.commands import run_train
    from models.config import ModelConfig
    from models.registry import promote

    bundle = generate(
        SynthConfig(residents=residents, years=years, seed=seed, last_fiscal_year=fiscal_year)
    )
    write_bundle(bundle, tmp / "bundle", fmt="csv")
    ingest(tmp / "bundle", tmp / "store")
    run_train(tmp / "store", tmp / "work", config=ModelConfig(min_events=0))
    promote(tmp / "work")
    return bundle


#: The model URI a scoring test serves its in-process engine as (:func:`serve_as_champion`).
CHAMPION = "models:/kenshin-risk@champion"


def small_scoring_ward(tmp: Path, fiscal_year: int, forecast_items: tuple[str, ...],
                       n_estimators: int):  # fmt: skip
    """A small ingested ward to score (``tmp/store``: 300 residents × 3 years) and a small
    engine trained in-process on a larger one (1,500 × 4; every outcome, however few events).
    No MLflow run: :func:`serve_as_champion` serves the engine. Returns ``(tmp, engine)``."""
    from data.ingest import ingest
    from data.synth import SynthConfig, generate
    from data.synth import write_bundle as write_synth
    from features import build_training_tables
    from models.config import ForecastConfig, LGBMParams, ModelConfig
    from models.train import train_engine

    with temporary_env(KENSHIN_PSEUDONYM_KEY=TEST_KEY):
        for name, residents, years in (("train", 1500, 4), ("store", 300, 3)):
            ward = generate(
                SynthConfig(residents=residents, years=years, seed=3, last_fiscal_year=fiscal_year)
            )
            write_synth(ward, tmp / f"{name}_bundle", fmt="csv")
            ingest(tmp / f"{name}_bundle", tmp / name)
    features, labels = build_training_tables(tmp / "train")
    small = LGBMParams(n_estimators=n_estimators, early_stopping_rounds=5, min_child_samples=20)
    cfg = ModelConfig(
        lgbm=small, forecast=ForecastConfig(items=forecast_items, lgbm=small),
        baselines=False, select=False, min_events=0,
    )  # fmt: skip
    engine, _ = train_engine(features, labels, cfg)
    return tmp, engine


def serve_as_champion(monkeypatch, engine) -> None:
    """``kenshin score`` loads ``engine`` for :data:`CHAMPION`; any other URI goes to MLflow."""
    import kenshin.annual as annual
    from features.build import FeatureConfig
    from scoring.contracts import ModelSummary

    real = annual.load_model

    def load(uri, workdir):
        if uri != CHAMPION:
            return real(uri, workdir)
        summary = ModelSummary(uri=uri, name="kenshin-risk", version="1", run_id="",
                               feature_set_version=engine.feature_set_version,
                               test_year=int(engine.test_year), outcomes=tuple(engine.outcomes))  # fmt: skip
        return annual.LoadedModel(engine, FeatureConfig(), summary)

    monkeypatch.setattr(annual, "load_model", load)
