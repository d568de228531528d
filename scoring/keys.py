"""Pseudonyms as numbers: matching and sorting millions of them without a Python string each.

The store's pseudonyms are fixed-width lowercase hexadecimal (data.pseudonym), so each is a
64-bit integer ordered as the strings are. Sorted keys answer "is it there" and "where is it"
by binary search, in 8 bytes a resident; anything else (other widths or characters, tests'
hand-made names) is matched as Arrow text, with the same answers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Lowercase hexadecimal digit of each byte value (-1: not one).
_HEX = np.full(256, -1, dtype=np.int8)
_HEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16)


def hex_keys(arr: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """Pseudonyms of at most 16 lowercase hex digits, all of one length, as ``uint64``s
    ordered as the strings are; ``None`` for anything else (or nothing)."""
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    keys, widths = np.zeros(len(arr), dtype=np.uint64), set()
    at = 0
    for chunk in chunks:
        n = len(chunk)
        if not n:
            continue
        if chunk.null_count:
            return None
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)
        offsets = offsets[chunk.offset : chunk.offset + n + 1]
        width = int(offsets[1] - offsets[0])
        widths.add(width)
        if not 0 < width <= 16 or len(widths) > 1 or int(offsets[-1] - offsets[0]) != width * n:
            return None  # not one fixed width (offsets rise by ``width`` at every row then)
        data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        out = keys[at : at + n]
        for j, col in enumerate(data.reshape(n, width).T):
            digit = _HEX[col]
            if (digit < 0).any():
                return None
            out |= digit.astype(np.uint64) << np.uint64(4 * (width - 1 - j))
        at += n
    return keys if widths else None


_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: Keys handled at a time where a whole array's temporaries would be 8 bytes a key each.
BLOCK = 1 << 20


def hex_text(keys: np.ndarray, width: int) -> pa.ChunkedArray:
    """:func:`hex_keys` undone: each key as ``width`` lowercase hex digits, Arrow text made
    column of digits by column (no Python string per key)."""
    per_chunk = max(1, (2**31 - 1) // max(width, 1))  # Arrow text's 32-bit offsets
    chunks = []
    for start in range(0, len(keys), per_chunk):
        k = keys[start : start + per_chunk]
        chars = np.empty((len(k), width), dtype=np.uint8)
        for a in range(0, len(k), BLOCK):  # the 8-byte temporaries a block at a time
            block = k[a : a + BLOCK]
            for j in range(width):
                nibble = (block >> np.uint64(4 * (width - 1 - j))) & np.uint64(15)
                chars[a : a + BLOCK, j] = _DIGITS[nibble.astype(np.intp)]
        offsets = np.arange(0, (len(k) + 1) * width, width, dtype=np.int32)
        chunks.append(
            pa.StringArray.from_buffers(len(k), pa.py_buffer(offsets), pa.py_buffer(chars))
        )
    return pa.chunked_array(chunks, type=pa.string())


def isin_sorted(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """``np.isin`` for a sorted, de-duplicated ``sorted_unique`` (``values`` a block at a
    time: the positions' 8-byte temporaries of 25M values were ≈ 0.4 GB)."""
    out = np.zeros(len(values), dtype=bool)
    if not len(sorted_unique):
        return out
    for a in range(0, len(values), BLOCK):
        v = values[a : a + BLOCK]
        at = np.minimum(np.searchsorted(sorted_unique, v), len(sorted_unique) - 1)
        out[a : a + BLOCK] = sorted_unique[at] == v
    return out


class PseudonymSet:
    """Pseudonyms to test others against, batch after batch (contacts against the scored
    residents): sorted 64-bit keys when all are of one hex width (the store's), so a batch
    is looked up by binary search instead of Arrow hashing the whole set again for it."""

    def __init__(self, text: pa.ChunkedArray) -> None:
        self.text = text
        self.width = _width(text)
        keys = hex_keys(text) if len(text) else None
        self.keys = None if keys is None else np.unique(keys)

    def contains(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Whether each of ``values`` (Arrow text) is in the set (missing values are not)."""
        if self.keys is not None and len(values) and _width(values) == self.width:
            keys = hex_keys(values)
            if keys is not None:  # every value of the set's width and kind
                return isin_sorted(keys, self.keys)
        return pc.is_in(values, value_set=self.text).to_numpy(zero_copy_only=False)


class PseudonymIndex:
    """Unique pseudonyms to find others' positions in, batch after batch, as :func:`positions`
    finds them: sorted 64-bit keys and where each stands when all are of one hex width (the
    store's; nothing more when they come sorted, as the eligibility index does), so a batch is
    looked up by binary search, not by sorting or hashing the whole index again for it."""

    def __init__(self, text: pa.ChunkedArray) -> None:
        self.text = text
        self.width = _width(text)
        keys = hex_keys(text) if len(text) else None
        self.keys = self.order = None
        if keys is not None:
            if len(keys) > 1 and not (keys[1:] > keys[:-1]).all():
                order = np.argsort(keys, kind="stable")
                keys = keys[order]
                self.order = order.astype(np.int32) if len(order) < 2**31 else order
            if len(keys) > 1 and (keys[1:] == keys[:-1]).any():
                raise ValueError("Reindexing only valid with uniquely valued Index objects")
            self.keys = keys
        elif pc.count_distinct(text, mode="all").as_py() != len(text):
            raise ValueError("Reindexing only valid with uniquely valued Index objects")

    def positions(self, values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """For each of ``values`` (Arrow text): its position in the index and whether it is
        there (missing values are not)."""
        if self.keys is not None and len(values) and _width(values) == self.width:
            keys = hex_keys(values)
            if keys is not None:
                at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
                found = self.keys[at] == keys
                if self.order is not None:
                    at = self.order[at]
                return np.where(found, at, 0).astype(np.int64), found
        at = pc.fill_null(pc.index_in(values, value_set=self.text), -1).to_numpy()
        found = at >= 0
        return np.where(found, at, 0).astype(np.int64), found


def positions(
    text: pa.ChunkedArray | pa.Array, index: pd.Index | pa.ChunkedArray
) -> tuple[np.ndarray, np.ndarray]:
    """For each pseudonym of ``text``: its position in ``index`` (unique pseudonyms; an index
    or its Arrow text) and whether it is there, as ``Series.map`` would match them: by binary
    search on keys when both are of one hex width, else by Arrow's hash lookup (no Python
    string per row)."""
    values = index if isinstance(index, pa.ChunkedArray) else arrow_text(index)
    return PseudonymIndex(values).positions(text)


def _width(text: pa.Array | pa.ChunkedArray) -> int:
    return len(text[0].as_py() or "") if len(text) else 0


def arrow_text(values: pd.Series | pd.Index) -> pa.ChunkedArray:
    """Pseudonyms (a column or an index) as Arrow text: zero-copy when they are Arrow text
    already, else made once from their values (missing stays missing)."""
    dtype = values.dtype
    if isinstance(dtype, pd.ArrowDtype):
        arr = pa.chunked_array(pa.array(values.array))
        return arr if pa.types.is_string(arr.type) else arr.cast(pa.string())
    try:
        arr = pa.array(values.to_numpy(dtype=object, na_value=None), pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text: as their pandas strings
        arr = pa.array(pd.Series(values).astype("string").array, pa.string())
    return pa.chunked_array([arr])
