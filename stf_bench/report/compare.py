"""Paired bootstrap of two models over the samples they share, per benchmark (`stf-bench compare` prints it).

A and B are run ids (`12` or `#12`), model names, or report row labels. Per benchmark column, the latest run of
each side with per-sample records is used; samples are paired by doc id (MMBench: by question, all circular copies
together) and kept only where both sides have the same target. Both sides are resampled with the same indices.
"""

from __future__ import annotations

from dataclasses import dataclass

from stf_bench.benchmarks import BENCHMARKS, columns
from stf_bench.errors import StfBenchError
from stf_bench.report.attributes import row_label
from stf_bench.report.bootstrap import DEFAULT_ITERS, DEFAULT_SEED, Units, paired_bootstrap, task_units
from stf_bench.report.metrics import column_unit, headline, task_column
from stf_bench.store.db import RunRow, Store


@dataclass
class Comparison:
    """The paired result for one benchmark column."""

    column: str
    unit: str
    task_a: str
    task_b: str
    run_a: int
    run_b: int
    n_shared: int
    n_mismatched: int
    a: float
    b: float
    diff: float
    ci: tuple[float, float]
    p_value: float
    verdict: str


def report_label(run: RunRow) -> str:
    """The run's row label as `stf-bench report` prints it, with the `@fingerprint` suffix when it has one."""
    label = row_label(run.model, run.model_args, run.protocol)
    if run.checkpoint_fingerprint:
        label += f" @{run.checkpoint_fingerprint.split(':')[-1][:8]}"
    return label


def check_task(choice: str | None) -> None:
    """A StfBenchError listing the valid names unless `choice` is None, a paper column or an lmms-eval task name."""
    if choice is None or task_column(choice) is not None or choice.lower() in {c.lower() for c in columns()}:
        return
    tasks = sorted(t for b in BENCHMARKS.values() for t in (b.name, *b.aliases))
    raise StfBenchError(f"unknown --task {choice!r}; pass a paper column ({', '.join(columns())}) or an "
                        f"lmms-eval task name ({', '.join(tasks)}, also with the stf_ prefix)")


def select_runs(store: Store, spec: str) -> list[RunRow]:
    """Runs named by `spec`: a run id, or every run of one model identity (name, row label, or the report's row
    label with its `@fingerprint`)."""
    runs = store.runs()
    ident = spec[1:] if spec.startswith("#") else spec
    if ident.isdigit():
        chosen = [r for r in runs if r.id == int(ident)]
        if not chosen:
            raise StfBenchError(f"no run #{ident} in {store.path}; `stf-bench report` lists the runs' rows")
        return chosen
    chosen = ([r for r in runs if report_label(r) == spec]
              or [r for r in runs if row_label(r.model, r.model_args, r.protocol) == spec]
              or [r for r in runs if r.model == spec])
    if not chosen:
        names = sorted({report_label(r) for r in runs})
        raise StfBenchError(f"no run of {spec!r} in {store.path}; known: {', '.join(names) or 'none'}")
    labels = {report_label(r) for r in chosen}
    if len(labels) > 1:
        raise StfBenchError(f"{spec!r} names several models ({'; '.join(sorted(labels))}); pass a row label or a "
                            f"run id")
    return chosen


def _column_units(store: Store, runs: list[RunRow]) -> dict[str, tuple[int, str, Units]]:
    """column -> (run id, task, units) from the latest run that has per-sample records for it."""
    out: dict[str, tuple[int, str, Units]] = {}
    for run in runs:  # oldest first; later runs replace earlier ones
        scores = store.scores(run.id)
        for task in store.sample_tasks(run.id):
            rows = [s for s in scores if s.task == task and s.filter == "none"]
            head = headline(task, {s.metric: s.value for s in rows}, n=next((s.n for s in rows if s.n), None))
            if head is None:
                continue
            units = task_units(head.metric, store.samples(run.id, task))
            if units is not None:
                out[head.column] = (run.id, task, units)
    return out


def _wanted(column: str, task_a: str, task_b: str, choice: str | None) -> bool:
    if choice is None:
        return True
    c = choice.lower()
    return c in (column.lower(), task_a.lower(), task_b.lower()) or task_column(choice) == column


def compare(store: Store, a: str, b: str, *, task: str | None = None, iters: int = DEFAULT_ITERS,
            seed: int = DEFAULT_SEED, level: float = 0.95) -> list[Comparison]:
    """Paired bootstrap of A - B per shared benchmark column."""
    if not 0.5 <= level < 1:
        raise StfBenchError(f"--level {level}: must be in [0.5, 1)")
    check_task(task)
    ua, ub = _column_units(store, select_runs(store, a)), _column_units(store, select_runs(store, b))
    out = []
    for column in [c for c in columns() if c in ua and c in ub]:  # paper order
        (run_a, task_a, units_a), (run_b, task_b, units_b) = ua[column], ub[column]
        if not _wanted(column, task_a, task_b, task):
            continue
        targets_b = dict(zip(units_b.keys, units_b.targets))
        shared = [k for k, t in zip(units_a.keys, units_a.targets) if targets_b.get(k) == t]
        mismatched = sum(1 for k in units_a.keys if k in targets_b) - len(shared)
        if not shared:
            continue
        res = paired_bootstrap(units_a.subset(shared), units_b.subset(shared), iters=iters, seed=seed, level=level)
        lo, hi = res.ci
        verdict = "A > B" if lo > 0 else "A < B" if hi < 0 else "no significant difference"
        out.append(Comparison(column, column_unit(column), task_a, task_b, run_a, run_b, res.n_shared, mismatched,
                              res.a, res.b, res.diff, res.ci, res.p_value, verdict))
    if not out:
        what = f" on {task}" if task else ""
        raise StfBenchError(f"{a!r} and {b!r} share no per-sample records{what} (same benchmark, same doc ids, same "
                            f"targets); record runs with their samples files (lmms-eval --log_samples)")
    return out
