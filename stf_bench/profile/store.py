"""Optional recording of `flops` / `latency` results in the results store (`--db PATH`, `--no-store`)."""

from __future__ import annotations

import argparse

from stf_bench.errors import StfBenchError


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """`--db PATH` / `--no-store`."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--db", help="results store to record into (default: $STF_BENCH_DB, else the user cache dir)")
    group.add_argument("--no-store", action="store_true", help="print only; record nothing in the results store")


def store_results(args: argparse.Namespace, payloads: list[dict], kind: str) -> None:
    """Record each payload (a flops or latency JSON object) unless --no-store; a store error names the store."""
    if args.no_store or not payloads:
        return
    from stf_bench.store.db import open_store

    try:
        with open_store(args.db) as store:
            for payload in payloads:
                (store.record_flops if kind == "flops" else store.record_latency)(payload)
    except StfBenchError as exc:
        raise StfBenchError(f"the {kind} result printed above was not recorded: {exc}; "
                            f"pass --no-store to skip the results store") from None
