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


def _pins(text: str) -> dict[str, str]:
    """name -> version of every `name==version` in a script or pyproject (names normalised as pip does)."""
    import re

    return {re.sub(r"[-_.]+", "-", name).lower(): version
            for name, version in re.findall(r"([A-Za-z0-9_.\-]+)==([0-9][A-Za-z0-9.+]*)", text)}


def test_gpu_wheels_pin_what_the_install_and_the_bench_extra_pin():
    """scripts/gpu_wheels.sh repeats two pins made elsewhere: lmms-eval (scripts/install.sh) and decord (the
    `bench` extra in pyproject.toml). A moved pin must move in both places, or the GPU run tests another setup."""
    root = SCRIPT.parents[1]
    wheels = _pins((root / "scripts" / "gpu_wheels.sh").read_text())
    install = _pins((root / "scripts" / "install.sh").read_text())
    project = _pins((root / "pyproject.toml").read_text())
    assert install["lmms-eval"] == wheels["lmms-eval"], "update scripts/gpu_wheels.sh: lmms-eval moved in install.sh"
    assert project["decord"] == wheels["decord"], "update scripts/gpu_wheels.sh: decord moved in pyproject.toml"


def test_missing_decord_exits_with_the_install_command(monkeypatch):
    """llava_hf imports decord at module level: without it the benchmark stops with the command that installs it,
    not a traceback."""
    import sys

    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "lmms_eval.models.simple.llava_hf", raising=False)
    with pytest.raises(SystemExit, match=r"pip install decord==0\.6\.0"):
        _module().llava_hf_class()
