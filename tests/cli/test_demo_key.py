"""`kenshin demo` pseudonymises its ward with the public demo key, so every machine trains on
the same residents; the synthetic tables joined to a store find the store's key."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from typer.testing import CliRunner

from data.errors import BadInputError
from data.pseudonym import DEMO_KEY, demo_key, key_check, key_of_store, pseudonymise
from kenshin.cli import app

runner = CliRunner()


def _check(store) -> str:
    return json.loads((store / "manifest.json").read_text())["pseudonym_key_check"]


def test_the_demo_uses_its_own_key_whatever_key_the_machine_has(tmp_path, monkeypatch):
    """A machine's own key (set, or a key file yet to be created) is neither used nor created;
    the environment is as it was after the run. 400 residents are too few to train on, which
    the demo says in one line (exit 2) after the store is made."""
    key_file = tmp_path / "keys" / "pseudonym.key"
    monkeypatch.delenv("KENSHIN_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY_FILE", str(key_file))
    res = runner.invoke(app, ["demo", "--residents", "400", "--workdir", str(tmp_path / "w")],
                        terminal_width=200)  # fmt: skip
    assert res.exit_code == 2 and "no outcome has enough events" in res.output, res.output
    assert "the demo's own public key" in res.output
    assert _check(tmp_path / "w" / "store") == key_check(DEMO_KEY)
    assert not key_file.exists() and "KENSHIN_PSEUDONYM_KEY" not in os.environ


def test_demo_key_restores_the_key_the_environment_named(monkeypatch):
    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY", "the municipality's own key 0123")
    with demo_key():
        assert os.environ["KENSHIN_PSEUDONYM_KEY"].encode() == DEMO_KEY
    assert os.environ["KENSHIN_PSEUDONYM_KEY"] == "the municipality's own key 0123"


def test_the_truth_is_read_with_the_key_its_store_was_made_with(tmp_path, monkeypatch):
    """A demo's store (demo key) and a user's store (their key) both join their truth.csv under
    the user's key; a store of a third key is bad input, not a truth that matches no one."""
    from data.ingest import ingest
    from kenshin.commands import read_truth, run_synth

    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY", "first user key, long enough 0123")
    run_synth(tmp_path / "b", 150, 2, 0, 2025, "csv")
    with demo_key():
        ingest(tmp_path / "b", tmp_path / "demo_store")
    ingest(tmp_path / "b", tmp_path / "user_store")
    for store in ("demo_store", "user_store"):
        truth = read_truth(tmp_path / "b" / "truth.csv", tmp_path / store)
        stored = set(pd.read_parquet(tmp_path / store / "checkups")["pseudonym"])
        assert set(truth["pseudonym"]) <= stored, store
    assert key_of_store(None) == b"first user key, long enough 0123"
    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY", "a second user's key, long enough")
    with pytest.raises(BadInputError, match="another pseudonym key"):
        read_truth(tmp_path / "b" / "truth.csv", tmp_path / "user_store")
    assert read_truth(tmp_path / "b" / "truth.csv", tmp_path / "demo_store").shape[0] > 0


def test_a_demo_selection_finds_its_residents_for_the_next_year(tmp_path, monkeypatch):
    """`kenshin synth --letters` on a demo's selection: its pseudonyms are the demo key's."""
    from data.synth import SynthConfig, ward_person_ids
    from kenshin.commands import letters_from_selection

    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY", "the municipality's own key 0123")
    cfg = SynthConfig(residents=200, years=3, seed=0, last_fiscal_year=2025)
    ids = pd.Series(ward_person_ids(cfg, 2024)[:20], dtype="string")
    sel = pd.DataFrame({"pseudonym": pseudonymise(ids, DEMO_KEY), "arm": "letter",
                        "letter_type": "advice", "outcome": "diabetes",
                        "fiscal_year": 2024})  # fmt: skip
    sel.to_parquet(tmp_path / "selection.parquet")
    cfg, summary = letters_from_selection(tmp_path / "selection.parquet", cfg, None, 1.0)
    assert summary["letters_unmatched"] == 0 and len(cfg.letters) == 20
