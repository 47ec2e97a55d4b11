"""Store tests: real lmms-eval output (written by lmms-eval itself, see lmms_run.py) and a fresh store per test."""

from __future__ import annotations

import lmms_run
import pytest

lmms_out = lmms_run.lmms_out  # session fixture: lmms-eval output of two tiny models


@pytest.fixture
def store(tmp_path):
    """An empty results store in a temporary file."""
    from stf_bench.store.db import open_store

    with open_store(tmp_path / "results.sqlite") as s:
        yield s
