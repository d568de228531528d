"""One synthetic store and one trained engine per test session (shared by tests/models)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

RESIDENTS, YEARS, SEED = 12_000, 6, 5
KEY = "kenshin-test-key"  # tests/conftest.py TEST_KEY


@dataclass
class Trained:
    features: pd.DataFrame
    labels: pd.DataFrame
    truth: pd.DataFrame
    config: object
    engine: object
    data: object
    report: object


def build(tmp: Path) -> Trained:
    """Generate → ingest → features → train_and_evaluate (with the generator's truth)."""
    from data.ingest import ingest
    from data.pseudonym import pseudonymise
    from data.synth import SynthConfig, generate, write_bundle
    from features import build_training_tables
    from models.config import ModelConfig
    from models.run import evaluate_engine
    from models.train import train_engine

    old = os.environ.get("KENSHIN_PSEUDONYM_KEY")
    os.environ["KENSHIN_PSEUDONYM_KEY"] = KEY
    try:
        bundle = generate(SynthConfig(residents=RESIDENTS, years=YEARS, seed=SEED))
        write_bundle(bundle, tmp / "bundle", fmt="parquet")
        ingest(tmp / "bundle", tmp / "store")
    finally:
        if old is None:
            os.environ.pop("KENSHIN_PSEUDONYM_KEY", None)
        else:
            os.environ["KENSHIN_PSEUDONYM_KEY"] = old
    features, labels = build_training_tables(tmp / "store")
    truth = bundle.truth.assign(pseudonym=pseudonymise(bundle.truth["person_id"], KEY.encode()))
    truth = truth.drop(columns="person_id")
    # LightGBM for every outcome: the behavioural tests are about it. Since facilities measure
    # only one glucose item for ~40 % of checkups (data.synth.observe), this ward has ~95
    # diabetes training events, just under the default bar (test_small_ward covers it).
    config = ModelConfig(min_events=80)
    engine, data = train_engine(features, labels, config)
    report = evaluate_engine(engine, data, config, truth)
    return Trained(features, labels, truth, config, engine, data, report)
