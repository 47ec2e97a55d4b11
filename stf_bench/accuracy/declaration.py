"""What a benchmark declares: `Benchmark` (with its `Source` and `Metric`s), the one record every benchmark module
of `stf_bench.accuracy` exports as `BENCHMARK`.

A `Benchmark` names its lmms-eval tasks (`<name>` built in, `stf_<name>` the llava protocol's), its dataset (hub
repo, local folder, config, split, the columns its tasks read), its metrics and unit, the paper's column, what a
report needs to judge a reproduced number (printed precision, tolerance, split caveats), its scorer versions, and
the module holding its code (`hook`): the llava protocol's prompt, target and per-row score, its aggregations,
its bootstrap units, its sample-data builder. Nothing outside that module tests a benchmark's name.

Metric keys and scales are those of lmms-eval 0.7.3's task YAMLs (for the built-in tasks) and of our own YAMLs.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PCT = 100.0


@dataclass(frozen=True)
class Source:
    """A benchmark's dataset: hub repo (as lmms-eval 0.7.3's YAML names it), local folder, config and split."""

    repo: str
    folder: str
    config: str | None
    split: str
    images_config: str | None = None  # GQA keeps its images in a second config, joined on imageId

    def configs(self) -> list[str | None]:
        """The configs whose `split` files a run needs."""
        return [self.config] + ([self.images_config] if self.images_config else [])


@dataclass(frozen=True)
class Metric:
    """One metric of a task's lmms-eval results: its key there, its name in stf-bench's scores, and the factor to
    the paper's unit. The first metric of a task is its headline; `aggregator` names how it is recomputed from
    per-sample records for bootstrap CIs: `mean_pct` / `mean_points` (the mean row score x100 / x1000, resampled
    by row, `stf_bench.accuracy.units`), or a name the benchmark's module resolves in its `bootstrap_units`
    (POPE: by split, MMBench: by question group).

    `per_row`: the value is also divided by the number of rows scored. lmms-eval's OCRBench reports total
    points / 1000; points out of 1000 on any subset are 1000 x the mean row score, as on the full set.
    """

    key: str
    name: str
    scale: float = PCT
    aggregator: str | None = None
    per_row: bool = False

    def in_paper_units(self, value: float, rows: int | None = None) -> float | None:
        """`value` (as lmms-eval reports it) in the paper's unit; None when a per-row metric lacks its row count."""
        if not self.per_row:
            return float(value) * self.scale
        return float(value) * self.scale / rows if rows else None

    def error_in_paper_units(self, stderr: float | None, rows: int | None = None) -> float | None:
        """A standard error scaled as its value is; None when there is none (or it is not finite)."""
        if stderr is None or not math.isfinite(stderr):
            return None
        return self.in_paper_units(stderr, rows)


@dataclass(frozen=True)
class Benchmark:
    """Everything stf-bench knows about one benchmark (module docstring)."""

    name: str  # our name, and lmms-eval's built-in task name
    column: str  # the paper's column
    source: Source
    llava_metrics: tuple[Metric, ...]  # of the llava protocol's task `stf_<name>`; the first is the headline
    lmms_metrics: tuple[Metric, ...] = ()  # of lmms-eval's own task `<name>`; empty: not runnable under it
    lmms_dir: str | None = None  # the folder under lmms_eval/tasks holding lmms-eval's YAML of `<name>`
    unit: str = "%"
    decimals: int = 1  # the paper's printed precision; reproduced cells get one digit more
    tolerance: float = 0.5  # largest |reproduced - published| called a match, in `unit` (docs/report.md)
    paper8: bool = False  # one of Table 2's eight benchmarks (the paper's Avg.)
    published_split: str | None = None  # set when the paper's number comes from a split we do not score
    aliases: tuple[str, ...] = ()  # other lmms-eval task names whose results fill this column
    position: int = 100  # its place among the benchmarks (the paper's column order; added ones go last)
    module: str = ""  # the module holding its code (its `__name__`): prompts, scores, aggregations, sample data
    columns: tuple[str, ...] = ()  # the columns the tasks of either protocol read (checked before a run; () = none)
    image_columns: tuple[str, ...] = ()  # those of its images config (`source.images_config`), if any
    scorer_version: str = "1"  # of the llava task; bump when a rule changes (accuracy/scorer_versions.py)
    lmms_scorer_version: str = "1"  # of lmms-eval's own task (its scorers, plus stf-bench's fixes)
    task_dir: Path | None = None  # the folder holding `stf_<name>.yaml`; None: the shipped tasks/stf_llava
    latency_prompts: bool = False  # its rows are the requests of `stf-bench latency` and the prefill FLOPs

    @property
    def llava_task(self) -> str:
        """The llava protocol's lmms-eval task (tasks/stf_llava/stf_<name>.yaml)."""
        return f"stf_{self.name}"

    def tasks(self) -> tuple[str, ...]:
        """Every lmms-eval task name whose results are this benchmark's."""
        return (self.llava_task, self.name, *self.aliases)

    def metrics(self, task: str) -> tuple[Metric, ...]:
        """The metrics of one of this benchmark's tasks, headline first."""
        return self.llava_metrics if task == self.llava_task else self.lmms_metrics

    def headlines(self) -> list[Metric]:
        """The headline candidates, first present wins: the llava protocol's, then lmms-eval's."""
        return [m[0] for m in (self.llava_metrics, self.lmms_metrics) if m]

    def scorer_version_of(self, task: str) -> str:
        """The current scorer version of one of this benchmark's tasks."""
        return self.scorer_version if task == self.llava_task else self.lmms_scorer_version

    def hook(self, name: str) -> Callable | None:
        """The function `name` of this benchmark's module (`doc_to_text`, `sample_files`, `bootstrap_units`, ...),
        or None when the module does not define it (the caller's default applies)."""
        if not self.module:
            return None
        return getattr(importlib.import_module(self.module), name, None)

    def target(self, doc: dict) -> str:
        """The reference answer of a row (what a perfect answer is): its module's `doc_to_target`, else `answer`."""
        to_target = self.hook("doc_to_target")
        return to_target(doc) if to_target else doc["answer"]
