"""Find personal data (raw IDs, names, kana, addresses, the pseudonym key) in bytes.

Shared by the privacy tests: MLflow (tests/models) and the annual run's outputs (tests/scoring).
Fast enough for whole tracking stores: raw IDs are found by their shape, names and addresses by
sliding over runs of Japanese text only.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pandas as pd

ID_SHAPE = rb"\d{2}-\d{6}"


def _runs(text: str) -> list[str]:
    """Maximal runs of digits, hyphens, CJK, kana and full-width forms that hold non-ASCII."""
    runs = re.findall(r"[0-9\-\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]+", text)
    return [s for s in runs if not s.isascii()]


def sqlite_blobs(db: Path) -> dict[str, bytes]:
    """Every text/bytes cell of every table, concatenated per column."""
    blobs: dict[str, bytes] = {}
    with sqlite3.connect(db) as con:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            cols = [c[1] for c in con.execute(f'PRAGMA table_info("{t}")')]
            for row in con.execute(f'SELECT * FROM "{t}"'):
                for c, v in zip(cols, row, strict=True):
                    if isinstance(v, str | bytes):
                        b = v.encode() if isinstance(v, str) else v
                        blobs[f"db:{t}.{c}"] = blobs.get(f"db:{t}.{c}", b"") + b"\n" + b
    return blobs


def find_pii(
    blobs: dict[str, bytes],
    contacts: pd.DataFrame,
    key: str,
    pseudonyms: set[str] | None = None,
) -> list[tuple[str, str]]:
    """(where, what) for every raw ID, name, kana, address, key (or pseudonym) found."""
    ids = set(contacts["person_id"].astype(str))
    assert all(re.fullmatch(ID_SHAPE.decode(), i) for i in ids)  # the scan relies on the shape
    texts = set(contacts["name"].astype(str)) | set(contacts["address"].astype(str))
    if "name_kana" in contacts:
        texts |= set(contacts["name_kana"].dropna().astype(str))
    lengths = sorted({len(t) for t in texts})
    leaks = []
    for where, blob in blobs.items():
        if key.encode() in blob:
            leaks.append((where, "pseudonym key"))
        found = {m.decode() for m in re.findall(ID_SHAPE, blob)} & ids
        leaks += [(where, f"person_id {i}") for i in found]
        if pseudonyms is not None:
            hexes = re.findall(rb"(?<![0-9a-f])[0-9a-f]{16}(?![0-9a-f])", blob)
            leaks += [
                (where, f"pseudonym {h.decode()}") for h in set(hexes) if h.decode() in pseudonyms
            ]
        for run in _runs(blob.decode("utf-8", errors="replace")):
            for n in lengths:
                for i in range(len(run) - n + 1):
                    if run[i : i + n] in texts:
                        leaks.append((where, f"name/address {run[i : i + n]}"))
    return leaks
