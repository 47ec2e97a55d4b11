"""`stf-bench models`: the preset registry as a table or JSON (counts computed on the `meta` device)."""

from __future__ import annotations

import argparse
import json
import sys

from stf_bench.args import parse_model_args
from stf_bench.models.presets import list_presets


def describe(name: str, **overrides) -> dict:
    """One preset's facts, computed from the model built on `meta` (nothing allocated)."""
    from stf_bench.models.loading import load_model
    from stf_bench.models.presets import get_preset

    preset = get_preset(name)
    model, _ = load_model(name, random_weights=True, device="meta", **overrides)
    cfg = model.config
    projector = cfg.projector_method
    return {
        "name": name,
        "projector": projector.name,
        "visual_tokens": model.num_visual_tokens,
        "projector_params": model.projector_params(),
        "llm": preset.llm,
        "llm_params": sum(p.numel() for p in model.model.language_model.parameters()),
        "vision_tower": preset.vision,
        "projector_args": dict(projector.args),  # what the projector declares (k, e, mbtf_blocks, ...)
        "weights": preset.weights or ("deterministic (seed 0), built offline" if preset.tiny else None),
        "note": preset.note,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--model-args", default="", help="overrides applied to every preset, e.g. k=4,e=8")
    parser.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=True,
                        help="include the -tiny twins (default: yes)")


def run(args: argparse.Namespace) -> int:
    overrides = parse_model_args(args.model_args)
    rows = [describe(p.name, **overrides) for p in list_presets() if args.tiny or not p.tiny]
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    cols = ["name", "projector", "visual_tokens", "projector_params", "llm", "vision_tower", "weights"]
    cells = [[f"{r[c]:,}" if isinstance(r[c], int) else str(r[c] or "-") for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    return 0
