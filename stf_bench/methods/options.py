"""`--method NAME --method-args k=v,...`: the command-line flags shared by run, flops and latency.

They become model arguments `method=NAME,method.k=v,...` with every declared argument filled in (defaults
included), so that a method and its arguments are part of a run's identity whatever the user spelled out:
FastV at r=0.5 and at r=0.75 are two rows, and `--method fastv` equals `--method fastv --method-args r=<default>`.
"""

from __future__ import annotations

import argparse

from stf_bench.args import METHOD_ARG_PREFIX, parse_model_args
from stf_bench.errors import StfBenchError


def add_method_arguments(parser: argparse.ArgumentParser) -> None:
    """The two flags."""
    parser.add_argument("--method", default=None,
                        help="a training-free compression method applied to the model (`stf-bench methods` lists them)")
    parser.add_argument("--method-args", default="", help="the method's arguments, k=v,... (e.g. keep=16)")


def method_model_args(name: str | None, text: str | dict | None = "") -> dict:
    """{'method': NAME, 'method.ARG': value, ...} for every argument NAME declares; {} without a method.

    Unknown methods and arguments, and values of the wrong type or out of range, are refused here, before any model
    is built (shape-dependent checks follow when the model is).
    """
    given = parse_model_args(text or "")
    if not name:
        if given:
            raise StfBenchError(f"--method-args {text!r} given without --method; add --method NAME "
                                f"(`stf-bench methods` lists them)")
        return {}
    from stf_bench.methods.registry import get_training_free

    method = get_training_free(name)
    return {"method": method.name, **{METHOD_ARG_PREFIX + k: v for k, v in method.resolve(given).items()}}


def merge_method_args(model_args: dict, args: argparse.Namespace) -> dict:
    """`model_args` plus the `--method` flags; the method named in both places is an error."""
    extra = method_model_args(getattr(args, "method", None), getattr(args, "method_args", ""))
    if extra and any(k == "method" or k.startswith(METHOD_ARG_PREFIX) for k in model_args):
        raise StfBenchError("the method is given both in --model-args and --method; use --method NAME "
                            "--method-args k=v only")
    return {**model_args, **extra}


def split_method_args(model_args: dict) -> tuple[dict, str | None, dict]:
    """(the other model arguments, the method's name or None, the method's arguments) of `model_args`."""
    rest = {k: v for k, v in model_args.items() if k != "method" and not k.startswith(METHOD_ARG_PREFIX)}
    method_args = {k[len(METHOD_ARG_PREFIX):]: v for k, v in model_args.items() if k.startswith(METHOD_ARG_PREFIX)}
    return rest, model_args.get("method"), method_args


def method_suffix(model_args: dict) -> str:
    """' + fastv(k=2, r=0.5)' for model arguments naming a method, '' otherwise (row labels)."""
    _, name, method_args = split_method_args(model_args)
    if not name:
        return ""
    return f" + {name}" + (f"({', '.join(f'{k}={v}' for k, v in method_args.items())})" if method_args else "")
