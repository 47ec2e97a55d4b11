"""The package has no import circle: every `import` of a stf_bench module, at the top of a file or inside a
function (a lazy import is a dependency too), forms a graph without cycles. And the folders keep their layers:
the benchmarks (`accuracy/`) know no adapter, data location or run; the lmms-eval adapter (`adapter/`) knows no
benchmark, data or run; the data (`data/`) no adapter or run; the run orchestration (`run/`) is read by the
command map (`stf_bench/cli.py`) alone."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "stf_bench"


def module_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """stf_bench module -> the stf_bench modules it imports. `from pkg import sub` is an edge to `pkg.sub` when
    `sub` is a module, else to `pkg`."""
    modules = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


FORBIDDEN: dict[str, set[str]] = {
    "accuracy": {"adapter", "data", "run"},
    "adapter": {"accuracy", "data", "run"},
    "data": {"adapter", "run"},
}
"""folder -> the folders it must not import."""
RUN_READERS = {"stf_bench.cli", "run"}
"""The only modules or folders that may import `stf_bench.run`."""


def folder_of(module: str) -> str:
    """`stf_bench.run.cli` -> `run`; a top-level module (`stf_bench.cli`) names itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() else module


def layer_breaks(graph: dict[str, set[str]], forbidden: dict[str, set[str]], run_readers: set[str]) -> list[str]:
    """Every import that crosses a forbidden line, as `importer -> imported`."""
    found = []
    for module, targets in sorted(graph.items()):
        here = folder_of(module)
        for target in sorted(targets):
            there = folder_of(target)
            if there in forbidden.get(here, set()) or (there == "run" and here not in run_readers):
                found.append(f"{module} -> {target}")
    return found


def test_the_detector_finds_a_planted_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_in_the_package():
    graph = module_graph()
    assert "stf_bench.run.runner" in graph and graph["stf_bench.run.runner"]  # the walk saw the package
    assert cycles(graph) == []


def test_the_layer_check_finds_planted_breaks():
    graph = {"stf_bench.adapter.x": {"stf_bench.accuracy.y"}, "stf_bench.report.z": {"stf_bench.run.w"},
             "stf_bench.run.w": {"stf_bench.data.v"}, "stf_bench.data.v": set(), "stf_bench.accuracy.y": set()}
    assert layer_breaks(graph, FORBIDDEN, RUN_READERS) == ["stf_bench.adapter.x -> stf_bench.accuracy.y",
                                                           "stf_bench.report.z -> stf_bench.run.w"]


def test_the_folders_keep_their_layers():
    assert layer_breaks(module_graph(), FORBIDDEN, RUN_READERS) == []
