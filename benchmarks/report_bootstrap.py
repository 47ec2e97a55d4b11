"""Time the report's bootstrap CIs at the real benchmarks' sizes (per-sample records made up here, not scores).

Usage: .venv/bin/python benchmarks/report_bootstrap.py [--iters 2000]
Prints, per benchmark column, the number of units and the seconds one CI takes (2,000 resamples by default):
what `stf-bench report` spends per reproduced score with per-sample records.
"""

from __future__ import annotations

import argparse
import random
import time

from stf_bench.accuracy import of_column
from stf_bench.report.bootstrap import score_ci, task_units
from stf_bench.store.ingest import SampleRecord

# column -> (rows in the real evaluation set, index of the headline metric used: llava protocol first)
SIZES = {"GQA": 12578, "SQA": 2017, "VQA^T": 5000, "POPE": 9000, "MMB": 4377, "VQA^v2": 214354, "OCRBench": 1000}


def rows_for(column: str, n: int, rng: random.Random) -> list[SampleRecord]:
    """Made-up per-sample records in the shape the headline metric of `column` reads."""
    metric = of_column(column).headlines()[0]
    rows = []
    for i in range(n):
        if metric.aggregator == "pope_f1_split_avg":
            gt, pred = rng.choice(["yes", "no"]), rng.choice(["yes", "no"])
            value = {"prediction": pred, "ground_truth": gt, "category": ("adversarial", "popular", "random")[i % 3]}
        elif metric.aggregator == "mmbench_circular":
            q, copy = i // 4, i % 4
            answer = "ABCD"[(q + copy) % 4]
            value = {"index": q + copy * 1_000_000, "answer": answer, "prediction": answer if rng.random() < .7 else "A",
                     "question": "q", "hint": "nan", "category": "c", "l2-category": "l", "A": "a", "B": "b",
                     "C": "c", "D": "d"}
        else:
            value = {"score": float(rng.random() < 0.6)}
        rows.append(SampleRecord(i, None, "t", "", {metric.key: value}))
    return rows


def main() -> None:
    """Time one CI per column."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(0)
    print(f"{'column':<10} {'rows':>7} {'units':>7} {'seconds':>8}")
    for column, n in SIZES.items():
        rows = rows_for(column, n, rng)
        metric = of_column(column).headlines()[0]
        start = time.perf_counter()
        units = task_units(metric, rows)
        result = score_ci(metric, rows, units.point(), iters=args.iters)
        elapsed = time.perf_counter() - start
        assert result.ci is not None, result.note
        print(f"{column:<10} {n:>7} {len(units.keys):>7} {elapsed:>8.2f}")


if __name__ == "__main__":
    main()
