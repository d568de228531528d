"""Session fixture: a 12k-resident × 6-year synthetic store, trained once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    from tests.models.model_fixtures import build

    return build(tmp_path_factory.mktemp("models_store"))
