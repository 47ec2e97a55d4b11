"""The registry: the seven projectors with their declarations, unknown names, name clashes, entry points."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint

import pytest

from stf_bench.cli import main
from stf_bench.errors import StfBenchError
from stf_bench.methods import ModelShape, Param, TokenMethod, get_method, list_methods, register, registry

PROJECTORS = ["mlp2x_gelu", "avgpool", "token_concat", "qformer", "mbtf", "stf", "mbtf+stf"]
FIELDS = {"name", "acts_on", "text_conditioned", "trainable", "needs_attention", "params", "source"}


def test_methods_json_lists_the_seven_projectors_with_their_declarations(capsys):
    assert main(["methods", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(PROJECTORS) <= set(rows)
    for name in PROJECTORS:
        row = rows[name]
        assert FIELDS <= set(row), name
        assert row["acts_on"] == "projector" and row["trainable"] is True and row["text_conditioned"] is False
        assert row["source"] == "built-in"
    stf = {p["name"]: p for p in rows["mbtf+stf"]["params"]}
    assert (stf["k"]["default"], stf["e"]["default"], stf["mbtf_blocks"]["default"]) == (2, 1, 8)


def test_methods_table_has_a_row_per_method(capsys):
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["name", "acts_on", "text_conditioned"]
    assert [line.split()[0] for line in lines[1:]] == [m.name for m in list_methods()]


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(StfBenchError, match="unknown method 'conv'; registered: mlp2x_gelu, avgpool"):
        get_method("conv")


def test_unknown_and_impossible_arguments_name_the_valid_ones():
    stf = get_method("stf")
    with pytest.raises(StfBenchError, match="no argument 'kk'; valid: k: int"):
        stf(ModelShape(), kk=2)
    with pytest.raises(StfBenchError, match=r"valid k: \[1, 2, 3, 4, 6, 8, 12, 24\]"):
        stf(ModelShape(), k=5)
    with pytest.raises(StfBenchError, match="is not of type int"):
        stf(ModelShape(), k="two")


def test_token_counts_come_from_the_declarations():
    counts = {name: get_method(name)(ModelShape()).tokens_out(576) for name in PROJECTORS}
    assert counts == {"mlp2x_gelu": 576, "avgpool": 144, "token_concat": 144, "qformer": 144, "mbtf": 576,
                      "stf": 144, "mbtf+stf": 144}
    assert get_method("stf")(ModelShape(), k=4, e=8).tokens_out(576) == 288


def test_a_second_method_with_a_taken_name_is_refused(fresh_registry):
    fresh_registry()

    class Clash(TokenMethod):
        name = "stf"

    with pytest.raises(StfBenchError, match="'stf' is taken"):
        register(Clash)


def test_a_shared_argument_name_must_share_its_config_field(fresh_registry):
    fresh_registry()
    from stf_bench.methods import ProjectorMethod

    class OtherK(ProjectorMethod):
        name = "other-k"
        params = (Param("k", 2, int, config_field="other_k"),)

    with pytest.raises(StfBenchError, match="'k' is stored in 'other_k'"):
        register(OtherK)


def test_entry_point_plugins_are_listed_with_their_source(random_drop_plugin, capsys):
    assert random_drop_plugin.acts_on == "vision" and random_drop_plugin.trainable is False
    assert main(["methods", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["random-drop"]["source"] == "entry point stf_random_drop:RandomDrop"
    assert [p["name"] for p in rows["random-drop"]["params"]] == ["keep", "seed"]


def test_a_broken_plugin_is_skipped_with_a_warning(fresh_registry, caplog):
    fresh_registry(EntryPoint("broken", "no_such_module_xyz:Thing", registry.ENTRY_POINT_GROUP))
    assert "broken" not in [m.name for m in list_methods()]
    assert "failed to load" in caplog.text


def test_a_training_free_method_imported_before_the_registry_does_not_break_it():
    """`import stf_bench.methods.fastv` first registers FastV (its `k` has no config field) before the projectors;
    the config-field check compares projectors only, so STF's `k` (stored in `stf_k`) still registers and later
    model loads work. A fresh interpreter: the order of imports is the point."""
    import subprocess
    import sys

    code = ("import stf_bench.methods.fastv\n"
            "from stf_bench.methods import get_method, list_methods\n"
            "print(get_method('stf').name, get_method('fastv').name, len(list_methods('projector')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["stf", "fastv", "7"]



def test_builtins_list_in_registry_order_whichever_module_was_imported_first(monkeypatch):
    """A test module importing `stf_bench.methods.mmtok` before anything lists the registry registers mmtok first;
    the listing must still follow BUILTIN_MODULES."""
    registry.list_methods()
    builtins = {n: c for n, c in registry._REGISTRY.items() if c.source == "built-in"}
    first = {"mmtok": builtins.pop("mmtok"), **builtins}  # as when mmtok.py was imported before `_load`
    monkeypatch.setattr(registry, "_REGISTRY", first)
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    listed = registry.list_methods()
    modules = [cls.__module__.rsplit(".", 1)[1] for cls in listed]
    assert [cls.name for cls in listed][:2] == ["mlp2x_gelu", "avgpool"] and "mmtok" in modules
    assert modules == sorted(modules, key=registry.BUILTIN_MODULES.index)
