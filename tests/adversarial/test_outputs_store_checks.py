"""``kenshin score`` checks what it needs from the store before any work: no
enrollment table, no checkups, no checkups of the scoring year → exit 2 with one line; no
contacts table → the run goes on without letters and says so."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from data.ingest import IngestConfig, ingest
from kenshin.annual import check_store
from kenshin.cli import app
from kenshin.errors import BadInputError
from tests.conftest import assert_one_line_error, checkup_row, write_bundle

TODAY = "2026-11-27"


def _store(tmp_path, drop: str | None = None, empty: str | None = None):
    rows = [checkup_row(person_id=f"P{i}") for i in range(5)]
    bundle = write_bundle(tmp_path / "bundle", rows)
    if drop:
        (bundle / f"{drop}.csv").unlink()
    if empty:  # the header only
        path = bundle / f"{empty}.csv"
        path.write_text(path.read_text().split("\n", 1)[0] + "\n")
    ingest(bundle, tmp_path / "store", IngestConfig(today=TODAY))
    return tmp_path / "store"


def _score(tmp_path, store, year: int = 2024):
    work = tmp_path / "work"  # no model was looked for if no MLflow store appears here
    res = CliRunner().invoke(
        app,
        ["score", "--store", str(store), "--year", str(year), "--out", str(tmp_path / "out"),
         "--workdir", str(work)],
    )  # fmt: skip
    assert not (tmp_path / "out").exists()  # nothing written
    return res


def test_a_store_without_enrollment_stops_before_any_work(tmp_path):
    res = _score(tmp_path, _store(tmp_path, drop="enrollment"))
    assert_one_line_error(
        res, "has no enrollment", "ingest enrollment (docs/contract.md §Enrollment)"
    )
    assert not (tmp_path / "work" / "mlflow.db").exists()


def test_a_store_whose_enrollment_had_no_rows_stops_naming_it(tmp_path):
    """It ran on, and stopped with "nobody is eligible", which did not say why."""
    res = _score(tmp_path, _store(tmp_path, empty="enrollment"))
    assert_one_line_error(res, "has no enrollment", "one without rows")


def test_a_store_without_the_scoring_year_stops_before_any_work(tmp_path):
    res = _score(tmp_path, _store(tmp_path), year=2026)
    assert_one_line_error(res, "has no checkups in FY2026", "(it holds FY2024)")
    assert not (tmp_path / "work" / "mlflow.db").exists()


def test_a_store_without_contacts_goes_on_without_letters_and_says_so(tmp_path, monkeypatch):
    import kenshin.annual as ka

    seen = []

    def no_model(uri, workdir):  # the run went past the checks (the whole run: test_annual)
        seen.append(uri)
        raise BadInputError("no model in this test")

    monkeypatch.setattr(ka, "load_model", no_model)
    res = _score(tmp_path, _store(tmp_path, drop="contacts"))
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("note: letters are switched off: the store has no contacts")
    assert "ingest contacts" in lines[0]
    assert seen and lines[-1] == "error: no model in this test"


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"fiscal_years": [], "accounting": {"checkups": {"loaded": 0}}}, "has no checkups;"),
        ({"fiscal_years": [2023, 2024]}, "no checkups in FY2025 (it holds FY2023-FY2024)"),
        ({"fiscal_years": [2025], "missing_tables": ["enrollment"]}, "no enrollment"),
    ],
)
def test_check_store_refuses_what_score_cannot_use(tmp_path, manifest, message):
    with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_store(tmp_path, manifest, 2025)


def test_check_store_lets_a_store_without_contacts_through(tmp_path):
    assert check_store(
        tmp_path, {"fiscal_years": [2025], "missing_tables": ["contacts"]}, 2025
    ) == ["contacts"]
