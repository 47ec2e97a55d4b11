"""benchmarks/method_ttft.py's settings: the published ones, and `--set` replacing one method's arguments."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "method_ttft.py"


def _module():
    spec = importlib.util.spec_from_file_location("method_ttft", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_published_settings_and_an_override():
    module = _module()
    published = module.published_settings()
    assert {"fastv", "prumerge+", "visionzip"} <= set(published)
    changed = module.with_overrides(published, ["fastv:k=1,r=0.75"])
    assert changed["fastv"] == {"k": 1, "r": 0.75} and changed["visionzip"] == published["visionzip"]
    assert published["fastv"] != changed["fastv"]  # the published settings are not modified in place
