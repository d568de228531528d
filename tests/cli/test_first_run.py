"""The first ingest without a key creates one and says where it is and to back it up."""

from __future__ import annotations

import re
import stat

from typer.testing import CliRunner

from kenshin.cli import app

runner = CliRunner()


def test_the_first_ingest_tells_where_the_new_key_is_and_to_back_it_up(tmp_path, monkeypatch):
    monkeypatch.delenv("KENSHIN_PSEUDONYM_KEY", raising=False)
    key = tmp_path / "keys" / "pseudonym.key"
    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY_FILE", str(key))
    res = runner.invoke(app, ["synth", "--out", str(tmp_path / "b"), "--residents", "100",
                              "--years", "2"])  # fmt: skip
    assert res.exit_code == 0, res.output
    args = ["ingest", str(tmp_path / "b"), "--store", str(tmp_path / "s")]
    first = runner.invoke(app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    said = re.sub(r"\s+", "", first.output)  # the console folds a long path anywhere
    assert f"newpseudonymkeycreatedat{key}" in said and "Backitup" in said
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = runner.invoke(app, [*args[:-1], str(tmp_path / "s2")], terminal_width=200)
    assert again.exit_code == 0 and "new pseudonym key" not in again.output
