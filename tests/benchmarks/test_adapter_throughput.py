"""The adapter throughput benchmark's own argument checks (the benchmark itself runs outside the suite)."""

import argparse
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "adapter_throughput.py"


def _module():
    spec = importlib.util.spec_from_file_location("adapter_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_counts_must_be_positive():
    positive = _module().positive
    assert positive("3") == 3
    for bad in ("0", "-2"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a positive integer"):
            positive(bad)
