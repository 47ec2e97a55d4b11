"""A task's headline score in the paper's units, from the metric values the store holds for it.

Which lmms-eval task fills which paper column, and which of its metrics is the headline (with its scale and its
per-sample aggregator for bootstrap CIs), are facts of the benchmark declaration (`stf_bench.accuracy`); this
module only applies them to a run's stored values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stf_bench.accuracy import Metric, of_column, of_task


@dataclass(frozen=True)
class Headline:
    """A task's headline score in the paper's units."""

    task: str
    column: str
    metric: Metric
    value: float
    stderr: float | None


def task_column(task: str) -> str | None:
    """The paper column of an lmms-eval task name (plain, `stf_`-prefixed or an alias), or None for other tasks."""
    bench = of_task(task)
    return bench.column if bench else None


def column_unit(column: str) -> str:
    """The unit of a benchmark column (points/1000 for OCRBench, % for the others), as the declaration says."""
    bench = of_column(column)
    return bench.unit if bench else ""


def headline(task: str, scores: dict[str, float | None], stderrs: dict[str, float | None] | None = None,
             n: int | None = None) -> Headline | None:
    """The headline score of `task` from its metric values (metric name -> raw lmms-eval value), or None.

    The first of the benchmark's headline candidates present wins (the llava protocol's, then lmms-eval's); `n` is
    the number of rows scored, needed by per-row metrics (lmms-eval's OCRBench).
    """
    bench = of_task(task)
    if bench is None:
        return None
    stderrs = stderrs or {}
    for metric in bench.headlines():
        raw = scores.get(metric.key)
        value = metric.in_paper_units(raw, n) if raw is not None and math.isfinite(raw) else None
        if value is None:
            continue
        return Headline(task, bench.column, metric, value, metric.error_in_paper_units(stderrs.get(metric.key), n))
    return None
