"""The reference files shipped in data/reference are exact copies of ../shared/ (when present)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
PAIRS = [
    (REPO / "data/reference/ndb_japan", SHARED / "data/external/ndb_japan", "*.csv"),
    (REPO / "data/reference/mhlw", SHARED / "spec/mhlw", "**/*.*"),
]


def test_shipped_reference_files_exist():
    for ours, _, pattern in PAIRS:
        assert sorted(ours.glob(pattern)), ours


@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared beside this checkout")
def test_shipped_reference_files_match_shared():
    for ours, theirs, pattern in PAIRS:
        for src in sorted(theirs.glob(pattern)):
            if src.is_file():
                rel = src.relative_to(theirs)
                assert (ours / rel).read_bytes() == src.read_bytes(), rel


@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared beside this checkout")
def test_no_stale_mhlw_schema_left_beside_the_official_set():
    """The shipped XSDs are exactly the official V08 set (an earlier unofficial hc08/ix08
    must not linger under another name)."""
    ours, theirs = REPO / "data/reference/mhlw/xsd", SHARED / "spec/mhlw/xsd"
    listing = [
        sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        for root in (ours, theirs)
    ]
    assert listing[0] == listing[1]


def test_shipped_index_schema_is_the_official_one():
    text = (REPO / "data/reference/mhlw/xsd/ix08_V08.xsd").read_text(encoding="utf-8")
    assert (
        'targetNamespace="https://www.mhlw.go.jp/stf/seisakunitsuite/bunya/0000161103.html"' in text
    )
    assert 'ref="interactionType"' in text
