"""`stf-bench run`: accuracy of a model on the benchmarks through lmms-eval; with no flags, the embedded default
(`stf-tiny-trained`, stf-tiny trained by `stf-bench train` on the training samples, on the sample data of all ten
tasks, llava protocol, CPU).

Multi-process: `accelerate launch --num_processes N -m stf_bench.cli run ...` on GPUs, or
`torchrun --nproc_per_node N -m stf_bench.cli run ...` (GPUs or CPU; `accelerate launch --cpu` starts one process
unless accelerate is configured for MPI). Requests are sharded by rank, rank 0 gathers and writes the results.
Killed and restarted with the same flags, a run reuses every finished answer (`{output-dir}/.resume/`).
"""

from __future__ import annotations

import argparse
import json
import sys

from stf_bench.accuracy import BENCHMARKS
from stf_bench.errors import StfBenchError, writable_dir
from stf_bench.methods.options import add_method_arguments, merge_method_args
from stf_bench.models.default_model import DEFAULT_MODEL
from stf_bench.store.cli import add_store_arguments
from stf_bench.tabular import text_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `stf-bench run`."""
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"preset name, checkpoint directory or hub id (default {DEFAULT_MODEL})")
    parser.add_argument("--model-args", default="", help="k=v,... model overrides, e.g. k=4,e=8 or random_weights=true")
    add_method_arguments(parser)
    parser.add_argument("--tasks", default="all", help="all, paper8, or a comma list of task names (default all)")
    parser.add_argument("--protocol", default="llava", choices=["llava", "lmms-eval"],
                        help="llava: the paper's evaluation (default); lmms-eval: lmms-eval's own task definitions")
    parser.add_argument("--data", default="samples", choices=["samples", "hub", "local"],
                        help="samples: the embedded sample data (default); hub: the real datasets; local: --data-dir")
    parser.add_argument("--data-dir", default=None, help="folder of local dataset snapshots (implies --data local)")
    parser.add_argument("--limit", type=float, default=None, help="at most this many rows per task, a whole number (testing only)")
    parser.add_argument("--batch-size", type=int, default=8, help="requests per forward pass (default 8)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                        help="weights dtype (default: float32 on CPU, bfloat16 on CUDA)")
    parser.add_argument("--output-dir", default="results", help="where lmms-eval's results and samples go (default results/)")
    parser.add_argument("--format", default="table", choices=["table", "json"],
                        help="table (default) or json: {task: {metric: value}} on stdout, nothing else")
    add_store_arguments(parser)
    parser.add_argument("--no-resume", action="store_true", help="ignore answers cached by an earlier, interrupted run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def spec_from_args(args: argparse.Namespace):
    """The RunSpec the flags describe."""
    from stf_bench.args import parse_model_args
    from stf_bench.devices import check_device_name
    from stf_bench.run.runner import RunSpec

    check_device_name(args.device)
    if args.batch_size < 1:
        raise StfBenchError(f"--batch-size must be at least 1, not {args.batch_size}")
    if args.limit is not None and args.limit <= 0:
        raise StfBenchError(f"--limit must be positive, not {args.limit:g}")
    if args.limit is not None and args.limit != int(args.limit):
        raise StfBenchError(f"--limit {args.limit:g}: a whole number of rows per task (stf-bench does not take "
                            f"lmms-eval's fraction form)")
    limit = int(args.limit) if args.limit is not None else None
    data = "local" if args.data_dir else args.data
    if data == "local" and not args.data_dir:
        raise StfBenchError("--data local needs --data-dir DIR (one folder per dataset, as `hf download` writes it)")
    model_args = merge_method_args(parse_model_args(args.model_args), args)
    return RunSpec(model=args.model, model_args=model_args, tasks=args.tasks,
                   protocol=args.protocol, data=data, data_dir=args.data_dir, limit=limit,
                   batch_size=args.batch_size, device=args.device, dtype=args.dtype, output_dir=args.output_dir,
                   resume=not args.no_resume, show_progress=not args.no_progress)


def metric_unit(benchmark: str) -> str:
    """The unit of a benchmark's scores in `stf-bench run` (its declared unit; percent for a task stf-bench does
    not declare)."""
    return BENCHMARKS[benchmark].unit if benchmark in BENCHMARKS else "%"


DATA_NAMES = {"samples": "samples (the embedded sample rows, not the benchmarks: not comparable with the paper)",
              "hub": "hub (the real datasets)"}


def partial_tasks(results: dict) -> dict[str, str]:
    """lmms-eval tasks scored on fewer rows than their full set -> 'N of M rows' (the store's rule)."""
    from stf_bench.store.ingest import partial_rows, rows_per_task

    return partial_rows(rows_per_task(results.get("n-samples") or {}))


def run_description(results: dict) -> list[tuple[str, str]]:
    """What the scores below are of: model, method, protocol, data source and whether the run is partial."""
    from stf_bench.methods.options import method_suffix, split_method_args
    from stf_bench.report.attributes import training_data, training_note

    meta = results.get("stf_bench") or {}
    args = dict(meta.get("model_args") or {})
    rest, _, _ = split_method_args(args)
    model = str(meta.get("model")) + (f" ({', '.join(f'{k}={v}' for k, v in rest.items())})" if rest else "")
    data = meta.get("data") or "unknown"
    where = f"local ({meta['data_dir']})" if data == "local" and meta.get("data_dir") else DATA_NAMES.get(data, data)
    partial = partial_tasks(results)
    limit = f" (--limit {meta['limit']:g})" if meta.get("limit") is not None else ""
    trained = []
    if meta.get("training"):
        note = training_note(meta["training"]).removeprefix("trained ")  # "with stf-bench (preset, stage, ...)"
        on_samples = training_data(meta["training"]) == "samples"
        trained = [("trained", note + ("; on sample data, not a real model" if on_samples else ""))]
    return [("model", model), *trained, ("method", method_suffix(args).removeprefix(" + ") or "none"),
            ("protocol", str(meta.get("protocol"))), ("data", where),
            ("partial", "; ".join(f"{t} {why}" for t, why in partial.items()) + limit if partial else "no")]


def _metric_name(benchmark: str, metric: str, metrics: dict) -> str:
    """The metric's name in the table, as the benchmark's module labels it (`metric_label`: POPE's split-mean F1
    says so when fewer than three splits were scored), else the metric's own name."""
    label = BENCHMARKS[benchmark].hook("metric_label") if benchmark in BENCHMARKS else None
    return label(metric, metrics) if label is not None else metric


def format_table(outcome) -> str:
    """What was run (model, method, protocol, data, partial), then a plain-text table: benchmark, metric, value and
    its unit (paper units), rows scored, skipped rows."""
    rows = []
    for task, metrics in outcome.headline.items():
        skipped = outcome.skipped_by_benchmark.get(task, 0)
        scored = outcome.rows.get(task)
        for metric, value in metrics.items():
            rows.append((task, _metric_name(task, metric, metrics), f"{value:.2f}", metric_unit(task),
                         "" if scored is None else str(scored), str(skipped) if skipped else ""))
    table = text_table(["benchmark", "metric", "value", "unit", "rows", "skipped"], rows)
    header = "\n".join(f"{name + ':':<10}{value}" for name, value in run_description(outcome.results))
    return f"{header}\n\n{table}\n\nresults: {outcome.results_path}"


def run(args: argparse.Namespace) -> int:
    """Run the evaluation; 0 on success (StfBenchError -> exit 2 in stf_bench.cli)."""
    from stf_bench.devices import resolve_device
    from stf_bench.models.presets import check_model_name
    from stf_bench.run.task_specs import expand_tasks

    spec = spec_from_args(args)
    check_model_name(spec.model)  # an unknown model or a missing path, before torch, lmms-eval and the data load
    expand_tasks(spec.tasks)
    resolve_device(spec.device)  # a GPU torch cannot see: one line, before data or weights load
    if not args.no_store:  # a bad --db is found now, not after the whole evaluation
        from stf_bench.store.db import check_store

        check_store(args.db)
    writable_dir(spec.output_dir)
    from stf_bench.run.runner import end_distributed, evaluate  # lmms-eval, torch, transformers: now

    try:
        outcome = evaluate(spec)
    finally:
        end_distributed()
    if outcome is None:  # a non-zero rank: rank 0 reports
        return 0
    for task, rows in outcome.skipped.items():
        print(f"warning: {task}: {len(rows)} row(s) skipped, scored as an empty answer "
              f"(first: doc {rows[0]['doc_id']}: {rows[0]['reason']})", file=sys.stderr)
    summary = outcome.results["stf_bench"].get("method_summary")
    if summary:
        print(f"method: {json.dumps(summary)}", file=sys.stderr)
    return record_and_print(outcome, spec, args, "run")


def record_and_print(outcome, spec, args: argparse.Namespace, command: str) -> int:
    """Record a finished run in the store (unless --no-store), then print its scores; 1 if recording failed
    (the results are written either way), else 0. Shared by `run` and `score`."""
    from stf_bench.run.runner import json_ready, record_in_store

    status = 0
    if not args.no_store:
        try:
            print(record_in_store(outcome, spec, args.db), file=sys.stderr)
        except StfBenchError as exc:
            print(f"stf-bench {command}: results written to {outcome.results_path} but not recorded in the store: "
                  f"{exc}; fix it, then `stf-bench ingest {outcome.results_path}`", file=sys.stderr)
            status = 1
    if args.format == "json":
        print(json.dumps(json_ready(outcome.headline), indent=2))  # task order, headline metric first
    else:
        print(format_table(outcome))
    return status
