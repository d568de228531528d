"""Faults around the store: killed swaps, concurrent writers, damaged files, weak keys."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from data.ingest import IngestConfig, ingest
from data.pseudonym import load_key
from data.store import _VERIFIED, MANIFEST, read_checkups, read_manifest, store_lock
from kenshin.errors import BadInputError
from tests.conftest import checkup_row, write_bundle

TODAY = "2026-11-27"


@pytest.fixture
def store(tmp_path):
    rows = [checkup_row(person_id=f"P{i}") for i in range(5)]
    bundle = write_bundle(tmp_path / "bundle", rows)
    ingest(bundle, tmp_path / "store", IngestConfig(today=TODAY))
    return tmp_path / "store"


def test_a_swap_killed_after_the_first_rename_is_completed(store, tmp_path):
    # write_store renames store → .store.old-PID, then .store.tmp-PID → store; die in between.
    new = tmp_path / ".store.tmp-999999"
    shutil.copytree(store, new)
    store.rename(tmp_path / ".store.old-999999")
    assert not store.exists()
    assert read_manifest(store)["accounting"]["checkups"]["loaded"] == 5
    assert store.is_dir() and len(read_checkups(store)) == 5
    assert not list(tmp_path.glob(".store.tmp-*")) and not list(tmp_path.glob(".store.old-*"))


def test_a_swap_killed_before_the_new_store_was_complete_is_rolled_back(store, tmp_path):
    half = tmp_path / ".store.tmp-999998"
    shutil.copytree(store, half)
    (half / MANIFEST).unlink()  # the manifest is written last: this copy is incomplete
    store.rename(tmp_path / ".store.old-999998")
    assert read_manifest(store)["accounting"]["checkups"]["loaded"] == 5
    assert not list(tmp_path.glob(".store.*-99999*"))


def test_a_copy_left_by_a_kill_during_cleanup_goes_at_the_next_read(store, tmp_path):
    """A kill while the old copy was being removed left ``.store.old-PID`` (with the private
    contacts) until the next ingest; any command reading the store now clears it, and never
    the copy of a writer still alive."""
    dead = tmp_path / ".store.old-999997"
    shutil.copytree(store, dead)
    alive = tmp_path / f".store.tmp-{os.getppid()}"  # a live process: may still be writing
    shutil.copytree(store, alive)
    _VERIFIED.clear()
    assert read_manifest(store)["accounting"]["checkups"]["loaded"] == 5
    assert not dead.exists() and alive.exists()


def test_a_manifest_without_a_fingerprint_is_refused(store):
    """Nothing was checked then: with a part deleted, score ran on the rest of the residents."""
    (store / "checkups" / "fiscal_year=2024" / "part-0.parquet").unlink()
    manifest = json.loads((store / MANIFEST).read_text())
    del manifest["store_fingerprint"]
    (store / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BadInputError, match="no fingerprint .* --force"):
        read_manifest(store)


def test_a_second_ingest_into_a_locked_store_says_who_holds_it(store, tmp_path):
    bundle = tmp_path / "bundle"
    with store_lock(store):
        with pytest.raises(BadInputError, match=rf"another ingest .* \(process {os.getpid()}\)"):
            ingest(bundle, store, IngestConfig(today=TODAY, force=True))
    ingest(bundle, store, IngestConfig(today=TODAY, force=True))  # free again


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("delete_part", "missing data file checkups/fiscal_year=2024/part-0.parquet"),
        ("truncate_part", "checkups/fiscal_year=2024/part-0.parquet"),
        ("truncate_manifest", "damaged manifest"),
        ("extra_part", "unexpected data file checkups/fiscal_year=2030/part-0.parquet"),
    ],
)
def test_a_damaged_store_is_refused_with_one_line_naming_the_file_and_fix(store, damage, message):
    part = store / "checkups" / "fiscal_year=2024" / "part-0.parquet"
    if damage == "delete_part":
        part.unlink()
    elif damage == "truncate_part":
        part.write_bytes(part.read_bytes()[:100])
    elif damage == "truncate_manifest":
        text = (store / MANIFEST).read_text()
        (store / MANIFEST).write_text(text[: len(text) // 2])
    else:
        extra = store / "checkups" / "fiscal_year=2030"
        extra.mkdir()
        shutil.copy(part, extra / "part-0.parquet")
    with pytest.raises(BadInputError) as err:
        read_checkups(store)
    text = str(err.value)
    assert message in text and "kenshin ingest" in text and "--force" in text
    assert "\n" not in text


def test_a_damaged_store_is_rewritten_by_the_next_ingest(store, tmp_path):
    (store / "checkups" / "fiscal_year=2024" / "part-0.parquet").unlink()
    result = ingest(tmp_path / "bundle", store, IngestConfig(today=TODAY))
    assert not result.unchanged and len(read_checkups(store)) == 5


@pytest.mark.parametrize("key", ["", "x", "short-key-15byt"])
def test_weak_keys_are_refused(monkeypatch, key):
    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY", key)
    with pytest.raises(BadInputError, match="fewer than 16"):
        load_key()


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("a" * 16, "different characters"),
        (" " * 20, "different characters"),
        ("ab" * 12, "different characters"),
        ("0123456789abcdef", "16 hex digits, 64 bits"),
        ("0123456789ABCDEF01234567", "24 hex digits, 96 bits"),
    ],
)
def test_keys_with_the_length_but_not_the_bits_are_refused(monkeypatch, key, why):
    """Only the length was checked: 16 NULs, one letter repeated or 16 hex digits (64 bits)
    were accepted, and the pseudonyms could be recomputed by anyone."""
    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY", key)
    with pytest.raises(BadInputError, match=why) as err:
        load_key()
    assert key.strip() == "" or key not in str(err.value)  # the key is never printed


def test_a_key_file_of_nul_bytes_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("KENSHIN_PSEUDONYM_KEY", raising=False)
    path = tmp_path / "pseudonym.key"
    path.write_bytes(b"\x00" * 32)
    path.chmod(0o600)
    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY_FILE", str(path))
    with pytest.raises(BadInputError, match="different characters"):
        load_key()


@pytest.mark.parametrize("key", ["kenshin-test-key", "0123456789abcdef" * 2, "a7#Kq!2z$Lm9@xB0"])
def test_keys_that_can_hold_128_bits_are_taken(monkeypatch, key):
    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY", key)
    assert load_key() == key.encode()


def test_a_key_file_others_can_read_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("KENSHIN_PSEUDONYM_KEY", raising=False)
    path = tmp_path / "pseudonym.key"
    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY_FILE", str(path))
    key = load_key()  # created owner-only
    assert len(key) == 64 and (path.stat().st_mode & 0o777) == 0o600
    path.chmod(0o644)
    with pytest.raises(BadInputError, match="chmod 600"):
        load_key()
    path.chmod(0o600)
    path.write_text("tiny")
    with pytest.raises(BadInputError, match="fewer than 16"):
        load_key()


# --- hostile table files -------------------------------------------------------------------


def test_a_fifo_or_device_named_like_a_table_is_refused_not_read(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    (bundle / "enrollment.csv").unlink()
    os.mkfifo(bundle / "enrollment.csv")  # reading it would block forever
    with pytest.raises(BadInputError, match="enrollment.csv: not a regular file"):
        ingest(bundle, tmp_path / "s", IngestConfig(today=TODAY))
    os.unlink(bundle / "enrollment.csv")
    os.symlink("/dev/zero", bundle / "enrollment.csv")  # reading it would fill memory
    with pytest.raises(BadInputError, match="enrollment.csv: not a regular file"):
        ingest(bundle, tmp_path / "s", IngestConfig(today=TODAY))


def test_a_giant_csv_line_is_cut_out_before_parsing(tmp_path):
    """Its row is a reject naming its size; a header that long stops the file."""
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    with (bundle / "checkups.csv").open("a") as f:
        f.write("12-000009," + "9" * (2 << 20) + "\n")
    result = ingest(bundle, tmp_path / "s", IngestConfig(today=TODAY, accept_rejects=True))
    assert result.rejects["reason"].str.startswith("row is 2,097,162 bytes long").tolist() == [True]
    assert result.rejects["source_row"].tolist() == [2]
    (bundle / "checkups.csv").write_text("x" * (2 << 20) + "\n1\n")
    with pytest.raises(BadInputError, match=r"checkups.csv: the header is 2,097,152 bytes long"):
        ingest(bundle, tmp_path / "s2", IngestConfig(today=TODAY))


def test_upper_case_xml_archives_are_read_and_fingerprinted(tmp_path):
    from data.mhlw_xml import write_exchange_archive
    from data.synth import SynthConfig, generate
    from data.synth import write_bundle as write_synth

    ward = generate(SynthConfig(residents=100, years=2, seed=5))
    bundle = tmp_path / "b"
    write_synth(ward, bundle)
    (bundle / "checkups.csv").unlink()
    for path in write_exchange_archive(ward.checkups, ward.contacts, bundle):
        path.rename(path.with_suffix(".ZIP"))
    result = ingest(bundle, tmp_path / "s", IngestConfig(today=TODAY))
    assert result.accounting["checkups"].loaded == len(ward.checkups)
    assert all(src["file"].endswith(".ZIP") for src in result.manifest["sources"][-2:])


def test_a_header_only_bundle_is_bad_input_at_ingest(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    header = (bundle / "checkups.csv").read_text().split("\n", 1)[0]
    (bundle / "checkups.csv").write_text(header + "\n")
    with pytest.raises(BadInputError, match="checkups table has no rows"):
        ingest(bundle, tmp_path / "s", IngestConfig(today=TODAY))
    assert not (tmp_path / "s").exists()
