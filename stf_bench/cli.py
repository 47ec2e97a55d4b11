"""`stf-bench` command line: one sub-command per module, each with `add_arguments(parser)` and `run(args) -> int`.

Sub-command modules are imported lazily so that `stf-bench models` does not pay for lmms-eval or matplotlib.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import importlib
import os
import sys
from pathlib import Path

from stf_bench.errors import StfBenchError

# name -> (module, one-line help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("stf_bench.models.cli", "list the model presets"),
    "methods": ("stf_bench.methods.cli", "list the compression methods (built in and installed plug-ins)"),
    "run": ("stf_bench.run.cli", "accuracy on the benchmarks through lmms-eval"),
    "flops": ("stf_bench.profile.flops_cli", "TFLOPs of a preset under a named convention"),
    "latency": ("stf_bench.profile.latency_cli", "time to first token at batch 16"),
    "lmms-tasks": ("stf_bench.run.lmms_tasks_cli", "task files for lmms-eval's own CLI, on the sample or local data"),
    "score": ("stf_bench.run.score_cli", "re-score a run's saved predictions with today's scorers (no model)"),
    "train": ("stf_bench.train.cli", "train a preset with LLaVA-1.5's two-stage recipe (pretrain, finetune)"),
    "ingest": ("stf_bench.store.cli", "import lmms-eval output into the results store"),
    "report": ("stf_bench.report.cli", "the paper's tables, published next to reproduced"),
    "compare": ("stf_bench.report.compare_cli", "paired bootstrap: do two models differ?"),
}


# The commands whose --model/--model-args are checked before any work, and the model arguments each reads itself
# besides the model's config fields and load options: `run`'s are the lmms-eval adapter's own
# (stf_bench.adapter.lmms_model.StfBenchLmms; tests/test_errors.py keeps the two in step).
COMMAND_MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "run": ("random_weights", "cache_dir", "visual_cache", "fast_paths", "max_batch_size"),
    "flops": (),
    "latency": (),
}

# lmms-eval's spellings that are not just `--our-flag` with underscores (those are read as the dashed flag).
LMMS_ALIASES: dict[str, str] = {"--output_path": "--output-dir"}
# lmms-eval flags stf-bench has no counterpart for: what to do instead.
LMMS_UNSUPPORTED: dict[str, str] = {
    "--log_samples": "stf-bench run always writes the per-sample answers (samples_*.jsonl under --output-dir); "
                     "drop --log_samples",
    "--gen_kwargs": "stf-bench fixes generation by the task's protocol (greedy, the task's max_new_tokens); "
                    "pick it with --protocol llava or --protocol lmms-eval and drop --gen_kwargs",
}


def _long_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every `--flag` of `parser`, sorted."""
    return sorted({opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")})


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser | None:
    """The sub-command parser `command` names, or None."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command) if command else None
    return None


def normalize_flags(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """lmms-eval spellings in `argv` read as `parser`'s flags: `--model_args x` -> `--model-args x`,
    `--output_path` -> `--output-dir`. lmms-eval flags with no counterpart are a StfBenchError saying what to use."""
    known = set(_long_flags(parser))
    out: list[str] = []
    for i, token in enumerate(argv):
        if token == "--":
            return out + argv[i:]
        flag, eq, value = token.partition("=")
        if flag.startswith("--") and flag not in known:
            dashed = LMMS_ALIASES.get(flag) or flag.replace("_", "-")
            if dashed in known:
                token = dashed + eq + value
            elif "--" + flag[2:].replace("-", "_") in LMMS_UNSUPPORTED:
                raise StfBenchError(f"{flag} is an lmms-eval flag: {LMMS_UNSUPPORTED['--' + flag[2:].replace('-', '_')]}")
        out.append(token)
    return out


def unknown_flag_message(flag: str, parser: argparse.ArgumentParser) -> str:
    """`unrecognized argument --lim; did you mean --limit?` (the closest of `parser`'s flags, if any is close)."""
    close = difflib.get_close_matches(flag, _long_flags(parser), n=1, cutoff=0.6)
    return f"unrecognized argument {flag}" + (f"; did you mean {close[0]}?" if close else "")


def check_model_before_work(command: str, args: argparse.Namespace) -> None:
    """The checks the README promises "before any work", for `run`, `flops` and `latency`:
    the model's name, its arguments' names, and on a preset their values (an impossible k/e, a bad method argument,
    FastV's k beyond the LLM). They read the preset and method declarations only, so a mistake is one line in well
    under a second instead of after torch, transformers and lmms-eval have loaded (11-16 s before)."""
    if command not in COMMAND_MODEL_OPTIONS or not getattr(args, "model", None):
        return
    from stf_bench.args import parse_model_args
    from stf_bench.methods.options import merge_method_args
    from stf_bench.models.presets import check_model_args, check_model_name

    own = COMMAND_MODEL_OPTIONS.get(command, ())
    models = [(args.model, merge_method_args(parse_model_args(args.model_args), args))]
    if getattr(args, "baseline", None):
        models.append((args.baseline, parse_model_args(getattr(args, "baseline_args", ""))))
    for name, model_args in models:
        check_model_name(name)
        check_model_args(name, {k: v for k, v in model_args.items() if k not in own})


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Build the parser; only the chosen sub-command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="stf-bench", description="Accuracy, compute and latency of vision-token compression in LLaVA-style "
                                      "models, next to the published numbers. `stf-bench COMMAND -h` for details.",
        allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `stf-bench` console script."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    chosen = _subparser(parser, command)
    if chosen is not None:
        try:
            argv = normalize_flags(argv, chosen)
        except StfBenchError as exc:
            print(f"stf-bench {command}: error: {exc}", file=sys.stderr)
            return 2
    args, extras = parser.parse_known_args(argv)
    if extras:
        flag = next((e.partition("=")[0] for e in extras if e.startswith("-")), None)
        target = chosen or parser
        target.error(unknown_flag_message(flag, target) if flag else f"unrecognized arguments: {' '.join(extras)}")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        check_model_before_work(args.command, args)
        code = int(importlib.import_module(args._module).run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except StfBenchError as exc:
        print(f"stf-bench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = Path(exc.filename).parent if exc.filename else "the device"
        print(f"stf-bench {args.command}: error: no space left on {where}; free some space and run the same "
              f"command again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stf-bench {args.command}: interrupted{_resume_note(args)}", file=sys.stderr)
        return 130


def _resume_note(args: argparse.Namespace) -> str:
    """What an interrupted `run` or `train` kept and how to go on; empty for the other commands."""
    if args.command == "train" and getattr(args, "output_dir", None):
        return (f"; the checkpoints saved so far (every --save-steps) are in {args.output_dir}: the same command with "
                f"--resume continues from the last one")
    if args.command != "run":
        return ""
    if getattr(args, "no_resume", False):
        return " (with --no-resume no answers were kept; the same command starts over)"
    from stf_bench.run.runner import RESUME_DIR

    cache = Path(args.output_dir) / RESUME_DIR
    return (f"; the answers finished so far are kept in {cache}: run the same command again to resume from them "
            f"(--no-resume starts over)")


def _stdout_closed() -> int:
    """The reader of our stdout went away (`stf-bench models | head`): stop quietly with 128 + SIGPIPE, as a
    command killed by SIGPIPE would. stdout is pointed at /dev/null so that Python's exit flush stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (tests, wrapped streams)
        pass
    return 141


if __name__ == "__main__":
    sys.exit(main())
