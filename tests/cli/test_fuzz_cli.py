"""Property-based tests of the command line: whatever the input, no traceback.

Exit codes: docs/contract.md §Exit codes.

Hypothesis throws bundles built from random bytes, codes, dates, numbers, encodings (UTF-8,
CP932, UTF-16, binary) and missing tables at ``kenshin ingest``, and broken stores, years, model
URIs, dates and configuration files at ``kenshin score``. Every run must end in exit code 0, 2
(bad input) or 3 (a bug, logged); on 2 and 3 with exactly one line on stderr; never with a
traceback on the terminal. When ingest succeeds, the row accounting in ``manifest.json`` adds up;
when scoring fails, the output folder holds nothing of the run.

Derandomised (fixed examples, no example database), so CI sees the same cases every time.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from kenshin.cli import app
from scoring.outputs import AnnualOutputs
from tests.conftest import (
    CHAMPION,
    checkup_row,
    serve_as_champion,
    small_scoring_ward,
)

runner = CliRunner()
FUZZ = settings(
    max_examples=50,  # ingest: ≈ 0.2 s an example
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TABLES = ("checkups", "enrollment", "contacts")
#: Exit-3 cases seen (printed at the end of the module for whoever fixes them).
INTERNAL_ERRORS: list[str] = []


def check_cli_result(result, what: str) -> None:
    """Exit 0/2/3; on 2/3 exactly one stderr line; no traceback anywhere."""
    out, err = result.stdout, result.stderr
    assert result.exit_code in (0, 2, 3), (what, result.exit_code, result.exception, out, err)
    assert "Traceback" not in out and "Traceback" not in err, (what, out, err)
    if result.exit_code in (2, 3):
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, (what, err)
        prefix = "error:" if result.exit_code == 2 else "internal error:"
        assert lines[0].startswith(prefix), (what, lines[0])
    if result.exit_code == 3:
        log = err.split("details in ", 1)[-1].split("; please report", 1)[0]
        text = Path(log).read_text(encoding="utf-8") if Path(log).is_file() else err
        INTERNAL_ERRORS.append(f"{what}\n{err.strip()}\n{text}")


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

_FW = str.maketrans("0123456789.-", "０１２３４５６７８９．－")
_ERAS = (("S", "昭和", 1925), ("H", "平成", 1988), ("R", "令和", 2018))


def _date_text(d: date, style: int) -> str:
    era = next((e for e in reversed(_ERAS) if d.year > e[2]), _ERAS[0])
    return [
        d.isoformat(),
        d.strftime("%Y%m%d"),
        d.strftime("%Y/%m/%d"),
        f"{era[0]}{d.year - era[2]}.{d.month}.{d.day}",
        f"{era[1]}{d.year - era[2]}年{d.month}月{d.day}日",
        d.isoformat().translate(_FW),
        f"{d.day}/{d.month}/{d.year}",
    ][style]


dates = st.builds(_date_text, st.dates(date(1850, 1, 1), date(2200, 12, 31)), st.integers(0, 6))
numbers = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.floats(-1e4, 1e4).map(lambda x: f"{x:.2f}".translate(_FW)),
)
codes = st.integers(-3, 12).map(str)
odd = st.sampled_from(
    ["", " ", "NaN", "null", "-", "－", "１２０．５", "1e309", "0x10", " 120 ", "1,200", "'", '"',
     "\x00", "=1+1", "?", "??", "①", "髙﨑", "\u200b", "\r", "\n", ",", ";"]
)  # fmt: skip
values = st.one_of(st.text(max_size=12), numbers, codes, dates, odd)
COLUMNS = {
    "checkups": list(checkup_row()),
    "enrollment": ["person_id", "enrolled_from", "enrolled_until", "end_reason"],
    "contacts": ["person_id", "name", "name_kana", "postal_code", "address", "language", "opt_out"],
}


def _base_rows(n: int) -> dict[str, list[dict]]:
    """``n`` plausible persons: one or two checkups each, an enrollment and a contact row."""
    checkups, enrollment, contacts = [], [], []
    for i in range(n):
        pid = f"12-{i:06d}"
        checkups.append(checkup_row(person_id=pid, exam_date="2024-06-10"))
        if i % 2:
            checkups.append(checkup_row(person_id=pid, exam_date="2025-06-12", sbp="140"))
        enrollment.append({"person_id": pid, "enrolled_from": "2015-04-01", "enrolled_until": "",
                           "end_reason": ""})  # fmt: skip
        contacts.append({"person_id": pid, "name": "架空 太郎", "name_kana": "カクウ タロウ",
                         "postal_code": "123-4567", "address": "東京都架空区1-2-3",
                         "language": "ja", "opt_out": "0"})  # fmt: skip
    return {"checkups": checkups, "enrollment": enrollment, "contacts": contacts}


@st.composite
def bundles(draw):
    """(files: name → bytes, --encoding, --today) of a random bundle."""
    rows = _base_rows(draw(st.integers(1, 5)))
    # Mutations: (table, row, column, value); a column may be a new (extra) one.
    for _ in range(draw(st.integers(0, 6))):
        table = draw(st.sampled_from(TABLES))
        if not rows[table]:
            continue
        row = rows[table][draw(st.integers(0, len(rows[table]) - 1))]
        column = draw(st.one_of(st.sampled_from(COLUMNS[table]), st.text(min_size=1, max_size=6)))
        row[column] = draw(values)
    for table in TABLES:  # a duplicated row (merged) now and then
        if rows[table] and draw(st.booleans()) and draw(st.booleans()):
            rows[table].append(dict(rows[table][0]))
    files: dict[str, bytes] = {}
    for table in TABLES:
        form = draw(
            st.sampled_from(
                ["utf-8", "utf-8", "utf-8-sig", "cp932", "cp932", "utf-16", "parquet", "binary",
                 "missing", "truncated", "drop-column", "header-only"]
            )
        )  # fmt: skip
        frame = pd.DataFrame(rows[table])
        if form == "missing":
            continue
        if form == "binary":
            files[f"{table}.csv"] = draw(st.binary(max_size=300))
            continue
        if form == "drop-column":
            frame = frame.drop(columns=draw(st.sampled_from(list(frame.columns))))
        if form == "header-only":
            frame = frame.iloc[:0]
        if form == "parquet":
            import io

            buf = io.BytesIO()
            frame.astype(str).to_parquet(buf, index=False)
            files[f"{table}.parquet"] = buf.getvalue()
            continue
        encoding = form if form in ("utf-8-sig", "cp932", "utf-16") else "utf-8"
        text = frame.to_csv(index=False)
        data = text.encode(encoding, errors="replace" if encoding == "cp932" else "surrogatepass")
        if form == "truncated":
            data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
        files[f"{table}.csv"] = data
    if draw(st.integers(0, 9)) == 0:  # now and then an XML document or an archive of junk
        name = draw(st.sampled_from(["c.xml", "c.zip"]))
        files[name] = draw(st.one_of(st.binary(max_size=200), st.just(b"<ClinicalDocument/>")))
    encoding = draw(st.sampled_from([None, None, None, "utf-8", "cp932", "utf-16", "latin-1",
                                     "no-such-codec"]))  # fmt: skip
    today = draw(st.one_of(st.none(), st.none(), dates, st.text(max_size=8)))
    return files, encoding, today


def _balanced(store: Path) -> None:
    manifest = json.loads((store / "manifest.json").read_text(encoding="utf-8"))
    for table, a in manifest["accounting"].items():
        assert a["read"] == a["loaded"] + a["rejected"] + a["merged_duplicates"], (table, a)


def _csv_bundle(edit=None, raw_checkups: bytes | None = None) -> dict[str, bytes]:
    """Six plausible persons as UTF-8 CSV; ``edit(rows)`` changes the rows first."""
    rows = _base_rows(6)
    if edit is not None:
        edit(rows)
    files = {f"{t}.csv": pd.DataFrame(rows[t]).to_csv(index=False).encode() for t in TABLES}
    if raw_checkups is not None:
        files["checkups.csv"] = raw_checkups
    return files


#: A header with a bare carriage return inside an unquoted field.
BARE_CR = b"person_id,exam_date,sex,birth_date,memo\r0\n12-000000,2024-06-10,1,1970-05-01,x\n"
#: Inputs that once ended in an internal error (exit 3): always tried, besides the random ones.
KNOWN = [
    (_csv_bundle(lambda r: r["checkups"][0].update(sbp="99999")), None, None),
    (_csv_bundle(lambda r: r["checkups"][0].update(sex="")), None, None),
    (_csv_bundle(raw_checkups=BARE_CR), None, None),
    (_csv_bundle(), "no-such-codec", None),
    (_csv_bundle(), None, "R8.4.1"),
    (_csv_bundle(lambda r: r["checkups"][0].update(birth_date="1900-01-01")), None, None),
]


@FUZZ
@given(bundle=bundles())
def test_ingest_never_ends_in_a_traceback(bundle):
    _ingest_case(bundle)


@pytest.mark.parametrize(
    "bundle", KNOWN, ids=["sbp-99999", "sex-empty", "bare-cr", "codec", "today-era", "born-1900"]
)
def test_ingest_known_cases_never_end_in_a_traceback(bundle):
    """Each once ended in an internal error; now each is a row reject or bad input."""
    assert _ingest_case(bundle).exit_code in (0, 2)


def _ingest_case(bundle):
    files, encoding, today = bundle
    with tempfile.TemporaryDirectory(prefix="kenshin-fuzz-") as tmp:
        folder = Path(tmp) / "bundle"
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        args = ["ingest", str(folder), "--store", str(Path(tmp) / "store"), "--force"]
        if encoding:
            args += ["--encoding", encoding]
        if today:
            args += ["--today", today]
        res = runner.invoke(app, args)
        check_cli_result(res, f"ingest files={sorted(files)} encoding={encoding} today={today!r}")
        if res.exit_code == 0:
            _balanced(Path(tmp) / "store")
        return res


# --------------------------------------------------------------------------------------------
# kenshin score
# --------------------------------------------------------------------------------------------

FY = 2025
GOOD_MODEL = CHAMPION


@pytest.fixture(scope="module")
def scoring_ward(tmp_path_factory):
    """A small ward to score and its engine (:func:`tests.conftest.small_scoring_ward`)."""
    return small_scoring_ward(tmp_path_factory.mktemp("fuzz_score"), FY, ("ggt", "hba1c"), 20)


@pytest.fixture
def stub_champion(scoring_ward, monkeypatch):
    """``models:/kenshin-risk@champion`` is the ward's engine; any other URI goes to MLflow."""
    serve_as_champion(monkeypatch, scoring_ward[1])


STORE_FAULTS = (
    "no-manifest", "manifest-json", "manifest-bytes", "part-bytes",
    "part-truncated", "part-empty", "no-checkups", "no-enrollment", "enrollment-bytes",
    "no-contacts", "contacts-bytes", "empty-folder", "no-store", "store-is-file",
)  # fmt: skip


def _break_store(store: Path, fault: str, junk: bytes) -> None:
    parts = sorted((store / "checkups").rglob("*.parquet")) if (store / "checkups").exists() else []
    if fault == "no-manifest":
        (store / "manifest.json").unlink()
    elif fault == "manifest-json":
        (store / "manifest.json").write_text('{"accounting": [1, 2', encoding="utf-8")
    elif fault == "manifest-bytes":
        (store / "manifest.json").write_bytes(junk)
    elif fault == "part-bytes" and parts:
        parts[-1].write_bytes(junk)
    elif fault == "part-truncated" and parts:
        data = parts[-1].read_bytes()
        parts[-1].write_bytes(data[: len(data) // 2])
    elif fault == "part-empty" and parts:
        parts[-1].write_bytes(b"")
    elif fault == "no-checkups":
        shutil.rmtree(store / "checkups")
    elif fault == "no-enrollment":
        (store / "enrollment.parquet").unlink()
    elif fault == "enrollment-bytes":
        (store / "enrollment.parquet").write_bytes(junk)
    elif fault == "no-contacts":
        (store / "private" / "contacts.parquet").unlink()
    elif fault == "contacts-bytes":
        (store / "private" / "contacts.parquet").write_bytes(junk)
    elif fault == "empty-folder":
        shutil.rmtree(store)
        store.mkdir()
    elif fault == "no-store":
        shutil.rmtree(store)
    elif fault == "store-is-file":
        shutil.rmtree(store)
        store.write_bytes(junk)


text_files = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([
        b"chunk_size = 0\n", b"chunk_size = -5\n", b"[[scenarios]]\nkey = 1\n", b"seed = 'x'\n",
        b"control_rate = 2.0\n", b"[budget]\nadvice = -1\n", b"[min_risk]\nnope = 0.1\n",
        b"[budget]\nadvice = 3\nsee_doctor = 2\n", b"",
    ]),
)  # fmt: skip
models = st.one_of(
    st.sampled_from([
        "models:/kenshin-risk@nope", "models:/nope/1", "models:/kenshin-risk/99",
        "runs:/0123456789abcdef/model", "/nonexistent/model", "file:///nonexistent", "", "::",
    ]),
    st.text(max_size=20),
)  # fmt: skip


letter_histories = st.one_of(
    st.just("missing"),
    text_files,
    st.lists(st.tuples(st.text(max_size=20), st.one_of(dates, st.text(max_size=10))), max_size=4)
    .map(lambda rows: pd.DataFrame(rows, columns=["pseudonym", "letter_date"]).to_csv(index=False))
    .map(lambda text: text.encode("utf-8", "surrogatepass")),
)
#: What each example breaks (mostly one thing, so that every check down the run is reached).
AXES = ("store", "store", "store", "year", "model", "scoring_date", "scoring_config",
        "selection_config", "history", "several")  # fmt: skip


@st.composite
def score_cases(draw):
    axis = draw(st.sampled_from(AXES))

    def pick(name: str, bad, good):
        broken = axis == name or (axis == "several" and draw(st.booleans()))
        return draw(bad) if broken else good

    return {
        "axis": axis,
        "fault": pick("store", st.sampled_from(STORE_FAULTS), "none"),
        "junk": draw(st.binary(max_size=100)),
        "year": pick(
            "year", st.one_of(st.sampled_from([FY - 1, FY + 1]), st.integers(-10, 10_000)), FY
        ),
        "model": pick("model", models, GOOD_MODEL),
        "scoring_date": pick("scoring_date", st.one_of(dates, st.text(max_size=10)), None),
        "scoring_config": pick("scoring_config", text_files, None),
        "selection_config": pick("selection_config", text_files, None),
        "history": pick("history", letter_histories, None),
        "out_exists": draw(st.booleans()),
    }


@settings(FUZZ, max_examples=30)  # score: up to ≈ 2 s an example
@given(case=score_cases())
def test_score_never_ends_in_a_traceback(case, scoring_ward, stub_champion):
    ward, _ = scoring_ward
    work = ward / "work"  # shared: the MLflow database is created once
    work.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kenshin-fuzz-", dir=ward) as tmp:
        tmp = Path(tmp)
        store = tmp / "store"
        shutil.copytree(ward / "store", store)
        _break_store(store, case["fault"], case["junk"])
        out = tmp / "out"
        if case["out_exists"]:
            out.mkdir()
            (out / "keep.txt").write_text("not kenshin's")
        args = ["score", "--store", str(store), "--year", str(case["year"]), "--out", str(out),
                "--workdir", str(work), "--model", case["model"], "--no-letters", "--no-report"]  # fmt: skip
        if case["scoring_date"] is not None:
            args += ["--scoring-date", case["scoring_date"]]
        for option, key in (("--scoring-config", "scoring_config"),
                            ("--selection-config", "selection_config"),
                            ("--letter-history", "history")):  # fmt: skip
            if case[key] == "missing":
                args += [option, str(tmp / "missing.toml")]
            elif case[key] is not None:
                path = tmp / f"{key}.{'csv' if key == 'history' else 'toml'}"
                path.write_bytes(case[key])
                args += [option, str(path)]
        res = runner.invoke(app, args)
        short = {k: v for k, v in case.items() if k != "junk"}
        check_cli_result(res, f"score {short}")
        if res.exit_code == 0:
            outs = AnnualOutputs(out)
            assert outs.scores.is_file() and outs.run.is_file()
            assert set(outs.undeclared()) <= {"keep.txt"}, outs.undeclared()
        else:  # all or nothing: a failed run leaves the output folder as it was
            left = sorted(p.name for p in out.iterdir()) if out.exists() else []
            assert left == (["keep.txt"] if case["out_exists"] else []), (short, left)
        assert not list(tmp.glob(".out.partial*")), "staging folder left behind"


@pytest.fixture(autouse=True)
def _no_internal_errors():
    """Exit 3 keeps the terminal clean (checked above) but is a bug: a test that met one fails,
    naming the distinct errors (``-s`` prints each case with its log). A birth date of 1900
    once ended here as exit 3, with a warning nobody read."""
    before = len(INTERNAL_ERRORS)
    yield
    new = INTERNAL_ERRORS[before:]
    if new:
        kinds = sorted({case.splitlines()[1].split(" — details")[0] for case in new})
        pytest.fail(
            f"{len(new)} run(s) ended in an internal error (exit 3): " + " | ".join(kinds),
            pytrace=False,
        )


def teardown_module() -> None:
    if INTERNAL_ERRORS:  # pragma: no cover - shown with -s, for whoever fixes them
        print(f"\n{len(INTERNAL_ERRORS)} internal error(s) (exit 3):")
        for case in INTERNAL_ERRORS:
            print("-" * 78 + "\n" + case)
