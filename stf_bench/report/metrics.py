"""Which lmms-eval task fills which paper column, and which of its metrics is the headline, in the paper's units.

One table (`TASK_COLUMNS`) maps lmms-eval task names to the paper's columns; a task may carry an `stf_` prefix (our
llava-protocol tasks). One table (`HEADLINE`) says, per column, which metric key of lmms-eval's results file is the
score the paper reports, how to scale it to the paper's units (percent; OCRBench points out of 1000) and how to
recompute it from per-sample records (for bootstrap CIs). The metric keys come from lmms-eval 0.7.3's task YAMLs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# lmms-eval task name (without the optional `stf_` prefix) -> paper column.
TASK_COLUMNS: dict[str, str] = {
    "gqa": "GQA",
    "scienceqa_img": "SQA",
    "textvqa_val": "VQA^T",
    "pope": "POPE",
    "mmbench_en_dev": "MMB",
    "mmbench_en_dev_static": "MMB",
    "mmbench_cn_dev": "MMB^CN",
    "vqav2_val": "VQA^v2",
    "vizwiz_vqa_val": "VisWiz",
    "ocrbench": "OCRBench",
    "chartqa": "ChartQA",
}
TASK_PREFIXES = ("stf_",)
BENCHMARK_COLUMNS = ["GQA", "SQA", "VQA^T", "POPE", "MMB", "MMB^CN", "VQA^v2", "VisWiz", "OCRBench", "ChartQA"]


@dataclass(frozen=True)
class Metric:
    """A headline metric: lmms-eval key, factor to the paper's units, per-sample aggregator name.

    `per_row`: the value is also divided by the number of rows scored (lmms-eval's OCRBench reports total
    points / 1000; points out of 1000 on a subset are 1000 x the mean row score, as on the full set).
    Aggregators (see bootstrap.py): mean_pct, mean_points, pope_f1, pope_f1_split_avg, mmbench_circular.
    """

    key: str
    scale: float
    aggregator: str
    per_row: bool = False


# Paper column -> candidate headline metrics, first present wins: our llava-protocol tasks (stf_*) first, then
# lmms-eval's own. Units in the results file: exact_match / relaxed_overall / pope_* / circular_accuracy are
# fractions; lmms-eval's MMBench gpt_eval_score is already percent; stf_ocrbench's ocrbench_points are points out
# of 1000; lmms-eval's ocrbench_accuracy is total points / 1000.
HEADLINE: dict[str, list[Metric]] = {
    "GQA": [Metric("exact_match", 100.0, "mean_pct")],
    "SQA": [Metric("exact_match", 100.0, "mean_pct")],
    "VQA^T": [Metric("exact_match", 100.0, "mean_pct")],
    "POPE": [Metric("pope_f1_avg", 100.0, "pope_f1_split_avg"), Metric("pope_f1_score", 100.0, "pope_f1")],
    "MMB": [Metric("circular_accuracy", 100.0, "mmbench_circular"), Metric("gpt_eval_score", 1.0, "mmbench_circular")],
    "MMB^CN": [Metric("circular_accuracy", 100.0, "mmbench_circular"),
               Metric("gpt_eval_score", 1.0, "mmbench_circular")],
    "VQA^v2": [Metric("exact_match", 100.0, "mean_pct")],
    "VisWiz": [Metric("exact_match", 100.0, "mean_pct")],
    "OCRBench": [Metric("ocrbench_points", 1.0, "mean_points"),
                 Metric("ocrbench_accuracy", 1000.0 * 1000.0, "mean_points", per_row=True)],
    "ChartQA": [Metric("relaxed_overall", 100.0, "mean_pct")],
}


@dataclass(frozen=True)
class Headline:
    """A task's headline score in the paper's units."""

    task: str
    column: str
    metric: Metric
    value: float
    stderr: float | None


def task_column(task: str) -> str | None:
    """The paper column of an lmms-eval task name (plain or `stf_`-prefixed), or None for other tasks."""
    if task in TASK_COLUMNS:
        return TASK_COLUMNS[task]
    for prefix in TASK_PREFIXES:
        if task.startswith(prefix) and task[len(prefix):] in TASK_COLUMNS:
            return TASK_COLUMNS[task[len(prefix):]]
    return None


def column_unit(column: str) -> str:
    """The paper's unit of a benchmark column: OCRBench is points out of 1000, every other column percent."""
    return "points/1000" if column == "OCRBench" else "%"


def headline(task: str, scores: dict[str, float | None], stderrs: dict[str, float | None] | None = None,
             n: int | None = None) -> Headline | None:
    """The headline score of `task` from its metric values (metric name -> raw lmms-eval value), or None.

    `n` is the number of rows scored, needed by per-row metrics (lmms-eval's OCRBench).
    """
    column = task_column(task)
    if column is None:
        return None
    stderrs = stderrs or {}
    for metric in HEADLINE[column]:
        value = scores.get(metric.key)
        if value is None or not math.isfinite(value):
            continue
        scale = metric.scale
        if metric.per_row:
            if not n:
                continue
            scale /= n
        err = stderrs.get(metric.key)
        err = err * scale if err is not None and math.isfinite(err) else None
        return Headline(task, column, metric, value * scale, err)
    return None
