"""Task selection: the declared benchmarks, the two protocols, and the lmms-eval task specs that run them.

`resolve` returns what `lmms_eval.evaluator.simple_evaluate(tasks=..., task_manager=...)` needs. Every spec is a
config-override dict that points the task at local parquet files (samples, a hub snapshot, or --data-dir), so
no task ever touches the hub itself:
- `llava` (default): the paper's protocol, our YAMLs in tasks/stf_llava (distinct `stf_*` names, never shadowed;
  a plug-in benchmark's YAML in its own `task_dir`);
- `lmms-eval`: lmms-eval's own task definitions, only the data source overridden, plus the fixes a benchmark's
  module declares in `task_overrides` to keep the run honest and offline (MMBench scored without a judge unless
  `judge=True`, OCRBench's aggregate reset before use). `paper_scores` turns lmms-eval's results into the
  paper's units.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stf_bench.accuracy import BENCHMARKS, names, paper8
from stf_bench.errors import StfBenchError
from stf_bench.resources import shipped_dir

if TYPE_CHECKING:
    from stf_bench.data.sources import DataFiles

PROTOCOLS = ("llava", "lmms-eval")
TASKS_DIR = shipped_dir("tasks") / "stf_llava"
TEMPLATE = "_stf_llava_template_yaml"  # what every shipped stf_llava task includes


def expand_tasks(spec: str) -> list[str]:
    """'all' | 'paper8' | a comma list of benchmark names -> the benchmark names, in order, without repeats."""
    chosen: list[str] = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        for name in names() if part == "all" else paper8() if part == "paper8" else [part]:
            if name not in BENCHMARKS:
                raise StfBenchError(f"unknown task {name!r}; use 'all', 'paper8' or any of: {', '.join(names())}")
            if name not in chosen:
                chosen.append(name)
    if not chosen:
        raise StfBenchError(f"no task given; use 'all', 'paper8' or any of: {', '.join(names())}")
    return chosen


@dataclass
class TaskSetup:
    """What simple_evaluate needs: the manager, the task specs (consumed by lmms-eval: pass a fresh copy per
    call), and for each benchmark the lmms-eval task whose results hold its headline metric."""

    task_manager: Any
    task_specs: list
    lmms_names: dict[str, str]


def lmms_name(benchmark: str, protocol: str) -> str:
    """The lmms-eval task that runs `benchmark` under `protocol`."""
    return BENCHMARKS[benchmark].llava_task if protocol == "llava" else benchmark


def task_dir(benchmark: str) -> Path:
    """The folder holding `benchmark`'s llava-protocol YAML: its declared `task_dir`, else the shipped one."""
    return BENCHMARKS[benchmark].task_dir or TASKS_DIR


def _spec(benchmark: str, protocol: str, files: DataFiles, judge: bool) -> dict:
    """The config-override dict for one benchmark: local parquet data, plus what its module adds (its data hook
    `local_process_docs`, its protocol's fixes `task_overrides`)."""
    bench = BENCHMARKS[benchmark]
    spec: dict[str, Any] = {
        "task": lmms_name(benchmark, protocol),
        "dataset_path": "parquet",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": files.data_files()},
    }
    process_docs = bench.hook("local_process_docs")
    if process_docs is not None:
        spec["process_docs"] = process_docs(files)
    overrides = bench.hook("task_overrides")
    if overrides is not None:
        spec.update(overrides(protocol, judge))
    return spec


def resolve(tasks: list[str], protocol: str, data: str = "samples", data_dir: Path | str | None = None,
            *, judge: bool = False) -> TaskSetup:
    """Task manager + specs for `tasks` under `protocol`, on samples, the hub, or `data_dir` (which wins).

    `judge=True` lets MMBench call lmms-eval's GPT judge for answers its rules cannot parse (needs
    OPENAI_API_KEY); by default no judge is ever called.
    """
    from stf_bench.data.sources import locate

    if protocol not in PROTOCOLS:
        raise StfBenchError(f"unknown protocol {protocol!r}; use one of: {', '.join(PROTOCOLS)}")
    unknown = [t for t in tasks if t not in BENCHMARKS]
    if unknown or not tasks:
        raise StfBenchError(f"unknown task {unknown[0] if unknown else '(none)'!r}; use any of: {', '.join(names())}")
    if protocol == "lmms-eval":
        builtin_less = [t for t in tasks if not BENCHMARKS[t].lmms_dir]
        if builtin_less:
            raise StfBenchError(f"{builtin_less[0]}: lmms-eval has no task of its own for it; use --protocol llava")
    if judge and not os.environ.get("OPENAI_API_KEY"):
        raise StfBenchError("the MMBench judge needs OPENAI_API_KEY (and optionally OPENAI_API_URL, MODEL_VERSION); "
                            "set them, or run without the judge (MMBench's own answer-matching rules only)")
    if protocol == "llava":
        check_task_files("or use --protocol lmms-eval", tasks)
    files = locate(list(tasks), data, data_dir)
    return TaskSetup(
        task_manager=_task_manager(tuple(tasks), protocol),
        task_specs=[_spec(t, protocol, files[t], judge) for t in tasks],
        lmms_names={t: lmms_name(t, protocol) for t in tasks},
    )


def check_task_files(alternative: str = "", benchmarks: list[str] | None = None) -> None:
    """The llava protocol's task files of `benchmarks` (default: the shipped template) are installed, else one
    error saying how to get them."""
    wanted = [(task_dir(b) / f"{BENCHMARKS[b].llava_task}.yaml") for b in benchmarks or []]
    missing = [p for p in [TASKS_DIR / TEMPLATE, *wanted] if not p.is_file()]
    if missing:
        raise StfBenchError(f"the llava protocol's task file {missing[0]} is missing; install stf-bench from a "
                            f"source checkout (pip install -e .){' ' + alternative if alternative else ''}")


def _task_manager(tasks: tuple[str, ...], protocol: str):
    """A TaskManager indexing only the folders these tasks live in (indexing all of lmms-eval takes seconds)."""
    import lmms_eval.tasks
    from lmms_eval.tasks import TaskManager

    if protocol == "llava":
        paths = sorted({str(task_dir(t)) for t in tasks})
    else:
        root = Path(lmms_eval.tasks.__file__).parent
        paths = sorted({str(root / BENCHMARKS[t].lmms_dir) for t in tasks})
    return TaskManager("WARNING", include_path=paths, include_defaults=False)


def paper_scores(results: dict, lmms_names: dict[str, str]) -> dict[str, dict[str, float]]:
    """lmms-eval's results (what simple_evaluate returns, or its results JSON) -> {benchmark: {metric: value}} in
    the paper's units (stf_bench.accuracy: percent, OCRBench in points out of 1000). The headline comes first."""
    table = results.get("results", {})
    out: dict[str, dict[str, float]] = {}
    for bench, task in lmms_names.items():
        if task not in table:
            raise StfBenchError(f"{bench}: lmms-eval returned no results for task {task!r}")
        row, metrics = table[task], {}
        for i, metric in enumerate(BENCHMARKS[bench].metrics(task)):
            value = row.get(f"{metric.key},none")
            if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
                if i == 0:
                    raise StfBenchError(f"{bench}: no value for its headline metric {metric.key!r} in task {task!r}")
                continue
            counts = results.get("n-samples", {}).get(task, {})
            metrics[metric.name] = metric.in_paper_units(value, rows_scored(counts) or None if metric.per_row else None)
            if metrics[metric.name] is None:
                raise StfBenchError(f"{bench}: results lack n-samples for {task!r}; cannot convert to {metric.name}")
        out[bench] = metrics
    return out


def rows_scored(counts: dict) -> int:
    """How many rows lmms-eval scored for a task, from its n-samples entry ({"original", "effective"}); a fractional
    --limit (the Python API still takes one) read as lmms-eval's get_sample_size does: ceil(original x fraction)."""
    rows = counts.get("effective") or 0
    if 0 < rows < 1:
        rows = math.ceil(counts.get("original", 0) * rows)
    return int(rows)
