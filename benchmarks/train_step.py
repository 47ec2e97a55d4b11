"""Benchmark: seconds per optimizer step of STF against LLaVA-1.5 with the same recipe and the same batch.

Each model is trained with the StageTrainer that `stf-bench train` builds (stf_bench.train.cli.build_trainer: the
same data, labels, collator, sampler, trainable parameters and TrainingArguments), stage 2 (finetune) by default,
for `--warmup-steps` + `--steps` optimizer steps; the time of each step is taken between the Trainer's
`on_step_begin` and `on_step_end` callbacks (the device synchronised), the warm-up steps left out. STF's step is
shorter because its LLM sees 144 visual tokens per image instead of 576.

Paper (appendix A.2): 27.8 s (LLaVA-1.5) vs 18.6 s (STF) per iteration of 128 rows on 8 A6000 GPUs, 1.49x. The CPU
default (llava-tiny vs stf-tiny) checks the wiring and gives a ratio on tiny widths: not comparable with the paper.

`--gpu`: llava-1.5-7b vs stf-7b from random weights on one CUDA device. With DeepSpeed importable and its ZeRO-3
model states fitting the device (estimate below), LLaVA's zero3 config; otherwise the plain Trainer with the weights
in bfloat16 (AdamW states in bfloat16 too), and the output says which. The estimated per-GPU memory of the model
states is printed for each model (docs/training.md, "Memory": the ZeRO paper's 16 bytes per trained parameter).

    .venv/bin/python benchmarks/train_step.py                      # CPU: llava-tiny vs stf-tiny, finetune
    .venv/bin/python benchmarks/train_step.py --gpu --json out.json  # one GPU: llava-1.5-7b vs stf-7b
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # gpu_bench's cut_presets, and stf_bench from the working tree

from stf_bench.train.memory import parameter_counts  # noqa: E402  (stf-bench train's own count, on `meta`)

PAPER = {"llava_s": 27.8, "stf_s": 18.6, "speedup": 1.49, "setting": "global batch 128, 8 x A6000, DeepSpeed ZeRO-3"}
CPU_MODELS = ("llava-tiny", "stf-tiny")
GPU_MODELS = ("llava-1.5-7b", "stf-7b")
# bytes of model state per parameter (docs/training.md, "Memory")
MIXED_ADAM = 16  # ZeRO paper: 2 (16-bit weights) + 2 (16-bit gradients) + 12 (fp32 weights, momentum, variance)
PURE_BF16_ADAM = 8  # weights, gradients, momentum and variance all in bfloat16 (the plain --gpu run)
FROZEN_16BIT = 2  # a frozen parameter in 16 bits: its weights only


def model_state_bytes(total: int, trainable: int, mode: str, gpus: int = 1) -> int:
    """Estimated bytes per GPU of weights, gradients and optimizer states (activations not counted).

    mode: "zero3" (everything split over the GPUs: 16 bytes per trained parameter / gpus), "zero2" (16-bit weights
    whole, the rest split: 2 + 14 / gpus), "amp" (no ZeRO, fp32 weights under autocast: 4 + 4 + 8 = 16 bytes),
    "bf16" (no ZeRO, pure bfloat16: 8 bytes). Frozen parameters (the vision tower) count their weights only."""
    frozen = total - trainable
    if mode == "zero3":
        return (MIXED_ADAM * trainable + FROZEN_16BIT * frozen) // gpus
    if mode == "zero2":
        return 2 * total + (MIXED_ADAM - 2) * trainable // gpus
    if mode == "amp":
        return MIXED_ADAM * trainable + 4 * frozen
    if mode == "bf16":
        return PURE_BF16_ADAM * trainable + FROZEN_16BIT * frozen
    raise ValueError(f"unknown mode {mode!r}")


def choose_mode(gpu: bool, deepspeed: str, device_bytes: int | None, needs_zero3: int, pure_bf16: bool = False
                ) -> tuple[str, str]:
    """(mode, why): zero3 where asked or (auto) where DeepSpeed is importable and ZeRO-3's model states fit the
    device; bf16 (plain Trainer, bfloat16 weights) on other GPU runs and where asked; else fp32 on the CPU."""
    have = importlib.util.find_spec("deepspeed") is not None
    if deepspeed == "zero3":
        return "zero3", "DeepSpeed ZeRO-3 (asked for)"
    if not gpu:
        if pure_bf16:
            return "bf16", "plain Trainer, bfloat16 weights and AdamW states on the CPU (--pure-bf16)"
        return "fp32", "plain Trainer, float32 on the CPU (as `stf-bench train` runs there)"
    if deepspeed == "auto" and have and device_bytes and needs_zero3 < device_bytes:
        return "zero3", "DeepSpeed ZeRO-3 on one GPU (LLaVA's zero3 config)"
    why = ("DeepSpeed is not installed" if not have else "--deepspeed off" if deepspeed == "off" else
           f"ZeRO-3 on one GPU needs ~{needs_zero3 / 2**30:.0f} GiB of model states, more than the device's "
           f"{(device_bytes or 0) / 2**30:.0f} GiB")
    return "bf16", f"plain Trainer with bfloat16 weights and AdamW states, not DeepSpeed: {why}"


class StepClock:
    """A TrainerCallback that times each optimizer step (the device synchronised at both ends)."""

    def __init__(self, sync):
        self.sync, self.seconds, self._began = sync, [], 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.sync()
        self._began = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.sync()
        self.seconds.append(time.perf_counter() - self._began)

    def __getattr__(self, name):  # every other callback event: nothing to do
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def time_model(model: str, *, stage: str, per_device: int, global_batch: int, steps: int, warmup: int,
               mode: str, device: str, max_length: int = 2048, optim: str = "adamw_torch") -> dict:
    """Train `model` for warmup + steps optimizer steps with `stf-bench train`'s Trainer; the seconds of each."""
    import torch

    from stf_bench.train.cli import add_arguments, build_trainer, prepare

    if mode == "zero3":  # one process without a launcher: DeepSpeed still wants a process group
        for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511", "RANK": "0", "LOCAL_RANK": "0",
                           "WORLD_SIZE": "1"}.items():
            os.environ.setdefault(key, value)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cuda = device.startswith("cuda")
    with tempfile.TemporaryDirectory(prefix="train_step-") as out:
        args = parser.parse_args([
            "--stage", stage, "--model", model, "--random-weights", "--output-dir", out, "--max-steps",
            str(warmup + steps), "--per-device-batch-size", str(per_device), "--global-batch-size", str(global_batch),
            "--model-max-length", str(max_length), "--save-steps", str(10**9), "--logging-steps", str(10**9),
            "--optim", optim, "--bf16", "on" if mode == "zero3" else "off",
            *(["--deepspeed", "zero3"] if mode == "zero3" else [])])
        recipe, overrides, data = prepare(args)
        load = {"dtype": "bfloat16", "device": device} if mode == "bf16" else {"dtype": "float32"}
        built = build_trainer(args, recipe, data, overrides, Path(out), **load)
        clock = StepClock(torch.cuda.synchronize if cuda else (lambda: None))
        built.trainer.add_callback(clock)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        torch.manual_seed(recipe.seed)
        result = built.trainer.train()
        timed = clock.seconds[warmup:]
        figures = {
            "model": model, "visual_tokens": built.model.num_visual_tokens, "steps_timed": len(timed),
            "seconds_per_step": statistics.median(timed) if timed else None, "step_seconds": clock.seconds,
            "train_loss": result.training_loss, "trainable_parameters": built.trainable,
            "parameters": sum(p.numel() for p in built.model.parameters()),
            "weights_dtype": str(next(built.model.parameters()).dtype).removeprefix("torch."),
            "peak_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
            "process_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "batch": recipe.batch_line()}
        del built, clock
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return figures


def compare(models: tuple[str, str], *, stage: str, per_device: int, global_batch: int, steps: int, warmup: int,
            device: str, deepspeed: str = "auto", max_length: int = 2048, optim: str = "adamw_torch",
            pure_bf16: bool = False) -> dict:
    """Both models, one after the other, the same recipe and batch; the ratio of their median step times."""
    import torch

    gpu = device.startswith("cuda")
    device_bytes = torch.cuda.get_device_properties(0).total_memory if gpu else None
    estimates = {}
    for name in models:
        total, trainable = parameter_counts(name, stage)
        estimates[name] = {"parameters": total, "trainable": trainable,
                           **{f"{m}_gib": model_state_bytes(total, trainable, m) / 2**30 for m in ("zero3", "bf16")}}
    mode, why = choose_mode(gpu, deepspeed, device_bytes, max(model_state_bytes(e["parameters"], e["trainable"],
                                                                                "zero3") for e in estimates.values()),
                            pure_bf16)
    for name, e in estimates.items():
        print(f"train_step: {name}: {e['parameters']:,} parameters, {e['trainable']:,} trained in {stage}; model "
              f"states per GPU ~{e['zero3_gib']:.1f} GiB with ZeRO-3 on one GPU (16 B per trained parameter), "
              f"~{e['bf16_gib']:.1f} GiB in pure bf16 (8 B); activations not counted", file=sys.stderr)
    print(f"train_step: {why}", file=sys.stderr)
    runs = {name: time_model(name, stage=stage, per_device=per_device, global_batch=global_batch, steps=steps,
                             warmup=warmup, mode=mode, device=device, max_length=max_length, optim=optim)
            for name in models}
    base, stf = (runs[m]["seconds_per_step"] for m in models)
    return {"stage": stage, "device": torch.cuda.get_device_name(0) if gpu else "cpu", "mode": mode, "mode_why": why,
            "optim": optim, "per_device_batch_size": per_device, "global_batch_size": global_batch,
            "warmup_steps": warmup, "steps": steps, "model_max_length": max_length, "models": runs,
            "memory_estimates": estimates, "speedup": base / stf if base and stf else None, "paper": PAPER}


def markdown(report: dict) -> str:
    """The Markdown block of docs/BENCHMARKS.md."""
    a, b = report["models"].values()
    lines = [f"| model | visual tokens | trained parameters | s / step (median of {report['steps']}) | peak memory |",
             "|---|---:|---:|---:|---:|"]
    for r in (a, b):
        peak = r["peak_memory_bytes"] or r["process_peak_rss_bytes"]
        kind = "GPU" if r["peak_memory_bytes"] else "process RSS"
        lines.append(f"| {r['model']} | {r['visual_tokens']} | {r['trainable_parameters']:,} | "
                     f"{r['seconds_per_step']:.3f} | {peak / 2**30:.2f} GiB ({kind}) |")
    paper = report["paper"]
    lines += ["", f"Speedup {a['model']} / {b['model']}: **{report['speedup']:.2f}x**; stage {report['stage']}, "
              f"{a['batch']}, model_max_length {report['model_max_length']}, {report['warmup_steps']} warm-up step(s) "
              f"left out; device {report['device']}; {report['mode_why']}.",
              f"Paper (appendix A.2): {paper['llava_s']} s vs {paper['stf_s']} s per iteration, {paper['speedup']}x "
              f"({paper['setting']})" + ("." if report["mode"] == "zero3" else
                                         "; not the same setting, compare the ratio only with care.")]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="llava-1.5-7b vs stf-7b on cuda (default: tiny on CPU)")
    parser.add_argument("--models", default=None, help="base,stf presets (default llava-tiny,stf-tiny; --gpu: "
                                                       "llava-1.5-7b,stf-7b)")
    parser.add_argument("--stage", default="finetune", choices=("pretrain", "finetune"), help="(default finetune)")
    parser.add_argument("--per-device-batch-size", type=int, default=None, help="(default 4; --gpu 16, LLaVA-1.5's)")
    parser.add_argument("--global-batch-size", type=int, default=None,
                        help="rows per optimizer step (default 8; --gpu 128, the paper's iteration)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 3; --gpu 1)")
    parser.add_argument("--warmup-steps", type=int, default=1, help="steps run before timing (default 1)")
    parser.add_argument("--model-max-length", type=int, default=2048, help="(default 2048, LLaVA-1.5's)")
    parser.add_argument("--optim", default="adamw_torch", help="(default adamw_torch, LLaVA's)")
    parser.add_argument("--deepspeed", default="auto", choices=("auto", "zero3", "off"),
                        help="--gpu: auto = ZeRO-3 where DeepSpeed is importable and its model states fit (default)")
    parser.add_argument("--pure-bf16", action="store_true",
                        help="CPU: bfloat16 weights and AdamW states instead of float32 (half the memory)")
    parser.add_argument("--llm-layers", type=int, default=None,
                        help="cut the full-size presets' LLM (and vision tower) to this many layers, widths kept "
                             "(gpu_bench's dry run)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    args.models = tuple((args.models or ",".join(GPU_MODELS if args.gpu else CPU_MODELS)).split(","))
    if len(args.models) != 2:
        parser.error(f"--models takes two presets, base,stf; got {','.join(args.models)}")
    args.per_device_batch_size = args.per_device_batch_size or (16 if args.gpu else 4)
    args.global_batch_size = args.global_batch_size or (128 if args.gpu else 8)
    args.steps = args.steps or (1 if args.gpu else 3)
    return args


def run(args: argparse.Namespace) -> dict:
    """The comparison of the parsed flags (gpu_bench's train step calls this)."""
    if args.llm_layers:
        from gpu_bench import cut_presets

        cut_presets(args.llm_layers)
    return compare(args.models, stage=args.stage, per_device=args.per_device_batch_size,
                   global_batch=args.global_batch_size, steps=args.steps, warmup=args.warmup_steps,
                   device="cuda" if args.gpu else "cpu", deepspeed=args.deepspeed,
                   max_length=args.model_max_length, optim=args.optim, pure_bf16=args.pure_bf16)


def main(argv: list[str] | None = None) -> int:
    from stf_bench.errors import StfBenchError

    args = parse_args(argv)
    try:
        report = run(args)
    except StfBenchError as exc:
        print(f"train_step: {exc}", file=sys.stderr)
        return 2
    text = markdown(report)
    if args.json:
        args.json.write_text(json.dumps({**report, "markdown": text, "command": sys.argv}, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
