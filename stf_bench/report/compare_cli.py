"""`stf-bench compare A B [--task T]`: a paired bootstrap over the samples two models share, per benchmark
(`stf_bench.report.compare` computes it; this module reads the flags and prints)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from stf_bench.errors import StfBenchError
from stf_bench.report.bootstrap import DEFAULT_ITERS, DEFAULT_SEED
from stf_bench.report.compare import Comparison, compare_sides
from stf_bench.store.cli import add_db_argument
from stf_bench.store.db import Store, resolve_db_path
from stf_bench.tabular import LEFT, RIGHT, text_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `stf-bench compare`."""
    parser.add_argument("a", metavar="A", help="run id, model name or report row label")
    parser.add_argument("b", metavar="B", help="run id, model name or report row label")
    parser.add_argument("--task", help="one benchmark: an lmms-eval task name or a paper column (e.g. pope, POPE)")
    add_db_argument(parser)
    parser.add_argument("--iters", type=int, default=DEFAULT_ITERS, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the interval")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--allow-different", action="store_true",
                        help="compare sides scored under different protocols or on different data (refused by "
                             "default: the difference would not be the models')")


def format_table(results: list[Comparison], a: str, b: str, level: float, iters: int) -> str:
    """Which side is which (`a`, `b`: each side's description), then one line per benchmark: both scores on the
    shared samples, A - B, its CI, p and a verdict."""
    headers = ["benchmark", "unit", "n", "A", "B", "A-B", f"{level:.0%} CI", "p", "verdict"]
    rows = [[c.column, c.unit, str(c.n_shared), f"{c.a:.2f}", f"{c.b:.2f}", f"{c.diff:+.2f}",
             f"[{c.ci[0]:+.2f}, {c.ci[1]:+.2f}]", f"{c.p_value:.4f}",
             c.verdict + (f"  ({c.n_mismatched} with different targets left out)" if c.n_mismatched else "")]
            for c in results]
    table = text_table(headers, rows, [LEFT, LEFT] + [RIGHT] * 6 + [LEFT], rule=False)
    return f"A = {a}\nB = {b}\n(scores on the shared samples; paired bootstrap, {iters} resamples)\n\n{table}"


def run(args: argparse.Namespace) -> int:
    """Print one line per shared benchmark: both scores on the shared samples, A - B, its CI, p and a verdict."""
    if args.iters < 1:
        raise StfBenchError(f"--iters {args.iters}: must be at least 1")
    path = resolve_db_path(args.db)
    if not path.exists():
        raise StfBenchError(f"no results store at {path}; record runs first (`stf-bench run` or `stf-bench ingest`)")
    with Store(path) as store:
        results, side_a, side_b = compare_sides(store, args.a, args.b, task=args.task, iters=args.iters,
                                                seed=args.seed, level=args.level,
                                                allow_different=args.allow_different)
    if args.format == "json":
        print(json.dumps({"a": args.a, "b": args.b, "sides": {"a": asdict(side_a), "b": asdict(side_b)},
                          "level": args.level, "iters": args.iters,
                          "comparisons": [asdict(c) for c in results]}, indent=2))
    else:
        print(format_table(results, f"{args.a}: {side_a.describe()}", f"{args.b}: {side_b.describe()}", args.level,
                           args.iters))
    return 0
