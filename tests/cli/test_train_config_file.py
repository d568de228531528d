"""``kenshin train --config FILE``: a bad training TOML is exit 2 with one line, before any work."""

from __future__ import annotations

from typer.testing import CliRunner

from kenshin.cli import app
from tests.conftest import assert_one_line_error

runner = CliRunner()


def _train(tmp_path, text: str):
    config = tmp_path / "bad.toml"
    config.write_text(text, encoding="utf-8")
    args = ["train", "--store", str(tmp_path / "store"), "--workdir", str(tmp_path / "work")]
    return runner.invoke(app, [*args, "--config", str(config)])


def test_bad_value_exits_2_naming_key_and_value(tmp_path):
    result = _train(tmp_path, "[lgbm]\nlearning_rate = -1\n")
    assert_one_line_error(result, "bad.toml", "lgbm.learning_rate = -1", "must be > 0")
    assert not (tmp_path / "work").exists()  # stopped before the tracking store was touched


def test_unknown_key_exits_2(tmp_path):
    result = _train(tmp_path, "[lgbm]\nleaves = 7\n")
    assert_one_line_error(result, "bad.toml", "lgbm.leaves", "unknown key")


def test_missing_file_exits_2(tmp_path):
    args = ["train", "--store", str(tmp_path / "s"), "--workdir", str(tmp_path / "w")]
    args += ["--config", str(tmp_path / "nope.toml")]
    assert_one_line_error(runner.invoke(app, args), "nope.toml", "no such training config")
