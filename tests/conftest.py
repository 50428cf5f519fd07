"""Fixtures shared by the tests; the helpers they use live in helpers.py."""

from __future__ import annotations

import pathlib

import pytest

from helpers import synthetic_shards


@pytest.fixture()
def synthetic_dataset(tmp_path) -> pathlib.Path:
    return synthetic_shards(tmp_path / "data")
