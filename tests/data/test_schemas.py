"""data.schemas.matches: pandera's str_matches, computed in Arrow."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
import pytest

from data.schemas import matches

VALUES = ["0123456789abcdef", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0",
          "", "０123456789abcdef", "0123456789abcdeg", "x0123456789abcdef", None]  # fmt: skip


@pytest.mark.parametrize("pattern", [r"^[0-9a-f]{16}$", r"^[0-9a-f]{16,}$", r"^[0-9a-f]{16,64}$"])
def test_matches_fails_the_rows_pandera_str_matches_fails(pattern):
    def failing(check) -> list:
        schema = pa.DataFrameSchema({"p": pa.Column("string", check, nullable=True)})
        try:
            schema.validate(pd.DataFrame({"p": pd.Series(VALUES, dtype="string")}), lazy=True)
        except pa.errors.SchemaErrors as e:
            return sorted(e.failure_cases["index"].tolist())
        return []

    ours = failing(matches(pattern))
    assert ours == failing(pa.Check.str_matches(pattern)) and ours


def test_a_final_newline_fails_where_pythons_dollar_let_it_through():
    s = pd.Series(["0123456789abcdef\n"], dtype="string")
    assert pa.Check.str_matches(r"^[0-9a-f]{16}$")(s).check_passed
    assert not matches(r"^[0-9a-f]{16}$")(s).check_passed


def test_an_unanchored_pattern_is_refused():
    with pytest.raises(ValueError, match="anchored"):
        matches(r"[0-9a-f]+")
