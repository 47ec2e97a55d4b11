"""Bootstrap confidence intervals and paired bootstrap tests over per-sample records.

A task's score is recomputed from its per-sample records as a function of summed per-unit vectors
(`stf_bench.accuracy.units.Units`): by default the mean of per-row scores (exact match, relaxed accuracy; OCRBench
x 1000 = points out of 1000); a benchmark whose score is something else says how it resamples in its module's
`bootstrap_units` (POPE: F1 from per-row (tp, fp, fn) counts, per split; MMBench: one unit per question, right only
if all its circular copies are). Resampling units with replacement and recomputing gives the CI. The recomputed
point estimate must equal the score in lmms-eval's results file, otherwise no CI is given (the records do not
describe that score).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stf_bench.accuracy import of_task
from stf_bench.accuracy.declaration import Metric
from stf_bench.accuracy.units import Record, Units, row_units

DEFAULT_ITERS = 2000
DEFAULT_SEED = 0
LEVEL = 0.95
CHUNK = 64


def task_units(metric: Metric, samples: Sequence[Record], task: str | None = None) -> Units | None:
    """Per-unit vectors for `metric` from per-sample records, or None if the records lack what it needs: the
    benchmark's own `bootstrap_units` (the benchmark of `task`, else the one declaring `metric`), else rows."""
    if not samples:
        return None
    bench = of_task(task) if task else _declaring(metric)
    own = bench.hook("bootstrap_units") if bench is not None else None
    units = own(metric, samples) if own is not None else None
    return units if units is not None else row_units(metric, samples)


def _declaring(metric: Metric):
    """The benchmark that declares `metric` (metrics are frozen values: the first equal one)."""
    from stf_bench.accuracy import BENCHMARKS

    return next((b for b in BENCHMARKS.values() if metric in (*b.llava_metrics, *b.lmms_metrics)), None)


def resample_stats(units: Units, iters: int, seed: int, paired: Units | None = None) -> np.ndarray:
    """`iters` bootstrap replicates of the statistic (minus `paired`'s on the same resamples, if given)."""
    rng = np.random.default_rng(seed)
    n = len(units.keys)
    out = np.empty(iters)
    for start in range(0, iters, CHUNK):
        size = min(CHUNK, iters - start)
        idx = rng.integers(0, n, size=(size, n))
        stats = units.statistic(units.values[idx].sum(axis=1), n)
        if paired is not None:
            stats = stats - paired.statistic(paired.values[idx].sum(axis=1), n)
        out[start:start + size] = stats
    return out


def percentile_ci(dist: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of a bootstrap distribution."""
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(dist, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


@dataclass
class ScoreCI:
    """A score's bootstrap CI, or why there is none."""

    ci: tuple[float, float] | None
    dist: np.ndarray | None
    n: int
    note: str = ""


def score_ci(metric: Metric, samples: Sequence[Record], reported: float, *, iters: int = DEFAULT_ITERS,
             seed: int = DEFAULT_SEED, task: str | None = None) -> ScoreCI:
    """Bootstrap CI of a reported score from its per-sample records (of lmms-eval task `task`), checked against the
    reported value."""
    units = task_units(metric, samples, task)
    if units is None:
        return ScoreCI(None, None, len(samples), f"per-sample records lack what {metric.key} needs")
    point = units.point()
    if not math.isclose(point, reported, rel_tol=1e-6, abs_tol=1e-6):
        return ScoreCI(None, None, len(units.keys),
                       f"per-sample records give {point:.4f}, the results file {reported:.4f}: no CI")
    dist = resample_stats(units, iters, seed)
    return ScoreCI(percentile_ci(dist), dist, len(units.keys))


@dataclass
class PairedResult:
    """Paired bootstrap of A - B over shared units."""

    n_shared: int
    a: float
    b: float
    diff: float
    ci: tuple[float, float]
    p_value: float


def paired_bootstrap(a: Units, b: Units, *, iters: int = DEFAULT_ITERS, seed: int = DEFAULT_SEED,
                     level: float = LEVEL) -> PairedResult:
    """Resample shared units jointly; two-sided p-value of 'no difference' from the bootstrap distribution."""
    a_point, b_point = a.point(), b.point()
    dist = resample_stats(a, iters, seed, paired=b)
    # two-sided: how often the resampled difference falls on the other side of zero (plus-one corrected)
    below, above = np.sum(dist <= 0), np.sum(dist >= 0)
    p = min(1.0, 2.0 * (min(below, above) + 1) / (iters + 1))
    if np.all(dist == 0):
        p = 1.0
    return PairedResult(len(a.keys), a_point, b_point, a_point - b_point, percentile_ci(dist, level), float(p))
