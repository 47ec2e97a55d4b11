"""Bootstrap confidence intervals and paired bootstrap tests over per-sample records.

A task's score is recomputed from its per-sample records as a function of summed per-unit vectors: the mean of
per-doc scores (exact match, relaxed accuracy; OCRBench x 1000 = points out of 1000), F1 from per-doc (tp, fp, fn)
counts (POPE; the llava protocol averages the F1 of its three splits), or the mean of per-question hits where a
question counts only if all its circular copies are right (MMBench, lmms-eval's static matcher). Resampling units with replacement and recomputing gives the CI. The recomputed point estimate must equal
the score in lmms-eval's results file, otherwise no CI is given (the records do not describe that score).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stf_bench.benchmarks import MMBENCH_COPY, MMBENCH_SYS_PROMPT, Metric
from stf_bench.store.db import SampleRow

DEFAULT_ITERS = 2000
DEFAULT_SEED = 0
LEVEL = 0.95
CHUNK = 64


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


def _mean(scale: float) -> Callable[[np.ndarray, int], np.ndarray]:
    return lambda sums, n: sums[:, 0] / n * scale


MEAN_SCALE = {"mean_pct": 100.0, "mean_points": 1000.0}


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 of 'yes' as lmms-eval computes it (0 where precision + recall is 0), in percent."""
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 200.0 * tp / np.where(denom > 0, denom, 1), 0.0)


def _pope_f1(sums: np.ndarray, n: int) -> np.ndarray:
    return _f1(sums[:, 0], sums[:, 1], sums[:, 2])


def _pope_f1_split_avg(sums: np.ndarray, n: int) -> np.ndarray:
    """Mean over splits (present in the resample) of each split's F1; columns are (tp, fp, fn, count) per split."""
    per = sums.reshape(sums.shape[0], -1, 4)
    f1 = _f1(per[..., 0], per[..., 1], per[..., 2])
    present = per[..., 3] > 0
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def _score(value: object) -> float | None:
    if isinstance(value, dict):
        value = value.get("score")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _confusion(v: object) -> tuple[bool, bool, bool] | None:
    if not isinstance(v, dict) or "prediction" not in v or "ground_truth" not in v:
        return None
    pred, gt = str(v["prediction"]), str(v["ground_truth"])
    return pred == "yes" and gt == "yes", pred == "yes" and gt == "no", pred == "no" and gt == "yes"


def task_units(metric: Metric, samples: list[SampleRow]) -> Units | None:
    """Per-unit vectors for `metric` from per-sample records, or None if the records lack what it needs."""
    if not samples:
        return None
    if metric.aggregator == "mmbench_circular":
        return _mmbench_units(metric, samples)
    keys = [str(s.doc_id) for s in samples]
    targets = [str(s.target) for s in samples]
    raw = [s.metrics.get(metric.key) for s in samples]
    if metric.aggregator in ("pope_f1", "pope_f1_split_avg"):
        counts = [_confusion(v) for v in raw]
        if any(c is None for c in counts):
            return None
        if metric.aggregator == "pope_f1":
            return Units(keys, targets, np.asarray(counts, dtype=float).reshape(-1, 3), _pope_f1)
        if not all("category" in v for v in raw):
            return None
        splits = sorted({str(v["category"]) for v in raw})
        values = np.zeros((len(raw), 4 * len(splits)))
        for i, (v, c) in enumerate(zip(raw, counts)):
            j = 4 * splits.index(str(v["category"]))
            values[i, j:j + 4] = (*c, 1.0)
        return Units(keys, targets, values, _pope_f1_split_avg)
    if metric.aggregator not in MEAN_SCALE:
        return None
    scores = [_score(v) for v in raw]
    if any(s is None for s in scores):
        return None
    return Units(keys, targets, np.asarray(scores, dtype=float).reshape(-1, 1), _mean(MEAN_SCALE[metric.aggregator]))


def _mmbench_units(metric: Metric, samples: list[SampleRow]) -> Units | None:
    """One unit per MMBench question: 1 if every circular copy is answered right (the llava protocol's
    circular_accuracy: VLMEvalKit's exact matching; lmms-eval's gpt_eval_score: its static matcher)."""
    records = [s.metrics.get(metric.key) for s in samples]
    if not all(isinstance(r, dict) and "index" in r and "answer" in r and "prediction" in r for r in records):
        return None
    if metric.key == "circular_accuracy":
        from stf_bench.eval.scoring import mmbench_question_hits

        answers: dict[int, list[str]] = {}
        for r in sorted(records, key=lambda r: int(r["index"])):
            answers.setdefault(int(r["index"]) % MMBENCH_COPY, []).append(str(r["answer"]))
        found = mmbench_question_hits(records)
        if not found:
            return None
        hits = np.asarray([float(h) for h in found.values()]).reshape(-1, 1)
        return Units([str(q) for q in found], ["".join(answers[q]) for q in found], hits, _mean(100.0))
    import pandas as pd
    from lmms_eval.tasks.mmbench.mmbench_evals import MMBench_Evaluator

    evaluator = MMBench_Evaluator(sys_prompt=MMBENCH_SYS_PROMPT)
    data = pd.DataFrame(records).sort_values(by="index")
    data["prediction"] = [str(x) for x in data["prediction"]]
    data.columns = [c if c in "ABCD" else c.lower() for c in data.columns]
    answer_map = dict(zip(data["index"], data["answer"]))
    groups = data.groupby(data["index"] % MMBENCH_COPY)
    keys, targets, hits = [], [], []
    for question, sub in groups:
        if question not in answer_map:
            return None  # a copy without its main question: not the layout lmms-eval scores
        keys.append(str(question))
        targets.append("".join(str(a) for a in sub["answer"]))
        hits.append(float(evaluator.eval_sub_data(sub, answer_map, static_only=True)))
    return Units(keys, targets, np.asarray(hits, dtype=float).reshape(-1, 1), _mean(100.0))


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


def score_ci(metric: Metric, samples: list[SampleRow], reported: float, *, iters: int = DEFAULT_ITERS,
             seed: int = DEFAULT_SEED) -> ScoreCI:
    """Bootstrap CI of a reported score from its per-sample records, checked against the reported value."""
    units = task_units(metric, samples)
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
