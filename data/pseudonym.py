"""Pseudonymisation of insured persons (仮名化), docs/contract.md §Pseudonyms.

``pseudonym = hex(HMAC-SHA256(key, person_id))[:16]``. The key comes from the environment
variable ``KENSHIN_PSEUDONYM_KEY`` or, failing that, from a key file that kenshin creates on first
use with owner-only permissions. With the key the insurer can re-identify; without it nobody can.
``kenshin demo`` pseudonymises its generated ward with :data:`DEMO_KEY` instead.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from data.errors import BadInputError

PSEUDONYM_LENGTH = 16
KEY_ENV = "KENSHIN_PSEUDONYM_KEY"
KEY_FILE_ENV = "KENSHIN_PSEUDONYM_KEY_FILE"


#: A key shorter than this (bytes) would let anyone recompute pseudonyms by brute force.
MIN_KEY_BYTES = 16


#: Fewest distinct bytes a key may hold: 16 NULs or ``aaaa…`` have the length, not the bits.
MIN_DISTINCT_KEY_BYTES = 8
_HEX = frozenset(b"0123456789abcdefABCDEF")
#: The key of ``kenshin demo``'s generated ward. Public on purpose: a person's pseudonym decides
#: their training / validation / test group (models.split), so with a key of its own each
#: machine's demo would train on other residents and print other figures. Synthetic residents
#: only; a real ward never uses it.
DEMO_KEY = b"kenshin demo ward: synthetic residents only, never a real ward"


def _checked(key: bytes, where: str) -> bytes:
    """``key`` if it can hold 128 bits; else bad input saying why (never the key itself)."""
    advice = "use a long random key, e.g. 'openssl rand -hex 32'"
    if len(key) < MIN_KEY_BYTES:
        raise BadInputError(
            f"{where}: the pseudonym key has {len(key)} bytes, fewer than {MIN_KEY_BYTES} "
            f"(128 bits); {advice}"
        )
    if len(set(key) - set(b" \t\r\n\x00")) < MIN_DISTINCT_KEY_BYTES:
        raise BadInputError(
            f"{where}: the pseudonym key repeats fewer than {MIN_DISTINCT_KEY_BYTES} different "
            f"characters (blank, NUL or one letter repeated holds no secret); {advice}"
        )
    if set(key) <= _HEX and len(key) < 2 * MIN_KEY_BYTES:
        raise BadInputError(
            f"{where}: the pseudonym key is {len(key)} hex digits, {4 * len(key)} bits (at "
            f"least {2 * MIN_KEY_BYTES} are needed for 128 bits); {advice}"
        )
    return key


def load_key(key_file: Path | None = None) -> bytes:
    """Return the pseudonym key: ``$KENSHIN_PSEUDONYM_KEY``, else the key file (created 0600).

    A key under 128 bits, or a key file that group or others may read, is refused.
    """
    return load_or_create_key(key_file)[0]


def load_or_create_key(key_file: Path | None = None) -> tuple[bytes, Path | None]:
    """:func:`load_key`, and the key file's path if this call created it (else None): the
    caller tells the user where the new key is and to back it up."""
    env = os.environ.get(KEY_ENV)
    if env is not None:
        return _checked(env.encode("utf-8"), KEY_ENV), None
    path = Path(
        os.environ.get(KEY_FILE_ENV) or key_file or Path.home() / ".kenshin" / "pseudonym.key"
    )
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL: two concurrent first runs must not end up with different keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _read_key_file(path), None
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode("ascii"))
        return _read_key_file(path), path
    return _read_key_file(path), None


def key_check(key: bytes) -> str:
    """A short fingerprint of the key (the store manifest's ``pseudonym_key_check``), so a
    store made with another key is recognised."""
    return hmac.new(key, b"kenshin-key-check", hashlib.sha256).hexdigest()[:12]


def key_of_store(check: str | None) -> bytes:
    """The key a store was made with (its manifest's ``check``), for the synthetic tables
    joined to it (truth.csv): the user's (:func:`load_key`) or the demo's; the user's where
    the store records none. Bad input if neither matches."""
    if check is not None and check == key_check(DEMO_KEY):
        return DEMO_KEY
    key = load_key()
    if check is not None and check != key_check(key):
        raise BadInputError(
            "the store was made with another pseudonym key than this one "
            f"(${KEY_ENV}, ${KEY_FILE_ENV} or ~/.kenshin/pseudonym.key): set the store's key"
        )
    return key


@contextmanager
def demo_key() -> Iterator[None]:
    """Pseudonymise with :data:`DEMO_KEY` in this block (``kenshin demo``), whatever key the
    environment names; the environment is restored after."""
    saved = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = DEMO_KEY.decode("ascii")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = saved


def _read_key_file(path: Path) -> bytes:
    if not path.is_file():
        raise BadInputError(f"{path}: the pseudonym key file is not a regular file")
    if path.stat().st_mode & 0o077:
        raise BadInputError(
            f"{path}: the pseudonym key file may be read by others; run 'chmod 600 {path}'"
        )
    return _checked(path.read_bytes().strip(), str(path))


def pseudonymise(person_ids: pd.Series, key: bytes) -> pd.Series:
    """Map raw ``person_id`` values to pseudonyms; missing stays missing.

    HMAC is computed once per distinct ID (a person has many rows), then mapped back.
    """
    codes, uniques = pd.factorize(person_ids, use_na_sentinel=True)
    digests = [
        hmac.new(key, str(u).encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_LENGTH]
        for u in uniques
    ]
    if len(set(digests)) != len(digests):  # pragma: no cover - 2^64 space; guard anyway
        raise RuntimeError("pseudonym collision: raise PSEUDONYM_LENGTH")
    lookup = pd.array([*digests, pd.NA], dtype="string")
    return pd.Series(lookup[codes], index=person_ids.index, name="pseudonym")
