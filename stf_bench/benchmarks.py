"""The benchmarks, declared once: every fact stf-bench knows about each of them, read by everything else.

A `Benchmark` names its lmms-eval tasks (`<name>` built in, `stf_<name>` the llava protocol's, in tasks/stf_llava),
its dataset (hub repo, local folder, config, split), its headline metric and unit, the paper's column, and what a
report needs to judge a reproduced number (printed precision, tolerance, split caveats). Task selection
(`eval/tasks.py`), data location (`eval/data_sources.py`), the sample maker (`eval/samples.py`), scoring and the
report (`report/metrics.py`, `report/tables.py`, `report/formats.py`) all read `BENCHMARKS`; nothing else lists
benchmarks. Adding one: an entry here, its sample-data maker (`eval/samples.BUILDERS`), its task YAML
(`tasks/stf_llava/stf_<name>.yaml`) and its scorer tests (docs/ARCHITECTURE.md, "Benchmarks").

Metric keys and scales are those of lmms-eval 0.7.3's task YAMLs (for the built-in tasks) and of our own YAMLs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    the paper's unit. The first metric of a task is its headline; `aggregator` (report/bootstrap.py: mean_pct,
    mean_points, pope_f1, pope_f1_split_avg, mmbench_circular) recomputes it from per-sample records.

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


MMBENCH_SYS_PROMPT = "There are several options:"  # MMBench's evaluator prompt: lmms-eval's mmbench.yaml metadata
MMBENCH_COPY = 1_000_000  # MMBench's circular copies of question q have index q + k * 1e6
_CIRCULAR = Metric("circular_accuracy", "circular_accuracy", PCT, "mmbench_circular")
_MMB_LMMS = Metric("gpt_eval_score", "circular_accuracy", 1.0, "mmbench_circular")  # lmms-eval reports x100
_VQA_EM = Metric("exact_match", "vqa_accuracy", PCT, "mean_pct")
_CHARTQA = (Metric("relaxed_overall", "relaxed_accuracy", PCT, "mean_pct"),
            Metric("relaxed_human_split", "relaxed_human"), Metric("relaxed_augmented_split", "relaxed_augmented"))
_TEST_DEV = "published: test-dev (EvalAI server); ours: val"

# Tolerances: about one standard error of the benchmark's sampling noise at the published score (floor 0.3), since
# a faithful reproduction (same weights, same protocol) moves far less than that; docs/report.md gives the numbers.
_DECLARED = (
    Benchmark("gqa", "GQA",
              Source("lmms-lab-encoder/GQA", "GQA", "testdev_balanced_instructions", "testdev",
                     images_config="testdev_balanced_images"),
              (Metric("exact_match", "exact_match", PCT, "mean_pct"),),
              (Metric("exact_match", "exact_match", PCT, "mean_pct"),), "gqa", tolerance=0.5, paper8=True),
    Benchmark("scienceqa_img", "SQA", Source("lmms-lab-encoder/ScienceQA", "ScienceQA", "ScienceQA-IMG", "test"),
              (Metric("exact_match", "accuracy", PCT, "mean_pct"),),
              (Metric("exact_match", "accuracy", PCT, "mean_pct"),), "scienceqa", tolerance=1.0, paper8=True),
    Benchmark("textvqa_val", "VQA^T", Source("lmms-lab-encoder/textvqa", "textvqa", None, "validation"),
              (_VQA_EM,), (_VQA_EM,), "textvqa", tolerance=0.7, paper8=True),
    Benchmark("pope", "POPE", Source("lmms-lab-encoder/POPE", "POPE", None, "test"),
              (Metric("pope_f1_avg", "f1", PCT, "pope_f1_split_avg"),
               Metric("pope_f1_adversarial", "f1_adversarial"), Metric("pope_f1_popular", "f1_popular"),
               Metric("pope_f1_random", "f1_random"), Metric("pope_accuracy", "accuracy")),
              (Metric("pope_f1_score", "f1", PCT, "pope_f1"), Metric("pope_accuracy", "accuracy"),
               Metric("pope_precision", "precision"), Metric("pope_recall", "recall")),
              "pope", tolerance=0.5, paper8=True),
    Benchmark("mmbench_en_dev", "MMB", Source("lmms-lab-encoder/MMBench", "MMBench", "en", "dev"),
              (_CIRCULAR,), (_MMB_LMMS,), "mmbench", tolerance=1.0, paper8=True,
              aliases=("mmbench_en_dev_static",)),
    Benchmark("mmbench_cn_dev", "MMB^CN", Source("lmms-lab-encoder/MMBench", "MMBench", "cn", "dev"),
              (_CIRCULAR,), (_MMB_LMMS,), "mmbench", tolerance=1.0, paper8=True),
    Benchmark("vqav2_val", "VQA^v2", Source("lmms-lab-encoder/VQAv2", "VQAv2", None, "validation"),
              (_VQA_EM,), (_VQA_EM,), "vqav2", tolerance=0.3, paper8=True, published_split=_TEST_DEV),
    Benchmark("vizwiz_vqa_val", "VisWiz", Source("lmms-lab-encoder/VizWiz-VQA", "VizWiz-VQA", None, "val"),
              (_VQA_EM,), (_VQA_EM,), "vizwiz_vqa", tolerance=0.6, paper8=True, published_split=_TEST_DEV),
    Benchmark("ocrbench", "OCRBench", Source("echo840/OCRBench", "OCRBench", None, "test"),
              (Metric("ocrbench_points", "points", 1.0, "mean_points"),),  # our task: points out of 1000
              (Metric("ocrbench_accuracy", "points", 1000.0 * 1000.0, "mean_points", per_row=True),),
              "ocrbench", unit="points/1000", decimals=0, tolerance=15.0),
    Benchmark("chartqa", "ChartQA", Source("lmms-lab-encoder/ChartQA", "ChartQA", None, "test"),
              _CHARTQA, _CHARTQA, "chartqa", tolerance=0.8),
)
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in _DECLARED}
"""Every benchmark, in the paper's column order. Readers look it up when they need it (never copy it at import),
so an entry added here (or by a test) is seen everywhere."""


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
