"""scoring.typeset: ふりがな pairs from readings written 漢字(かな)."""

from __future__ import annotations

import pytest

from scoring.typeset import ruby_segments


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("健診(けんしん)の結果(けっか)", [("健診", "けんしん"), ("の", None), ("結果", "けっか")]),
        ("1日(にち) ビール", [("1", None), ("日", "にち"), (" ビール", None)]),
        ("下(さ)がります", [("下", "さ"), ("がります", None)]),
        ("HbA1c(血糖(けっとう))", [("HbA1c(", None), ("血糖", "けっとう"), (")", None)]),
        ("区役所（くやくしょ）の3階(かい)", [("区役所", "くやくしょ"), ("の3", None), ("階", "かい")]),
        ("ALT(GPT) 架空ハイツ(2F) John (Smith)", [("ALT(GPT) 架空ハイツ(2F) John (Smith)", None)]),
        ("", []),
    ],
)  # fmt: skip
def test_ruby_segments(text, pieces):
    assert ruby_segments(text) == pieces
    assert "".join(b + (f"({r})" if r else "") for b, r in ruby_segments(text)).replace(
        "（", "("
    ).replace("）", ")") == text.replace("（", "(").replace("）", ")")
