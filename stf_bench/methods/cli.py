"""`stf-bench methods`: every registered compression method with what it declares, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from stf_bench.methods.registry import list_methods
from stf_bench.tabular import text_table

COLUMNS = ["name", "acts_on", "text_conditioned", "reads_question", "after_projector", "trainable", "needs_attention",
           "params", "source"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `stf-bench methods`."""
    parser.add_argument("--format", choices=("table", "json"), default="table")


def _params(declared: list[dict]) -> str:
    return ", ".join(f"{p['name']}={p['default']}" for p in declared) or "-"


def format_table(rows: list[dict]) -> str:
    """One line per method: its declarations, booleans in lower case, parameters as name=default."""
    cells = [[_params(r[c]) if c == "params" else str(r[c]).lower() if isinstance(r[c], bool) else str(r[c])
              for c in COLUMNS] for r in rows]
    return text_table(COLUMNS, cells, rule=False)


def run(args: argparse.Namespace) -> int:
    """Print the registry; built-ins first, then those installed through the `stf_bench.methods` entry points."""
    rows = [method.describe() for method in list_methods()]
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(format_table(rows))
    return 0
