"""The accuracy benchmarks: one module per benchmark, and the registry every other part of stf-bench asks.

A benchmark module (`stf_bench/accuracy/<name>.py`) holds everything about its benchmark: `BENCHMARK` (its
declaration, `declaration.Benchmark`), the llava protocol's prompt, target and per-row score that its task YAML
(`tasks/stf_llava/stf_<name>.yaml`) names with `!function stf_bench.accuracy.<name>.<function>`, its
aggregations, its bootstrap units when they are not rows, and its sample-data builder (`sample_files`). Scoring
rules shared by several benchmarks live in `rules.py`, MMBench's two languages share `mmbench.py`.

The registry: the built-ins (every module of this package that declares a `BENCHMARK`, in the order of their
`position`: the paper's columns), then every module an installed package names in the entry-point group `stf_bench.benchmarks` (`name = "my_package.my_benchmark"`), then whatever
`register` adds at run time. `BENCHMARKS` is read at call time (never copied at import), so a benchmark added
later is seen by `run`, `score`, `report`, `compare` and `lmms-tasks` alike. The package is named `accuracy`, not
`benchmarks`: the repository's top-level `benchmarks/` holds the speed scripts.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from stf_bench.accuracy.declaration import PCT, Benchmark, Metric, Source
from stf_bench.errors import StfBenchError

__all__ = ["BENCHMARKS", "PCT", "Benchmark", "Metric", "Source", "builtin_modules", "columns", "names", "of_column",
           "of_task", "paper8", "prompts_for_latency", "register", "register_module"]

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "stf_bench.benchmarks"

BENCHMARKS: dict[str, Benchmark] = {}
"""Every benchmark, in the paper's column order, then the added ones."""


def register(benchmark: Benchmark) -> Benchmark:
    """Add a benchmark; a second one with the same name (from another module) is an error."""
    other = BENCHMARKS.get(benchmark.name)
    if other is not None and other.module != benchmark.module:
        raise StfBenchError(f"benchmark name {benchmark.name!r} is taken by {other.module}; pick another name for "
                            f"{benchmark.module or 'the new benchmark'}")
    BENCHMARKS[benchmark.name] = benchmark
    return benchmark


def register_module(module: str | ModuleType) -> Benchmark:
    """Add the benchmark a module declares (its `BENCHMARK`); the module is imported when given by name."""
    mod = importlib.import_module(module) if isinstance(module, str) else module
    benchmark = getattr(mod, "BENCHMARK", None)
    if not isinstance(benchmark, Benchmark):
        raise StfBenchError(f"{mod.__name__} declares no BENCHMARK (a stf_bench.accuracy.Benchmark); see "
                            f"docs/protocols.md, 'Adding a benchmark'")
    if benchmark.module != mod.__name__:
        raise StfBenchError(f"{mod.__name__}: its BENCHMARK says module={benchmark.module!r}; write "
                            f"module=__name__ so that its prompts and scores are found")
    return register(benchmark)


def builtin_modules() -> list[ModuleType]:
    """The modules of this package that declare a benchmark, in the order of their `position`."""
    found = [importlib.import_module(f"{__name__}.{info.name}")
             for info in pkgutil.iter_modules([str(Path(__file__).parent)])]
    return sorted((m for m in found if isinstance(getattr(m, "BENCHMARK", None), Benchmark)),
                  key=lambda m: m.BENCHMARK.position)


def _load() -> None:
    """The built-ins, then every installed plug-in (a broken one is reported and skipped)."""
    for module in builtin_modules():
        register_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            register_module(ep.value)
        except Exception as exc:  # a plug-in must not break the tool
            log.warning("benchmark plugin %s (%s) not registered: %s", ep.name, ep.value, exc)


def names() -> list[str]:
    """Every benchmark's name, in order."""
    return list(BENCHMARKS)


def paper8() -> list[str]:
    """Table 2's eight benchmarks, whose mean is the paper's Avg."""
    return [b.name for b in BENCHMARKS.values() if b.paper8]


def columns() -> list[str]:
    """Every benchmark's paper column, in order."""
    return [b.column for b in BENCHMARKS.values()]


def of_task(task: str) -> Benchmark | None:
    """The benchmark whose results an lmms-eval task holds (plain, `stf_`-prefixed or an alias), or None."""
    return next((b for b in BENCHMARKS.values() if task in b.tasks()), None)


def of_column(column: str) -> Benchmark | None:
    """The benchmark of a paper column, or None (TFLOPs, Avg., ...)."""
    return next((b for b in BENCHMARKS.values() if b.column == column), None)


def prompts_for_latency() -> Benchmark:
    """The benchmark whose rows `stf-bench latency` and the prefill FLOPs convention are measured on (the paper's
    Table 9 uses VQAv2 prompts)."""
    found = [b for b in BENCHMARKS.values() if b.latency_prompts]
    if len(found) != 1:
        raise StfBenchError(f"{len(found)} benchmarks declare latency_prompts=True; exactly one must")
    return found[0]


_load()
