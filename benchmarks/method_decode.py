"""Benchmark: whole-answer generation time of an in-LLM method against its base model on the same requests.

Issue 27's goal: FastV (k=1 on the two-layer tiny LLM) answers the same requests in at most 1.5x the base model's
time, now that it prefills once with its pruning and decodes from the pruned KV cache (`prunes_kv_cache`) through
the base model's own greedy loop (`plans_decode`: `generation.pruned_greedy_generate`). Both run through our
lmms-eval adapter (fast paths on, so the base model takes its shared-prefill greedy path and FastV its own loop)
on the generate_until requests lmms-eval builds for the embedded sample data; the method is also timed decoding
from its pruned cache through transformers' `generate` loop (`FastPaths.pruned_decode` off: the path before);
`--recompute` also times FastV recomputing (the adapter's `pruned_cache` off: plain `generate()`, the whole sequence
at every step; FastV then ranks again at every step, so its answers may differ from the second token on). The base model is also
timed with `fast_paths=false` (plain `generate()` with its KV cache), the path FastV's cached decoding takes.
One untimed pass per subject, then `--repeats` timed passes alternated; medians reported.

    .venv/bin/python benchmarks/method_decode.py --threads 1 [--tasks pope,gqa] [--limit 3] [--recompute]
        [--method fastv] [--method-args k=1]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adapter_throughput import build_requests, timed  # noqa: E402  (benchmarks/adapter_throughput.py)

GOAL = 1.5  # at most this many times the base model's time (issue 27)
RECOMPUTE = "{} (recomputation: plain generate, no cache)"
GENERATE_LOOP = "{} (pruned KV cache, generate loop)"


def measure(preset: str, method: str, method_args: dict, tasks: str, limit: int, batch_size: int, repeats: int,
            recompute: bool) -> dict:
    """Median seconds per subject over the same requests, the answers of each, and the ratio to the base model."""
    from stf_bench.adapter.lmms_model import StfBenchLmms
    from stf_bench.methods.options import method_model_args

    datasets, requests = build_requests(tasks, limit)
    subjects = {"base": {}, "base, fast_paths=false (plain generate)": {"fast_paths": "false"},
                f"{method} (pruned KV cache)": method_model_args(method, method_args)}
    subjects[GENERATE_LOOP.format(method)] = subjects[f"{method} (pruned KV cache)"]
    if recompute:
        subjects[RECOMPUTE.format(method)] = subjects[f"{method} (pruned KV cache)"]
    lms = {}
    for label, model_args in subjects.items():
        lm = StfBenchLmms(preset=preset, device="cpu", dtype="float32", batch_size=batch_size, **model_args)
        lm.show_progress = False
        lm.pruned_cache = lm.pruned_cache and label != RECOMPUTE.format(method)
        if label == GENERATE_LOOP.format(method):
            lm.fast_paths = dataclasses.replace(lm.fast_paths, pruned_decode=False)
        lm.task_dict = datasets
        timed(lm, requests)  # untimed: warm-up
        lms[label] = lm
    seconds: dict[str, list[float]] = {label: [] for label in lms}
    answers: dict[str, list[str]] = {}
    for _ in range(repeats):
        for label, lm in lms.items():
            answers[label], took = timed(lm, requests)
            seconds[label].append(took)
    medians = {label: statistics.median(s) for label, s in seconds.items()}
    return {"preset": preset, "method": method, "method_args": method_args, "requests": len(requests),
            "tasks": tasks, "batch_size": batch_size, "repeats": repeats, "seconds": seconds, "median_s": medians,
            "ratio_to_base": {label: medians[label] / medians["base"] for label in medians},
            "same_answers_as_generate_loop": (answers[f"{method} (pruned KV cache)"]
                                              == answers[GENERATE_LOOP.format(method)]),
            "same_answers_as_recomputation": (answers[f"{method} (pruned KV cache)"]
                                              == answers[RECOMPUTE.format(method)]) if recompute else None}


def main(argv: list[str] | None = None) -> int:
    """Time base and method, print a Markdown table for docs/BENCHMARKS.md."""
    from stf_bench.args import parse_model_args

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="llava-tiny")
    parser.add_argument("--method", default="fastv")
    parser.add_argument("--method-args", default="k=1")
    parser.add_argument("--tasks", default="pope,gqa")
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recompute", action="store_true", help="also time the method recomputing (no cache)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(args.preset, args.method, parse_model_args(args.method_args), args.tasks, args.limit,
                     args.batch_size, args.repeats, args.recompute)
    print(f"| subject ({args.preset}, {result['requests']} requests of {args.tasks}, batch {args.batch_size}) | "
          f"median s | ratio to base |\n|---|---|---|")
    for label, median in result["median_s"].items():
        print(f"| {label} | {median:.2f} | {result['ratio_to_base'][label]:.2f}x |")
    ratio = result["ratio_to_base"][f"{args.method} (pruned KV cache)"]
    print(f"\ngoal (at most {GOAL}x the base model): {'met' if ratio <= GOAL else 'not met'} ({ratio:.2f}x)")
    print(f"same answers as the generate loop: {result['same_answers_as_generate_loop']}")
    if args.recompute:
        print(f"same answers as the recomputation: {result['same_answers_as_recomputation']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
