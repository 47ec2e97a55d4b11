"""`stf-bench ingest PATH...`: import lmms-eval output (or stf-bench flops/latency JSON) into the results store."""

from __future__ import annotations

import argparse

from stf_bench.store.db import DB_ENV, open_store
from stf_bench.store.ingest import parse_paths


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    """The --db option shared by ingest, report and compare."""
    parser.add_argument("--db", default=None,
                        help=f"results store (SQLite file); default: ${DB_ENV}, else a file in the user cache dir")


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """`--db PATH` / `--no-store` for the commands that record results (run, flops, latency)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--db", help=f"results store to record into (default: ${DB_ENV}, else the user cache dir)")
    group.add_argument("--no-store", action="store_true", help="record nothing in the results store")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `stf-bench ingest`."""
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="an lmms-eval results JSON, a folder holding lmms-eval output (searched recursively), "
                             "or a stf-bench flops/latency JSON")
    add_db_argument(parser)
    parser.add_argument("--model", help="model name to record (default: from the results file's model_args)")
    parser.add_argument("--model-args", help="model arguments to record, k=v,k=v (default: from the results file)")
    parser.add_argument("--protocol", help="evaluation protocol to record (default: llava for stf_ tasks, "
                                           "else lmms-eval)")
    parser.add_argument("--fingerprint", help="checkpoint fingerprint to record")
    parser.add_argument("--dry-run", action="store_true", help="validate the files, write nothing")


def run(args: argparse.Namespace) -> int:
    """Validate everything, then record it in one transaction; print what was added."""
    if args.dry_run:
        parsed = parse_paths(args.paths, model=args.model, model_args=args.model_args)
        for r in parsed.runs:
            print(f"ok  run      {r.path}: {r.model}, {len(r.tasks)} tasks, {len(r.samples)} samples files")
        for p, _ in parsed.flops:
            print(f"ok  flops    {p}")
        for p, _ in parsed.latency:
            print(f"ok  latency  {p}")
        return 0
    parsed = parse_paths(args.paths, model=args.model, model_args=args.model_args)  # no store file for a bad input
    with open_store(args.db) as store:
        results = store.add_parsed(parsed, protocol=args.protocol, checkpoint_fingerprint=args.fingerprint)
        for r in results:
            print(f"{'added' if r.added else 'kept '}  {r.kind:<8} #{r.id}  {r.detail}")
        added = sum(r.added for r in results)
        print(f"{added} new record(s), {len(results) - added} already present; store: {store.path}")
    return 0
