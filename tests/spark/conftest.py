"""Shared fixtures of the Spark engine's tests."""

from __future__ import annotations

import builtins

import pytest


@pytest.fixture
def without_pyspark(monkeypatch):
    """Imports of pyspark fail, as on a default install (no ``kenshin[spark]``)."""
    real = builtins.__import__

    def no_pyspark(name, *args, **kwargs):
        if name == "pyspark" or name.startswith("pyspark."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyspark)
