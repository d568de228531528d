"""A generated, ingested ward and its last fiscal year ready to score (tests/models)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tests.conftest import TEST_KEY, temporary_env


@dataclass
class Ward:
    store: Path
    features: pd.DataFrame
    labels: pd.DataFrame
    fiscal_year: int
    history: pd.DataFrame  # checkups of the eligible residents (up to the last fiscal year)
    index: pd.DataFrame  # eligible residents' index checkups (scoring.score.Eligibility.index)


def make_ward(tmp: Path, residents: int, years: int, seed: int) -> Ward:
    """synth → ingest (Parquet bundle) → training tables, and who is scored in the last year."""
    from data.ingest import ingest
    from data.store import read_checkups, read_enrollment
    from data.synth import SynthConfig, generate, write_bundle
    from features import build_training_tables
    from scoring.score import eligible_residents, load_scoring_config

    with temporary_env(KENSHIN_PSEUDONYM_KEY=TEST_KEY):
        bundle = generate(SynthConfig(residents=residents, years=years, seed=seed))
        write_bundle(bundle, tmp / "bundle", fmt="parquet")
        ingest(tmp / "bundle", tmp / "store")
    store = tmp / "store"
    features, labels = build_training_tables(store)
    checkups = read_checkups(store)
    fy = int(checkups["fiscal_year"].astype(int).max())
    cand = checkups[["pseudonym", "fiscal_year", "exam_date", "age", "sex"]]
    elig = eligible_residents(
        cand, read_enrollment(store), fy, pd.Timestamp(f"{fy + 1}-04-01"), load_scoring_config()
    )
    history = checkups[checkups["pseudonym"].isin(elig.index["pseudonym"])]
    return Ward(store, features, labels, fy, history.reset_index(drop=True), elig.index)
