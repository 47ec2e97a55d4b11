"""Optional recording of `flops` / `latency` results in the results store (`--db PATH`, `--no-store`)."""

from __future__ import annotations

import argparse

from stf_bench.errors import StfBenchError
from stf_bench.store.cli import add_store_arguments  # noqa: F401  (flops/latency CLIs import it from here)


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
