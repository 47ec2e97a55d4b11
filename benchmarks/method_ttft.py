"""Benchmark: time to first token of each training-free method against its base model, beside its FLOPs ratios.

Every registered training-free method, built in or installed as a plug-in (`stf-bench methods`), at its published
128-token setting: the arguments it declares in `presets[128]` (VisionZip 108 + 20, MMTok 128, SparseVLM and
MustDrop their 128-token thresholds). A method that declares none runs at the setting of its published row in
baselines/tables.yaml (FastV and PruMerge+ beside Table 2's rows: 144 tokens), else at its defaults. `--set
NAME:k=v,...` overrides one (the tiny twins' LLM has 2 layers, so FastV needs k=1 there); a setting the model refuses
is listed with the reason and skipped. The base model is built once; each method is timed interleaved with it in
its own `latency` report.

    .venv/bin/python benchmarks/method_ttft.py --threads 1 --set fastv:k=1,r=0.75      # CPU, llava-tiny
    .venv/bin/python benchmarks/method_ttft.py --gpu                                    # llava-1.5-7b, bf16
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from stf_bench.args import parse_model_args
from stf_bench.devices import resolve_device
from stf_bench.errors import StfBenchError
from stf_bench.methods.options import METHOD_ARG_PREFIX, method_model_args
from stf_bench.profile.flops import count_paper
from stf_bench.profile.latency import latency_report, load_subject, measure
from stf_bench.profile.prompts import vqav2_requests
from stf_bench.published import load_published

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import rebatch  # noqa: E402  (benchmarks/latency.py)


def published_settings() -> dict[str, dict]:
    """{method: its arguments} of every published row whose match (or the setting placed beside it: Table 2's
    PruMerge+ and FastV, which no run is judged against) names a training-free method."""
    out = {}
    for table in load_published().tables.values():
        for row in table.rows:
            match = row.match or row.beside or {}
            if match.get("method"):
                out[match["method"]] = {k[len(METHOD_ARG_PREFIX):]: v for k, v in match.items()
                                        if k.startswith(METHOD_ARG_PREFIX)}
    return out


PUBLISHED_TOKENS = 128  # Table 4 prints every training-free method's 128-token results


def method_settings() -> dict[str, dict]:
    """{method: its arguments} for every registered training-free method (built in or plug-in): its declared
    128-token preset, else its published row's setting (`published_settings`), else {} (its defaults)."""
    from stf_bench.methods.registry import list_methods

    published = published_settings()
    out = {}
    for method in list_methods():
        if method.acts_on == "projector":
            continue
        preset = method.presets.get(PUBLISHED_TOKENS)
        out[method.name] = dict(preset) if preset is not None else published.get(method.name, {})
    return out


def with_overrides(settings: dict[str, dict], specs: list[str]) -> dict[str, dict]:
    """`settings` with each `NAME:k=v,...` of `specs` replacing that method's arguments."""
    settings = dict(settings)
    for spec in specs:
        name, _, text = spec.partition(":")
        settings[name] = parse_model_args(text)
    return settings


HEADER = ("| method ({base}, batch {batch}, {dtype}) | visual tokens | TTFT per sample, mean (ms): base / method | "
          "TTFT ratio | prefill FLOPs ratio | paper FLOPs ratio |\n|---|---|---|---|---|---|")


def time_methods(base: str, settings: dict[str, dict], device: torch.device, dtype: str, batch_size: int,
                 warmup: int, iters: int, random_weights: bool) -> Iterator[dict]:
    """Each method against the base model, one at a time: its figures and Markdown row, yielded as soon as it is
    measured (so that a caller can keep what finished). The base model is built once and timed afresh, interleaved,
    beside each method; a method's model is freed before the next one is built."""
    requests, source = vqav2_requests(batch_size, "samples", None)
    base_subject = load_subject(base, {}, requests, device, dtype, random_weights)
    for name, method_args in settings.items():
        try:
            subject = load_subject(base, method_model_args(name, method_args), requests, device, dtype,
                                   random_weights)
        except StfBenchError as exc:  # a setting this model cannot take (FastV's k=2 on a 2-layer LLM)
            yield {"method": name, "args": method_args, "refused": str(exc),
                   "markdown_row": f"| {name}({method_args}) | refused: {exc} | | | | |"}
            continue
        subjects = [rebatch(base_subject, batch_size), subject]
        measure(subjects, device, warmup, iters)
        report = latency_report(subjects, device, next(subjects[0].model.parameters()).dtype, warmup, iters,
                                source, None)
        a, b = (report["models"][s.label] for s in subjects)
        paper = count_paper(subjects[0].model)["llm"] / count_paper(subjects[1].model)["llm"]
        ttft = a["ttft_per_sample_ms"]["mean"], b["ttft_per_sample_ms"]["mean"]
        prefill = a["prefill_tflops_per_batch"] / b["prefill_tflops_per_batch"]
        schedule = subjects[1].model.config.token_schedule
        tokens = f"{schedule[0]} -> {schedule[-1]}" if len(set(schedule)) > 1 else str(schedule[0])
        row = (f"| {subjects[1].label} | {tokens} | {ttft[0]:.1f} / {ttft[1]:.1f} | {ttft[0] / ttft[1]:.2f}x | "
               f"{prefill:.2f}x | {paper:.2f}x |")
        yield {"method": name, "args": method_args, "label": subjects[1].label, "visual_tokens": tokens,
               "ttft_ratio": ttft[0] / ttft[1], "prefill_flops_ratio": prefill, "paper_flops_ratio": paper,
               "markdown_row": row, "report": report}
        del subjects, subject, report, a, b
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    """Time every method, print a Markdown table for docs/BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="llava-1.5-7b, bf16, random weights, on cuda")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--set", action="append", default=[], metavar="NAME:ARGS", help="override a method's setting")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = "llava-1.5-7b" if args.gpu else "llava-tiny"
    device = resolve_device("cuda" if args.gpu else "cpu")
    dtype = "bfloat16" if args.gpu else "float32"
    settings = with_overrides(method_settings(), args.set)
    print(HEADER.format(base=base, batch=args.batch_size, dtype=dtype))
    report = None
    for result in time_methods(base, settings, device, dtype, args.batch_size, args.warmup, args.iters, args.gpu):
        print(result["markdown_row"], flush=True)
        report = result.get("report", report)
    if report is not None:
        print(f"\ndevice: {report['device']}; prompts: {report['prompts_source']}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
