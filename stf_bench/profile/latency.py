"""Time to first token (TTFT) as the paper and FastVLM define it, with the FLOPs it did and the device it ran on.

TTFT = from a preprocessed batch on the device to the first generated token: vision tower + projector + LLM
prefill (KV cache built, as in generation) + `lm_head` + argmax. Image preprocessing and the host-to-device copy
are timed separately. CPU: `time.perf_counter`; CUDA: events around the call, then a synchronise. With a baseline,
the two models run interleaved (ABBA order) so that drift in clocks or temperature hits both alike.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from stf_bench.compat import package_version
from stf_bench.devices import check_fits, weights_bytes
from stf_bench.errors import StfBenchError
from stf_bench.models import load_model
from stf_bench.models.loading import parse_dtype
from stf_bench.models.presets import PRESETS
from stf_bench.profile.flops import count_prefill
from stf_bench.profile.flops_tables import model_label
from stf_bench.profile.peaks import dtype_name, lookup_peak
from stf_bench.profile.prompts import Request, describe_tokenizer, question_inputs

DEFINITION = ("TTFT: preprocessed batch on the device -> first generated token (vision tower + projector + LLM "
              "prefill with KV cache + lm_head + argmax); preprocessing and host-to-device copy timed separately")


def summarize(values_ms: list[float], divisor: int = 1) -> dict[str, float]:
    """mean / median / p90 (nearest rank) of timings in ms, each divided by `divisor` (batch -> per sample)."""
    ordered = sorted(v / divisor for v in values_ms)
    p90 = ordered[min(len(ordered) - 1, max(0, -(-9 * len(ordered) // 10) - 1))]
    return {"mean": statistics.fmean(ordered), "median": statistics.median(ordered), "p90": p90}


def device_name(device: torch.device) -> str:
    """GPU name from CUDA, or the CPU model from /proc/cpuinfo with its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu} ({os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads)"


def library_versions() -> dict[str, str | None]:
    """Versions that a timing depends on."""
    out: dict[str, str | None] = {"python": sys.version.split()[0], "torch": torch.__version__,
                                  "cuda": torch.version.cuda}
    return out | {package: package_version(package) for package in ("transformers", "calflops", "stf-bench")}


class Clock:
    """Milliseconds of one call: perf_counter on CPU; CUDA events + synchronise on a GPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def time(self, fn: Callable[[], object], host: bool = False) -> float:
        """Run `fn` once; its time in ms, all device work included. `host`: host-side work, timed by perf_counter."""
        if self.device.type != "cuda" or host:
            self._sync()
            start = time.perf_counter()
            fn()
            self._sync()
            return (time.perf_counter() - start) * 1e3
        torch.cuda.synchronize(self.device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(self.device)
        return start.elapsed_time(end)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def first_token(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Prefill the batch (building the KV cache) and pick each row's first token greedily."""
    with torch.inference_mode():
        out = model(**batch, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].argmax(-1)


@dataclass
class Subject:
    """One model under test and what was measured on it."""

    label: str
    model: torch.nn.Module
    processor: object
    requests: list[Request]
    input_ids: torch.Tensor | None = None
    ttft_ms: list[float] = field(default_factory=list)
    preprocess_ms: list[float] = field(default_factory=list)
    peak_extra_bytes: int = 0

    def preprocess(self, device: torch.device) -> dict:
        """Processor call + copy to the device: the request batch as the model takes it."""
        data = self.processor(images=[r.image for r in self.requests], text=[r.prompt for r in self.requests],
                              return_tensors="pt", padding=True)
        self.input_ids = data["input_ids"]
        dtype = next(self.model.parameters()).dtype
        question = {k: v.to(device) for k, v in question_inputs(self.processor, self.model, self.requests).items()}
        return {"input_ids": data["input_ids"].to(device), "attention_mask": data["attention_mask"].to(device),
                "pixel_values": data["pixel_values"].to(device, dtype), **question}


def load_subject(name: str, overrides: dict, requests: list[Request], device: torch.device, dtype: str | None,
                 random_weights: bool) -> Subject:
    """Load (or build) a model on the device; its processor pads on the left, as batched generation does.

    A model whose weights alone exceed the device's free memory is refused before anything is allocated."""
    check_fits(weights_bytes(name, dict(random_weights=random_weights, dtype=parse_dtype(dtype, device), **overrides)),
               device, name)
    try:
        model, processor = load_model(name, random_weights=random_weights, device=device, dtype=dtype, **overrides)
    except torch.cuda.OutOfMemoryError:
        raise StfBenchError(f"{name} does not fit in the memory of {device_name(device)} with dtype {dtype}; "
                            f"use --dtype bfloat16 or a larger device") from None
    except StfBenchError as exc:
        if random_weights or name not in PRESETS:
            raise
        raise StfBenchError(f"{exc}\n(or pass --random-weights: time to first token does not depend on the "
                            f"weights' values)") from None
    processor.tokenizer.padding_side = "left"
    return Subject(model_label(name, overrides), model, processor, requests)


def _measure_once(subject: Subject, device: torch.device, clock: Clock, record: bool) -> None:
    """Preprocess and time one batch of `subject`; keep the timings when `record`."""
    box: dict = {}
    pre = clock.time(lambda: box.update(batch=subject.preprocess(device)), host=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        ttft = clock.time(lambda: first_token(subject.model, box["batch"]))
    except torch.cuda.OutOfMemoryError:
        raise StfBenchError(f"a batch of {len(subject.requests)} does not fit in the memory of "
                            f"{device_name(device)} with {subject.label}; lower --batch-size") from None
    except RuntimeError as exc:
        if "can't allocate memory" in str(exc) or "out of memory" in str(exc):
            raise StfBenchError(f"a batch of {len(subject.requests)} does not fit in memory with {subject.label}: "
                                f"{exc}; lower --batch-size") from None
        raise
    if device.type == "cuda":
        subject.peak_extra_bytes = max(subject.peak_extra_bytes, torch.cuda.max_memory_allocated(device) - base)
    if record:
        subject.preprocess_ms.append(pre)
        subject.ttft_ms.append(ttft)


def measure(subjects: list[Subject], device: torch.device, warmup: int, iters: int) -> None:
    """Warm-up runs, then `iters` timed batches per subject, interleaved in ABBA order."""
    if warmup < 0 or iters < 1:
        raise StfBenchError(f"--warmup must be >= 0 and --iters >= 1 (got {warmup} and {iters})")
    clock = Clock(device)
    for i in range(warmup + iters):
        order = subjects if i % 2 == 0 else subjects[::-1]
        for subject in order:
            _measure_once(subject, device, clock, record=i >= warmup)


def subject_figures(subject: Subject, device: torch.device, peak: tuple[str, float] | None) -> dict:
    """Everything measured on one model, per batch and per sample."""
    batch = len(subject.requests)
    method = getattr(subject.model.model, "token_method", None)
    seen = method.observed_schedules()[-batch:] if method is not None and method.varying_tokens else []
    # a count that differs per image cannot be decided on `meta`, where prefill FLOPs are counted: none then
    flops = {} if seen else count_prefill(subject.model, subject.input_ids)
    tflops_batch = sum(flops.values()) / 1e12 if not seen else None
    ttft = summarize(subject.ttft_ms)
    achieved = tflops_batch / (ttft["mean"] / 1e3) if not seen else None
    text_tokens = int(subject.input_ids.shape[1]) - subject.model.num_visual_tokens
    config = subject.model.config
    weight_bytes = sum(p.numel() * p.element_size() for p in subject.model.parameters())
    if device.type == "cuda":
        memory = {"peak_bytes": weight_bytes + subject.peak_extra_bytes,
                  "kind": "this model's weights + peak CUDA allocation during one TTFT call"}
    else:
        memory = {"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "kind": "peak resident memory of the whole process (all models loaded)"}
    per_image = {}
    if seen:  # the last timed batch's images, each one's count entering the LLM, and their mean
        first = [s[0] for s in seen]
        per_image = {"visual_tokens_per_image": first, "mean_visual_tokens": sum(first) / len(first)}
    return {
        "visual_tokens": per_image.get("mean_visual_tokens", subject.model.num_visual_tokens),
        **per_image,
        "text_tokens_padded": text_tokens,
        "tokenizer": describe_tokenizer(subject.processor.tokenizer, config.text_config.vocab_size),
        "attention": {"llm": config.text_config._attn_implementation,
                      "vision": config.vision_config._attn_implementation},
        "ttft_batch_ms": ttft,
        "ttft_per_sample_ms": summarize(subject.ttft_ms, batch),
        "preprocess_batch_ms": summarize(subject.preprocess_ms),
        "preprocess_per_sample_ms": summarize(subject.preprocess_ms, batch),
        "prefill_tflops_per_batch": tflops_batch,
        "prefill_tflops_components": {k: v / 1e12 for k, v in flops.items()},
        "achieved_tflops_per_s": achieved,
        "peak_fraction": achieved / peak[1] if peak and achieved is not None else None,
        "memory": memory,
        "weights_bytes": weight_bytes,
        "timings_ms": {"ttft_batch": subject.ttft_ms, "preprocess_batch": subject.preprocess_ms},
    }


def latency_report(subjects: list[Subject], device: torch.device, dtype: torch.dtype, warmup: int, iters: int,
                   prompts_source: str, peak_tflops: float | None = None) -> dict:
    """The whole report: device, settings, versions, each model's figures and, with two models, the speedup."""
    name = device_name(device)
    peak = lookup_peak(name, dtype) if device.type == "cuda" else None
    peak_source = f"datasheet dense peak of the {peak[0]}" if peak else None
    if peak_tflops:
        peak, peak_source = ("--peak-tflops", peak_tflops), "--peak-tflops"
    report = {
        "kind": "latency",
        "definition": DEFINITION,
        "device": name,
        "device_details": {"type": device.type, "peak_tflops": peak[1] if peak else None, "peak_source": peak_source,
                           "load_average_1m": os.getloadavg()[0]},
        "dtype": dtype_name(dtype),
        "batch_size": len(subjects[0].requests),
        "warmup": warmup,
        "iters": iters,
        "clock": "cuda events + synchronize" if device.type == "cuda" else "time.perf_counter",
        "interleaved": len(subjects) > 1,
        "prompts_source": prompts_source,
        "versions": library_versions(),
        "models": {s.label: subject_figures(s, device, peak) for s in subjects},
    }
    if len(subjects) == 2:
        base, model = report["models"].values()
        report["baseline"] = subjects[0].label
        report["speedup"] = base["ttft_per_sample_ms"]["mean"] / model["ttft_per_sample_ms"]["mean"]
    return report
