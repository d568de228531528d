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
