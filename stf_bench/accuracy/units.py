"""Bootstrap units: a score as a statistic of summed per-unit vectors, so that resampling units recomputes it.

Every benchmark's headline is recomputed from its per-sample records (`stf_bench.report.bootstrap` resamples the
units with replacement). By default a unit is a row and the statistic the mean row score (`mean_pct` x100,
`mean_points` x1000: `row_units`). A benchmark whose score is not a mean of row scores says how it resamples in
its module's `bootstrap_units(metric, records)`: POPE by row with per-split (tp, fp, fn) counts, MMBench by
question group (a question and its circular copies).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from stf_bench.accuracy.declaration import Metric


class Record(Protocol):
    """One per-sample record, as the results store holds it (`stf_bench.store.ingest.SampleRecord`)."""

    doc_id: Any
    target: Any
    metrics: dict


@dataclass
class Units:
    """Per-unit vectors (n, d), their keys (doc ids or question ids), targets for pairing, and the statistic."""

    keys: list[str]
    targets: list[str]
    values: np.ndarray
    statistic: Callable[[np.ndarray, int], np.ndarray]

    def point(self) -> float:
        """The statistic on all units."""
        return float(self.statistic(self.values.sum(axis=0, keepdims=True), len(self.keys))[0])

    def subset(self, keys: list[str]) -> Units:
        """The units with these keys, in this order."""
        where = {k: i for i, k in enumerate(self.keys)}
        idx = [where[k] for k in keys]
        return Units(list(keys), [self.targets[i] for i in idx], self.values[idx], self.statistic)


def mean_statistic(scale: float) -> Callable[[np.ndarray, int], np.ndarray]:
    """The mean of a one-column unit vector, times `scale`."""
    return lambda sums, n: sums[:, 0] / n * scale


MEAN_SCALE = {"mean_pct": 100.0, "mean_points": 1000.0}


def _score(value: object) -> float | None:
    if isinstance(value, dict):
        value = value.get("score")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def row_units(metric: Metric, samples: Sequence[Record]) -> Units | None:
    """One unit per row, the mean row score (`mean_pct`, `mean_points`); None for another aggregator or when a
    record lacks its score."""
    if metric.aggregator not in MEAN_SCALE:
        return None
    scores = [_score(s.metrics.get(metric.key)) for s in samples]
    if any(s is None for s in scores):
        return None
    return Units([str(s.doc_id) for s in samples], [str(s.target) for s in samples],
                 np.asarray(scores, dtype=float).reshape(-1, 1), mean_statistic(MEAN_SCALE[metric.aggregator]))
