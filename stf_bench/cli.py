"""`stf-bench` command line: one sub-command per module, each with `add_arguments(parser)` and `run(args) -> int`.

Sub-command modules are imported lazily so that `stf-bench models` does not pay for lmms-eval or matplotlib.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from stf_bench.errors import StfBenchError

# name -> (module, one-line help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("stf_bench.models.cli", "list the model presets"),
    "methods": ("stf_bench.methods.cli", "list the compression methods (built in and installed plug-ins)"),
    "run": ("stf_bench.eval.cli", "accuracy on the benchmarks through lmms-eval"),
    "flops": ("stf_bench.profile.flops_cli", "TFLOPs of a preset under a named convention"),
    "latency": ("stf_bench.profile.latency_cli", "time to first token at batch 16"),
    "score": ("stf_bench.eval.score_cli", "re-score a run's saved predictions with today's scorers (no model)"),
    "ingest": ("stf_bench.store.cli", "import lmms-eval output into the results store"),
    "report": ("stf_bench.report.cli", "the paper's tables, published next to reproduced"),
    "compare": ("stf_bench.report.compare_cli", "paired bootstrap: do two models differ?"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Build the parser; only the chosen sub-command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="stf-bench", description="Accuracy, compute and latency of vision-token compression in LLaVA-style "
                                      "models, next to the published numbers. `stf-bench COMMAND -h` for details.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `stf-bench` console script."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except StfBenchError as exc:
        print(f"stf-bench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stf-bench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
