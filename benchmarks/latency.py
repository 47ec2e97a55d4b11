"""Benchmark: time to first token of LLaVA-1.5 vs STF at batch 16, set against their FLOPs ratio.

CPU (default): `llava-tiny` vs `stf-tiny`, float32: does the TTFT ratio follow the prefill FLOPs ratio?
GPU (`--gpu`): `llava-1.5-7b` vs `stf-7b`, bf16, random weights (latency does not depend on weight values).
Goals there: a speedup of at least 3.3x (the paper's A100 figure, Table 9) and at least 50% of the device's
dense bf16 peak on the baseline's prefill.

Prints a Markdown block for docs/BENCHMARKS.md; `--out FILE` also writes the full JSON report.

    .venv/bin/python benchmarks/latency.py                 # CPU, tiny presets
    .venv/bin/python benchmarks/latency.py --gpu --iters 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from stf_bench.devices import resolve_device
from stf_bench.errors import StfBenchError
from stf_bench.profile.flops import count_paper
from stf_bench.profile.latency import Subject, latency_report, load_subject, measure
from stf_bench.profile.latency_cli import render_report
from stf_bench.profile.prompts import vqav2_requests

GOAL_SPEEDUP = 3.3  # Table 9: 346.2 ms vs 103.8 ms on one A100
GOAL_PEAK_FRACTION = 0.5


def rebatch(subject: Subject, n: int) -> Subject:
    """The same model with its first `n` requests and nothing measured yet (batch 1 after batch 16, or a base
    model timed again beside another method, without building it twice)."""
    return Subject(subject.label, subject.model, subject.processor, subject.requests[:n])


def compare(subjects: list[Subject], device: torch.device, warmup: int, iters: int, source: str) -> tuple[dict, str]:
    """Time a baseline and a model interleaved: the JSON report (with the ratios and, on a GPU, the two goals) and
    the Markdown block for docs/BENCHMARKS.md."""
    measure(subjects, device, warmup, iters)
    report = latency_report(subjects, device, subjects[0].model.dtype, warmup, iters, source)
    base, model = report["models"].values()
    prefill_ratio = base["prefill_tflops_per_batch"] / model["prefill_tflops_per_batch"]
    paper = [count_paper(s.model)["llm"] for s in subjects]
    report["ratios"] = {"ttft_per_sample_mean": report["speedup"], "prefill_flops": prefill_ratio,
                        "paper_flops": paper[0] / paper[1]}
    lines = [render_report(report, "md"), "| ratio llava / stf | value |", "|---|---|",
             f"| TTFT per sample (mean) | {report['speedup']:.2f}x |",
             f"| prefill FLOPs per batch (what was run) | {prefill_ratio:.2f}x |",
             f"| paper-convention FLOPs (LLM over visual tokens) | {paper[0] / paper[1]:.2f}x |"]
    if device.type == "cuda":
        fraction = base["peak_fraction"]
        report["goals"] = {"speedup": {"goal": GOAL_SPEEDUP, "value": report["speedup"],
                                       "met": report["speedup"] >= GOAL_SPEEDUP},
                           "baseline_peak_fraction": {"goal": GOAL_PEAK_FRACTION, "value": fraction,
                                                      "met": None if fraction is None else fraction >= GOAL_PEAK_FRACTION}}
        lines += ["", f"- goal speedup >= {GOAL_SPEEDUP}x: {report['speedup']:.2f}x, "
                  f"{'met' if report['speedup'] >= GOAL_SPEEDUP else 'NOT met'}",
                  f"- goal baseline prefill >= {GOAL_PEAK_FRACTION:.0%} of peak: "
                  + ("peak unknown for this GPU" if fraction is None else
                     f"{fraction:.1%}, {'met' if fraction >= GOAL_PEAK_FRACTION else 'NOT met'}")]
    return report, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the Markdown block."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="full-size 7B presets, bf16, on cuda")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device("cuda" if args.gpu else "cpu")
        names = ("llava-1.5-7b", "stf-7b") if args.gpu else ("llava-tiny", "stf-tiny")
        dtype = "bfloat16" if args.gpu else "float32"
        requests, source = vqav2_requests(args.batch_size)
        subjects = [load_subject(n, {}, requests, device, dtype, random_weights=True) for n in names]
        report, text = compare(subjects, device, args.warmup, args.iters, source)
    except StfBenchError as exc:
        print(f"benchmarks/latency.py: error: {exc}", file=sys.stderr)
        return 2
    print(text)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0

if __name__ == "__main__":
    sys.exit(main())
