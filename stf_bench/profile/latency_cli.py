"""`stf-bench latency`: time to first token of a model (and a baseline, interleaved), in the layout of Table 9."""

from __future__ import annotations

import argparse
import json

from stf_bench.args import parse_model_args
from stf_bench.devices import check_device_name, resolve_device
from stf_bench.errors import StfBenchError
from stf_bench.methods.options import add_method_arguments, merge_method_args
from stf_bench.models.presets import check_model_name
from stf_bench.profile.formatting import FORMATS, format_flops, render, speedup_disagreement
from stf_bench.profile.prompts import add_data_arguments
from stf_bench.profile.store import add_store_arguments, check_store_args, store_results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `stf-bench latency`."""
    parser.add_argument("--model", required=True, help="preset name (stf-7b, stf-tiny, ...) or checkpoint directory")
    parser.add_argument("--model-args", default="", help="config overrides, e.g. k=4,e=8 or attn_implementation=eager")
    add_method_arguments(parser)
    parser.add_argument("--baseline", help="a second model timed in the same run (Table 9: llava-1.5-7b)")
    parser.add_argument("--baseline-args", default="", help="overrides for --baseline")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when a GPU is visible, else cpu)")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"),
                        help="default: bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--random-weights", action="store_true",
                        help="build full-size presets from their config alone (latency does not depend on weights)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per model first")
    parser.add_argument("--iters", type=int, default=10, help="timed batches per model")
    add_data_arguments(parser)
    parser.add_argument("--peak-tflops", type=float, help="the device's peak TFLOP/s, overriding the built-in table")
    parser.add_argument("--format", choices=FORMATS, default="table")
    add_store_arguments(parser)


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def render_report(report: dict, fmt: str) -> str:
    """Table 9 layout: one column per model (baseline first), a speedup column when there are two."""
    names, models = list(report["models"]), list(report["models"].values())
    pair = "speedup" in report
    rows = []
    for key, label in (("ttft_per_sample_ms", "TTFT per sample"), ("ttft_batch_ms", "TTFT per batch")):
        for stat in ("mean", "median", "p90"):
            values = [m[key][stat] for m in models]
            ratio = [f"{values[0] / values[1]:.2f}x"] if pair else []
            rows.append([f"{label}, {stat} (ms)", *map(_ms, values), *ratio])
    blank = [""] if pair else []
    extra = (
        ("preprocessing per sample, mean (ms)", lambda m: _ms(m["preprocess_per_sample_ms"]["mean"])),
        ("visual + text tokens (padded)", lambda m: f"{m['visual_tokens']} + {m['text_tokens_padded']}"),
        ("prefill FLOPs per batch", lambda m: _flops_or_na(m["prefill_tflops_per_batch"])),
        ("achieved FLOP/s", lambda m: _flops_or_na(m["achieved_tflops_per_s"], "/s")),
        ("fraction of device peak", lambda m: "n/a" if m["peak_fraction"] is None else f"{m['peak_fraction']:.1%}"),
        ("peak memory (GiB)", lambda m: f"{m['memory']['peak_bytes'] / 2**30:.2f}"),
    )
    rows += [[label, *(fn(m) for m in models), *blank] for label, fn in extra]
    headers = ["", *names, *(["speedup"] if pair else [])]
    device = report["device_details"]
    peak = f"{device['peak_tflops']} TFLOP/s ({device['peak_source']})" if device["peak_tflops"] else "unknown"
    attention = set(models[0]["attention"].values())
    attention = attention.pop() if len(attention) == 1 else ", ".join(f"{k} {v}" for k, v in models[0]["attention"].items())
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v)
    notes = [
        f"device: {report['device']}; peak: {peak}; load average (1 min) at the end: {device['load_average_1m']:.2f}",
        f"dtype {report['dtype']}; attention {attention}; batch {report['batch_size']}; "
        f"{report['warmup']} warm-up + {report['iters']} timed batches per model"
        + ("; interleaved" if report["interleaved"] else "") + f"; clock: {report['clock']}",
        f"prompts: {report['prompts_source']}; text tokens counted by {models[0]['tokenizer']}",
        f"memory: {models[0]['memory']['kind']}",
        report["definition"],
        versions,
    ]
    if pair:  # the ratio of means is the paper's "average latency"; say when the medians tell another story
        mean, median = (models[0]["ttft_per_sample_ms"][s] / models[1]["ttft_per_sample_ms"][s]
                        for s in ("mean", "median"))
        notes += [n for n in (speedup_disagreement(mean, median),) if n]
    return render(headers, rows, fmt, "Time to first token", notes)


def run(args: argparse.Namespace) -> int:
    """Check every input, load, time, then print; an error anywhere prints no table."""
    check_device_name(args.device)
    check_store_args(args)
    if args.batch_size < 1:
        raise StfBenchError(f"--batch-size must be at least 1 (got {args.batch_size})")
    specs = [(args.baseline, parse_model_args(args.baseline_args))] if args.baseline else []
    specs.append((args.model, merge_method_args(parse_model_args(args.model_args), args)))
    for name, _ in specs:
        check_model_name(name)
    device = resolve_device(args.device)  # imports torch
    from stf_bench.profile.latency import latency_report, load_subject, measure  # torch and transformers: now
    from stf_bench.profile.prompts import vqav2_requests

    requests, source = vqav2_requests(args.batch_size, args.data, args.data_dir)
    subjects = [load_subject(name, overrides, requests, device, args.dtype, args.random_weights)
                for name, overrides in specs]
    if len(subjects) == 2 and subjects[0].label == subjects[1].label:
        subjects[0].label += " (baseline)"  # the same model twice: a noise check; keep the two apart
    measure(subjects, device, args.warmup, args.iters)
    dtype = next(subjects[0].model.parameters()).dtype
    report = latency_report(subjects, device, dtype, args.warmup, args.iters, source, args.peak_tflops)
    text = json.dumps(report, indent=2) if args.format == "json" else render_report(report, args.format)
    print(text)
    store_results(args, [report], kind="latency")
    return 0


def _flops_or_na(tflops: float | None, suffix: str = "") -> str:
    """`format_flops`, or 'n/a' where the count differs per image (no prefill FLOPs on `meta`)."""
    return "n/a (tokens differ per image)" if tflops is None else format_flops(tflops, suffix)
