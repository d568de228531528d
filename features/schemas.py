"""pandera schema of the feature table: the boundary contract between features and models.

Generated from features.declarations, so a column cannot exist without a declaration: the
schema is strict (no undeclared column), ordered (keys, then features in declared order), typed
(float64 for numeric features, nullable Int8/Int16 for codes and counts) and unique on
(pseudonym, fiscal_year). Every feature is nullable: missing stays missing.
"""

from __future__ import annotations

import pandera.pandas as pa

from data.pseudonym import PSEUDONYM_LENGTH
from data.schemas import matches
from features.declarations import DECLARATIONS, FEATURE_SET_VERSION

__all__ = ["FEATURES_SCHEMA", "feature_schema"]


def _column(d) -> pa.Column:
    checks = []
    if d.allowed is not None:
        checks.append(pa.Check.isin(d.allowed))
    elif d.name in ("age", "n_prior_checkups", "years_since_previous", "alcohol_g_per_day"):
        checks.append(pa.Check.ge(0))
    return pa.Column(d.dtype, checks, nullable=True, title=d.ja, description=d.description)


def feature_schema() -> pa.DataFrameSchema:
    """The schema of :func:`features.build.build_features` output."""
    return pa.DataFrameSchema(
        {
            "pseudonym": pa.Column("string", matches(rf"^[0-9a-f]{{{PSEUDONYM_LENGTH},}}$")),
            "fiscal_year": pa.Column("Int16"),
            "exam_date": pa.Column("datetime64[ns]"),
            **{d.name: _column(d) for d in DECLARATIONS},
        },
        strict=True,
        ordered=True,
        coerce=False,
        unique=["pseudonym", "fiscal_year"],
        name=f"features[{FEATURE_SET_VERSION}]",
    )


#: Schema of the feature table (built once at import: pure, no side effects).
FEATURES_SCHEMA = feature_schema()
