"""`stf-bench models`: the preset registry as a table or JSON (the facts: `stf_bench.models.summary`)."""

from __future__ import annotations

import argparse
import json
import sys

from stf_bench.args import parse_model_args
from stf_bench.models.presets import list_presets, own_overrides
from stf_bench.tabular import text_table

COLUMNS = ["name", "projector", "visual_tokens", "projector_params", "llm", "vision_tower", "weights"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--model-args", default="", help="overrides applied to every preset, e.g. k=4,e=8")
    parser.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=True,
                        help="include the -tiny twins (default: yes)")


def format_table(rows: list[dict]) -> str:
    """The presets' main facts, one line each; counts with thousands separators, '-' for none."""
    cells = [[f"{r[c]:,}" if isinstance(r[c], int) else str(r[c] or "-") for c in COLUMNS] for r in rows]
    return text_table(COLUMNS, cells, rule=False)


def run(args: argparse.Namespace) -> int:
    from stf_bench.models.summary import describe

    overrides = parse_model_args(args.model_args)
    rows = [describe(p.name, **own_overrides(p.name, overrides)) for p in list_presets() if args.tiny or not p.tiny]
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(format_table(rows))
    return 0
