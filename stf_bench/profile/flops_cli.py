"""`stf-bench flops`: TFLOPs of a preset under a named convention, counted with calflops on the meta device."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from stf_bench.args import parse_model_args
from stf_bench.errors import StfBenchError
from stf_bench.methods.options import add_method_arguments, merge_method_args
from stf_bench.models.presets import check_model_name
from stf_bench.profile.formatting import FORMATS, flops_unit, render
from stf_bench.profile.prompts import add_data_arguments
from stf_bench.profile.store import add_store_arguments, check_store_args, store_results

if TYPE_CHECKING:  # torch, transformers and calflops load only once the arguments are checked
    from stf_bench.profile.flops import FlopsReport

CONVENTION_NOTES = {
    "paper": "paper convention: LLM backbone over the visual tokens only, no lm_head, eager attention, batch 1 "
             "(what the paper's TFLOPs column counts)",
    "prefill": "prefill convention: vision tower + projector + LLM over visual and text tokens + lm_head for the "
               "first token, one request",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `stf-bench flops`."""
    parser.add_argument("--model", help="preset name (stf-7b, llava-1.5-7b, ...) or checkpoint directory")
    parser.add_argument("--model-args", default="", help="config overrides, e.g. k=4,e=8")
    add_method_arguments(parser)
    parser.add_argument("--convention", choices=list(CONVENTION_NOTES), default="paper",
                        help="paper: LLM over visual tokens only (the paper's column); prefill: the whole request")
    parser.add_argument("--table", choices=("2", "3", "5", "6"),
                        help="compute the TFLOPs column of this paper table, published values beside")
    parser.add_argument("--format", choices=FORMATS, default="table")
    add_data_arguments(parser)
    add_store_arguments(parser)


def model_report(name: str, overrides: dict, convention: str, data: str = "samples",
                 data_dir: str | None = None) -> tuple[FlopsReport, str | None]:
    """Count one model; for `prefill`, on the first VQAv2-style request. Returns (report, prompts source)."""
    from stf_bench.models.loading import load_model
    from stf_bench.profile.flops import paper_report, prefill_report
    from stf_bench.profile.flops_tables import model_label
    from stf_bench.profile.prompts import describe_tokenizer, question_inputs, vqav2_requests

    model, processor = load_model(name, random_weights=True, device="meta", **overrides)
    label = model_label(name, overrides)
    if convention == "paper":
        return paper_report(model, label), None
    requests, source = vqav2_requests(1, data, data_dir)
    input_ids = processor(images=[requests[0].image], text=[requests[0].prompt], return_tensors="pt")["input_ids"]
    report = prefill_report(model, label, input_ids, requests[0].prompt, question_inputs(processor, model, requests))
    report.details["tokenizer"] = describe_tokenizer(processor.tokenizer, model.config.text_config.vocab_size)
    return report, source


def render_report(report: FlopsReport, fmt: str) -> str:
    """One model's figures as a table: components first, then the total, in a unit that fits the total (TFLOPs for
    the full-size presets, MFLOPs or GFLOPs for a tiny one), named in the header."""
    unit, factor = flops_unit(report.tflops)
    rows = [[name, f"{value * factor:.4f}"] for name, value in report.components.items()]
    if len(rows) > 1:
        rows.append(["total", f"{report.tflops * factor:.4f}"])
    notes = [CONVENTION_NOTES[report.convention], f"visual tokens: {report.visual_tokens}", f"counter: {report.counter}"]
    if report.text_tokens is not None:
        notes.append(f"text tokens: {report.text_tokens} (counted by {report.details.get('tokenizer', '')})")
    return render(["component", unit], rows, fmt, f"{report.model}: {report.convention} convention", notes)


def _tokens(report: FlopsReport) -> str:
    """'144', or '576 -> 144' where a method changes the count inside the LLM."""
    schedule = report.details.get("token_schedule")
    return f"{schedule[0]} -> {schedule[-1]}" if schedule else str(report.visual_tokens)


def render_table(title: str, rows: list, fmt: str) -> str:
    """Computed `paper` TFLOPs beside the published column."""
    from stf_bench.profile.flops_tables import model_label

    cells = []
    for row in rows:
        computed = f"{row.report.tflops:.3f}" if row.report else "no preset"
        published = "-" if row.published is None else f"{row.published:.1f}"
        rounded = f"{row.report.tflops:.1f}" if row.report else ""
        model = model_label(row.preset, row.overrides) if row.preset else ""
        tokens = _tokens(row.report) if row.report else ""
        agrees = "" if not row.report or row.published is None else ("yes" if rounded == published else "NO")
        cells.append([row.method, model, tokens, computed, rounded, published, agrees])
    headers = ["method", "model", "visual tokens", "TFLOPs (computed)", "rounded", "TFLOPs (published)", "agrees"]
    return render(headers, cells, fmt, title, [CONVENTION_NOTES["paper"], "published: baselines/published.csv"])


def run(args: argparse.Namespace) -> int:
    """Count, print, then record; nothing is printed or stored unless every count succeeded."""
    check_store_args(args)
    if args.table:
        if args.model or args.convention != "paper" or args.method:
            raise StfBenchError("--table computes the paper convention for the table's own rows; drop --model/--convention")
        from stf_bench.profile.flops_tables import flops_table

        title, rows = flops_table(args.table)
        if args.format == "json":
            payload = {"table": args.table, "title": title, "convention": "paper",
                       "rows": [{"method": r.method, "published_tflops": r.published,
                                 "computed": r.report.to_dict() if r.report else None} for r in rows]}
            text = json.dumps(payload, indent=2)
        else:
            text = render_table(title, rows, args.format)
        print(text)
        store_results(args, [r.report.to_dict() for r in rows if r.report], kind="flops")
        return 0
    if not args.model:
        raise StfBenchError("name a model with --model PRESET (see `stf-bench models`), or a paper table with --table")
    check_model_name(args.model)
    overrides = merge_method_args(parse_model_args(args.model_args), args)
    report, source = model_report(args.model, overrides, args.convention, args.data, args.data_dir)
    payload = report.to_dict()
    if source:
        payload["prompts_source"] = source
    text = json.dumps(payload, indent=2) if args.format == "json" else render_report(report, args.format)
    print(text)
    store_results(args, [payload], kind="flops")
    return 0
