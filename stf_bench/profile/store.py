"""Optional recording of `flops` / `latency` results in the results store (`--db PATH`, `--no-store`)."""

from __future__ import annotations

import argparse

from stf_bench.errors import StfBenchError
from stf_bench.store.cli import add_store_arguments  # noqa: F401  (flops/latency CLIs import it from here)


def check_store_args(args: argparse.Namespace) -> None:
    """Before any work: the store named by --db (or its default) must be usable, unless --no-store."""
    if not args.no_store:
        from stf_bench.store.db import check_store

        check_store(args.db)


def store_results(args: argparse.Namespace, payloads: list[dict], kind: str) -> None:
    """Record each payload (a flops or latency JSON object) unless --no-store; a store error names the store.

    Call it after printing the result: the error says the result printed above was not recorded."""
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
