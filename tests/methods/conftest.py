"""Registry isolation: a test that registers methods (fakes, or the example plug-in through a fake entry point)
gets the registry back as it was afterwards."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from stf_bench.methods import registry

PLUGIN_SRC = Path(__file__).resolve().parents[2] / "examples" / "method-plugin" / "src"
QUESTION_PLUGIN_SRC = Path(__file__).resolve().parents[2] / "examples" / "question-plugin" / "src"


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry restored after the test; `fresh_registry(*entry_points)` reloads it with those entry points."""
    registry.list_methods()  # built-ins loaded before the snapshot
    saved = dict(registry._REGISTRY)
    sources = {name: cls.source for name, cls in saved.items()}

    def reload(*eps: EntryPoint) -> None:
        monkeypatch.setattr(registry, "entry_points", lambda group: [ep for ep in eps if ep.group == group])
        registry._REGISTRY.clear()
        registry._REGISTRY.update({n: c for n, c in saved.items() if c.source == "built-in"})
        registry._loaded = True  # built-ins are imported already: only the entry points load again
        for ep in eps:
            registry._register_entry_point(ep)

    yield reload
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    for name, cls in saved.items():
        cls.source = sources[name]
    registry._loaded = True


@pytest.fixture
def random_drop_plugin(fresh_registry, monkeypatch):
    """The example plug-in (examples/method-plugin) registered through an entry point, as `pip install -e` does."""
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    fresh_registry(EntryPoint("random-drop", "stf_random_drop:RandomDrop", registry.ENTRY_POINT_GROUP))
    return registry.get_method("random-drop")


@pytest.fixture
def question_keep_plugin(fresh_registry, monkeypatch):
    """The question-reading example plug-in (examples/question-plugin) registered through an entry point, as
    `pip install -e` does."""
    monkeypatch.syspath_prepend(str(QUESTION_PLUGIN_SRC))
    fresh_registry(EntryPoint("question-keep", "stf_question_keep:QuestionKeep", registry.ENTRY_POINT_GROUP))
    return registry.get_method("question-keep")
