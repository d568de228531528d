"""Hostile XML sources: zip bombs, FIFOs and devices, huge documents.

Every fixture is built at test time (the bombs are deflate streams assembled by hand, so a
1.9 GB member costs a couple of MB and no compression time). Memory claims are measured in a
fresh process (peak RSS), hangs are bounded by a subprocess timeout.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.mhlw_xml import reader as xml_reader
from data.mhlw_xml import write_checkup_xml
from data.mhlw_xml.reader import DocumentTooLarge, NotRegularFile, read_member, read_xml
from tests.conftest import checkup_row, write_bundle

ROOT = Path(__file__).resolve().parents[2]
TODAY = "2026-11-27"
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Peak RSS a whole ingest of a small bundle stays under (the process alone is ≈ 200 MiB);
#: inflating the bomb or reading the huge file would be gigabytes.
RSS_CAP_MIB = 700


def _doc(person_id: str = "12-000001") -> bytes:
    row = checkup_row(person_id=person_id, exam_date="20240610", birth_date="19700501")
    return write_checkup_xml(row, {"address": "東京都架空区1-2-3"})


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _zeros_deflate(total: int, chunk: int = 1 << 20) -> tuple[bytes, int]:
    """A raw deflate stream of ``total`` zero bytes and its CRC-32, built without compressing
    ``total`` bytes: one sync-flushed block of ``chunk`` zeros repeated, then a final empty
    block."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(b"\0" * chunk) + c.flush(zlib.Z_SYNC_FLUSH)
    n, rest = divmod(total, chunk)
    assert rest == 0
    crc, zeros = 0, b"\0" * chunk
    for _ in range(n):
        crc = zlib.crc32(zeros, crc)
    return block * n + b"\x03\x00", crc


def _raw_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A ZIP file from (name, deflate data, crc, declared uncompressed size, true size)."""
    out, central = io.BytesIO(), []
    for name, data, crc, declared, _true in members:
        offset = out.tell()
        raw = name.encode()
        out.write(struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0x800, 8, 0, 0x21, crc, len(data),
                              declared, len(raw), 0) + raw)  # fmt: skip
        out.write(data)
        central.append(
            struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0x800, 8, 0, 0x21, crc,
                        len(data), declared, len(raw), 0, 0, 0, 0, 0o644 << 16, offset) + raw
        )  # fmt: skip
    start = out.tell()
    out.write(b"".join(central))
    size = out.tell() - start
    out.write(struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(central), len(central), size,
                          start, 0))  # fmt: skip
    path.write_bytes(out.getvalue())
    return path


def _member(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return name, _deflate(data), zlib.crc32(data), len(data), len(data)


def _ingest_in_fresh_process(bundle: Path, store: Path, timeout: float = 180) -> dict:
    """``kenshin ingest`` in a new process (bounded by ``timeout``); exit code, output and the
    peak RSS of that process (small bundles are parsed in it, without workers)."""
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'bench')!r})\n"
        "from memory import own_peak_mb\n"
        "from typer.testing import CliRunner\n"
        "from kenshin.cli import app\n"
        f"res = CliRunner().invoke(app, ['ingest', {str(bundle)!r}, '--store', {str(store)!r},"
        f" '--today', {TODAY!r}, '--accept-rejects'])\n"
        # this program's own peak (ru_maxrss would carry the forking parent's over exec)
        "print(json.dumps({'exit': res.exit_code, 'stdout': res.stdout, 'stderr': res.stderr,"
        " 'rss_mib': own_peak_mb()}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rejects(store: Path) -> pd.Series:
    rej = pd.read_parquet(store / "rejects.parquet")
    return rej.set_index("source_file")["reason"]


# ------------------------------------------------------------------------------- zip bombs


def test_xml_zip_bombs_are_rejected_member_by_member_in_flat_memory(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row(person_id="99-000009")])
    big = 1900 * 2**20  # 1.9 GB of zeros in ≈ 2 MB
    bomb, crc = _zeros_deflate(big)
    small, small_crc = _zeros_deflate(6 * 2**20)  # under the size limit, but 1000:1
    _raw_zip(
        bundle / "1399999999_00139999_202506011_1.zip",
        [
            _member("r/DATA/h_good.xml", _doc()),
            ("r/DATA/h_bomb.xml", bomb, crc, big, big),  # the header says so
            ("r/DATA/h_liar.xml", bomb, crc, 2_000, big),  # the header lies: 2 kB
            ("r/DATA/h_ratio.xml", small, small_crc, 6 * 2**20, 6 * 2**20),
            _member("r/DATA/h_good2.xml", _doc("12-000002")),
        ],
    )
    assert (bundle / "1399999999_00139999_202506011_1.zip").stat().st_size < 5 * 2**20
    out = _ingest_in_fresh_process(bundle, tmp_path / "s")
    assert out["exit"] == 0, out
    assert out["rss_mib"] < RSS_CAP_MIB, out["rss_mib"]
    reasons = _rejects(tmp_path / "s")
    zname = "1399999999_00139999_202506011_1.zip"
    assert reasons[f"{zname}:r/DATA/h_bomb.xml"].startswith(
        "document too large: 1,900.0 MiB declared (limit 8.0 MiB"
    )
    assert reasons[f"{zname}:r/DATA/h_liar.xml"].startswith("unreadable member: BadZipFile")
    assert reasons[f"{zname}:r/DATA/h_ratio.xml"].startswith("compression ratio over 100:1")
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    acct = manifest["accounting"]["checkups"]
    assert (acct["read"], acct["loaded"], acct["rejected"]) == (6, 3, 3)


class _Endless(io.RawIOBase):
    """An archive member that never ends, whatever its header says."""

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        b[:] = b"<" * len(b)
        self.served += len(b)
        return len(b)


class _FakeZip:
    def __init__(self) -> None:
        self.stream = _Endless()

    def open(self, _info):
        return io.BufferedReader(self.stream)


@pytest.mark.parametrize("compressed", [10**9, 1_000])
def test_xml_member_bytes_are_counted_while_inflated_not_taken_from_the_header(compressed):
    info = zipfile.ZipInfo("r/DATA/h.xml")
    info.file_size, info.compress_size = 100, compressed  # the header says 100 bytes
    fake = _FakeZip()
    with pytest.raises(DocumentTooLarge) as exc:
        read_member(fake, info, limit=3 * 2**20)
    if compressed == 10**9:  # no ratio to speak of: stopped by the size limit
        assert str(exc.value).startswith("document too large: more than 3.0 MiB")
    else:  # 1 kB compressed: stopped by the ratio at the floor (1 MiB)
        assert str(exc.value).startswith("compression ratio over 100:1")
    assert fake.stream.served <= 3 * 2**20 + 2 * xml_reader.READ_CHUNK  # stopped reading there


@settings(FUZZ, max_examples=40)
@given(
    size=st.integers(0, 300_000),
    limit=st.integers(1, 200_000),
    ratio=st.sampled_from([2, 10, 100]),
    floor=st.sampled_from([1, 4096, 65_536]),
    compressible=st.booleans(),
)
def test_xml_read_member_returns_the_member_or_a_reasoned_reject(
    size, limit, ratio, floor, compressible
):
    data = (b"<a/>" * (size // 4 + 1))[:size] if compressible else os.urandom(size)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m.xml", data)
    with zipfile.ZipFile(buf) as zf:
        info = zf.getinfo("m.xml")
        over_ratio = size > max(floor, ratio * max(info.compress_size, 1))
        try:
            got = read_member(zf, info, limit=limit, max_ratio=ratio, ratio_floor=floor)
        except DocumentTooLarge as exc:
            assert size > limit or over_ratio, str(exc)
            assert str(exc).startswith(("document too large", "compression ratio over"))
        else:
            assert got == data and size <= limit and not over_ratio


# ------------------------------------------------------------- FIFOs, devices, broken links


def _hostile_paths(bundle: Path) -> dict[str, str]:
    """Entries named like XML sources that are not regular files → the kind reported."""
    os.mkfifo(bundle / "h_fifo.xml")
    os.mkfifo(bundle / "fifo.zip")
    os.symlink("/dev/zero", bundle / "h_zero.xml")
    os.symlink("/dev/zero", bundle / "zero.zip")
    os.symlink(bundle / "nowhere.xml", bundle / "h_broken.xml")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(bundle / "h_socket.xml"))
    finally:
        sock.close()
    return {
        "h_fifo.xml": "FIFO",
        "fifo.zip": "FIFO",
        "h_zero.xml": "character device",
        "zero.zip": "character device",
        "h_broken.xml": "broken symbolic link",
        "h_socket.xml": "socket",
    }


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_xml_fifos_devices_and_broken_links_are_skipped_unopened(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row(person_id="99-000009")])
    (bundle / "h_good.xml").write_bytes(_doc())
    expected = _hostile_paths(bundle)
    out = _ingest_in_fresh_process(bundle, tmp_path / "s", timeout=120)  # a hang is a failure
    assert out["exit"] == 0, out
    assert out["rss_mib"] < RSS_CAP_MIB, out["rss_mib"]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    skipped = manifest["reader_notes"]["checkups"]["xml"]["skipped_files"]
    assert skipped == {"count": len(expected), "files": expected}
    assert manifest["accounting"]["checkups"]["loaded"] == 2  # the CSV row and h_good.xml
    assert all(not s["file"].startswith(tuple(expected)) for s in manifest["sources"])
    said = " ".join(out["stdout"].split())
    assert "warning: checkups: skipped 6 XML/ZIP entries that are not checkup files" in said
    assert "h_fifo.xml (FIFO)" in said and "zero.zip (character device)" in said


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_xml_a_bundle_of_nothing_but_a_fifo_is_exit_2_naming_it(tmp_path):
    (tmp_path / "b").mkdir()
    os.mkfifo(tmp_path / "b" / "only.xml")
    out = _ingest_in_fresh_process(tmp_path / "b", tmp_path / "s", timeout=120)
    assert out["exit"] == 2, out
    lines = [line for line in out["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and "only.xml (FIFO)" in lines[0], out["stderr"]
    assert "were skipped unopened" in lines[0] and "FIFO" in lines[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_xml_a_fifo_swapped_in_after_listing_is_never_read(tmp_path):
    """The check on the open descriptor: a FIFO is opened non-blocking and refused."""
    fifo = tmp_path / "late.xml"
    os.mkfifo(fifo)
    box: dict = {}

    def attempt():
        try:
            box["data"] = xml_reader.read_regular_file(fifo)
        except BaseException as exc:  # reported below
            box["error"] = exc

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert isinstance(box.get("error"), NotRegularFile) and str(box["error"]) == "FIFO"
    rows = xml_reader._parse_batch((None, [str(fifo)]))  # the worker's path
    assert rows[0][xml_reader._IDX[xml_reader.NON_CHECKUP]] == xml_reader.SKIPPED


# ------------------------------------------------------------------------- huge documents


def test_xml_a_huge_document_is_rejected_by_its_size_before_reading(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row(person_id="99-000009")])
    (bundle / "h_good.xml").write_bytes(_doc())
    with open(bundle / "h_huge.xml", "wb") as f:  # 200 MB, sparse: costs no disk
        f.truncate(200 * 2**20)
    out = _ingest_in_fresh_process(bundle, tmp_path / "s")
    assert out["exit"] == 0, out
    assert out["rss_mib"] < RSS_CAP_MIB, out["rss_mib"]
    assert _rejects(tmp_path / "s")["h_huge.xml"].startswith(
        "document too large: 200.0 MiB (limit 8.0 MiB per checkup document"
    )


def test_xml_a_huge_document_is_never_opened(tmp_path, monkeypatch):
    (tmp_path / "h_good.xml").write_bytes(_doc())
    with open(tmp_path / "h_huge.xml", "wb") as f:
        f.truncate(xml_reader.MAX_DOCUMENT_BYTES + 1)
    opened: list[str] = []
    real = xml_reader.read_regular_file

    def spy(path, limit=None):
        opened.append(Path(path).name)
        return real(path, limit)

    monkeypatch.setattr(xml_reader, "read_regular_file", spy)
    frame, _ = read_xml(tmp_path, workers=1)
    assert opened == ["h_good.xml"]  # the size was judged from stat, before any read
    reasons = frame.set_index("_source_file")["_reject_reason"]
    assert reasons["h_huge.xml"].startswith(
        "document too large: 8,388,609 bytes (limit 8,388,608 bytes per checkup document"
    )


@pytest.mark.parametrize("where", ["file", "archive"])
def test_xml_the_size_limit_is_exact(tmp_path, monkeypatch, where):
    doc = _doc()
    if where == "file":
        (tmp_path / "h.xml").write_bytes(doc)
        source = tmp_path / "h.xml"
    else:
        source = tmp_path / "a.zip"
        with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("r/DATA/h.xml", doc)
    monkeypatch.setattr(xml_reader, "MAX_DOCUMENT_BYTES", len(doc))
    frame, _ = read_xml(source, workers=1)
    assert frame["_reject_reason"].isna().all() and list(frame["person_id"]) == ["12-000001"]
    monkeypatch.setattr(xml_reader, "MAX_DOCUMENT_BYTES", len(doc) - 1)
    frame, notes = read_xml(source, workers=1)
    assert frame["_reject_reason"].iloc[0].startswith("document too large")
    assert notes["xml"]["documents_rejected"] == 1


def test_xml_archive_members_that_are_not_documents_are_listed_not_ignored(tmp_path):
    """A nested archive, a PDF or a note inside an exchange archive went unmentioned."""
    from tests.data.test_mhlw_real_world import _doc

    bundle = tmp_path / "b"
    bundle.mkdir()
    with zipfile.ZipFile(bundle / "x.zip", "w") as zf:
        zf.writestr("x/DATA/h1.xml", _doc())
        zf.writestr("x/DATA/inner.zip", b"PK\x05\x06" + b"\x00" * 18)
        zf.writestr("x/README.pdf", b"%PDF-1.4")
        zf.writestr("x/DATA/", b"")
    frame, notes = read_xml(bundle)
    assert len(frame) == 1
    skipped = notes["xml"]["skipped_files"]
    assert skipped["count"] == 2
    kinds = {name.rsplit("/", 1)[-1]: kind for name, kind in skipped["files"].items()}
    assert kinds["inner.zip"].startswith("nested archive") and kinds["README.pdf"] == (
        "not an XML document"
    )
