"""Throughput of the stf_bench lmms-eval adapter (batch 16) vs lmms-eval's built-in `llava_hf` (batch 1, all it
supports) on the same transformers-format checkpoint and the same requests, plus the fraction of identical answers.

The checkpoint is `llava-tiny` (or `--model llava-1.5-7b --random-weights` on a GPU) exported with
`stf_bench.models.export.export_llava_hf`. Requests are the generate_until requests lmms-eval builds for the
embedded sample data under the llava protocol. Our adapter runs with `image_aspect_ratio=crop` here, i.e. the
resize + centre crop llava-hf's processor does (the paper's protocol pads to square, which llava_hf cannot), so that
both adapters see the same pixels and their answers can be compared.

Needs `decord` (llava_hf imports it at module level): `.venv/bin/python -m pip install decord==0.6.0`. Never
torchvision. On a GPU machine with torch but no package index, `scripts/gpu_wheels.sh` (run where pip works)
fetches the rest as wheels; docs/BENCHMARKS.md has the command used there.

    .venv/bin/python benchmarks/adapter_throughput.py [--limit 8] [--tasks all] [--device cpu] [--batch-size 16]
        [--visual-cache MiB]  (0 = off: the vision tower runs for every request, as before the cache existed)
        [--repeats 3]  (timed passes per adapter after one untimed pass each, alternated; medians reported)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_requests(tasks: str, limit: int | None) -> tuple[dict, list]:
    """lmms-eval's generate_until requests for the sample data (llava protocol), and the task datasets they read."""
    from stf_bench.run import task_specs as registry
    from stf_bench.run.runner import load_tasks, quiet_loguru

    quiet_loguru("ERROR")
    setup = registry.resolve(registry.expand_tasks(tasks), "llava", data="samples")
    with contextlib.redirect_stdout(sys.stderr):
        task_dict = load_tasks(setup.task_specs, setup.task_manager)
    datasets, requests = {}, []
    from stf_bench.run.runner import _leaf_tasks

    for name, task in _leaf_tasks(task_dict):
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        datasets[name] = task.dataset
        requests += [r for r in task.instances if r.request_type == "generate_until"]
    return datasets, requests


def fresh(requests: list) -> list:
    """Copies whose gen_kwargs dicts are not shared (llava_hf pops `until` out of the dict it is given)."""
    from lmms_eval.api.instance import Instance

    out = []
    for r in requests:
        ctx, gen, *rest = r.args
        out.append(Instance(r.request_type, (ctx, dict(gen), *rest), r.idx, dict(r.metadata)))
    return out


def timed(lm, requests: list) -> tuple[list[str], float]:
    """Answers and wall seconds of one generate_until call over all the requests, as a fresh evaluation: our
    adapter's visual-token cache starts empty, as its `clean()` leaves it between lmms-eval evaluations (never call
    `clean()` on llava_hf: lmms-eval's base `clean()` deletes the model)."""
    from stf_bench.adapter.lmms_model import StfBenchLmms

    if isinstance(lm, StfBenchLmms):
        lm.clean()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    answers = lm.generate_until(fresh(requests))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return [a if isinstance(a, str) else a.text for a in answers], time.perf_counter() - start


def llava_hf_class() -> type:
    """lmms-eval's `LlavaHf`, or exit naming what it lacks: it imports decord at module level."""
    try:
        from lmms_eval.models.simple.llava_hf import LlavaHf
    except ModuleNotFoundError as exc:
        raise SystemExit(f"adapter_throughput: lmms-eval's llava_hf adapter cannot be imported ({exc}). It needs "
                         f"decord: {sys.executable} -m pip install decord==0.6.0") from None
    return LlavaHf


def pad_vocab_to_image_token(model: torch.nn.Module) -> None:
    """Give the image token an embedding row, as llava-hf's checkpoints have (32064 rows for 32000 text tokens).

    The full-size presets put `<image>` at id 32000, just outside Vicuna's 32000-token vocabulary; our model never
    embeds it, but transformers' `LlavaModel` (which lmms-eval's llava_hf runs) embeds every input id first and fails
    with "index out of range". The added rows are zero in the embedding and the LM head, so they change no hidden
    state and no argmax (a zero logit never beats the best of 32000 real ones)."""
    vocab = model.config.text_config.vocab_size
    if model.config.image_token_id < vocab:
        return
    model.resize_token_embeddings(model.config.image_token_id + 1, pad_to_multiple_of=64, mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[vocab:] = 0
        model.get_output_embeddings().weight[vocab:] = 0


def record_errors(model: torch.nn.Module) -> list[Exception]:
    """Every exception `model.generate` raises from now on (it still raises). llava_hf catches them, logs them and
    answers '': without this, a failing model would be timed as a very fast one."""
    errors: list[Exception] = []
    generate = model.generate

    def recorded(*args, **kwargs):
        try:
            return generate(*args, **kwargs)
        except Exception as exc:
            errors.append(exc)
            raise

    model.generate = recorded
    return errors


def positive(text: str) -> int:
    """argparse type: an int of at least 1 (0 passes or 0 rows would measure nothing)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's flags (the GPU run of scripts/gpu_bench.sh passes its own)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llava-tiny", help="an mlp2x_gelu preset (llava-tiny, llava-1.5-7b)")
    parser.add_argument("--random-weights", action="store_true", help="build a full-size preset untrained")
    parser.add_argument("--tasks", default="all")
    parser.add_argument("--limit", type=positive, default=8, help="rows per task (default 8)")
    parser.add_argument("--batch-size", type=positive, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32" if not torch.cuda.is_available() else "float16",
                        choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--visual-cache", default=None, help="our adapter's visual-token cache in MiB (0 = off)")
    parser.add_argument("--repeats", type=positive, default=3, help="timed passes per adapter, alternated (median)")
    parser.add_argument("--warmup-passes", type=int, default=1, choices=(0, 1),
                        help="untimed passes per adapter first (0: a wiring check, not a figure)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser.parse_args(argv)


def measure_throughput(args: argparse.Namespace) -> dict:
    """Both adapters on the same checkpoint and requests: seconds per pass, samples/s, speedup, identical answers."""
    if args.threads:
        torch.set_num_threads(args.threads)

    LlavaHf = llava_hf_class()
    from stf_bench import load_model
    from stf_bench.adapter.lmms_model import StfBenchLmms
    from stf_bench.models.export import export_llava_hf

    datasets, requests = build_requests(args.tasks, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        # built on the device (a 7B random init is slow on a CPU) and exported in the dtype both adapters load it
        # in: a 7B checkpoint in 16 bits is half the bytes of float32
        model, processor = load_model(args.model, random_weights=args.random_weights, device=args.device,
                                      dtype=getattr(torch, args.dtype))
        pad_vocab_to_image_token(model)
        export_llava_hf(model, processor, tmp)
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

        ours = StfBenchLmms(pretrained=tmp, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                            image_aspect_ratio="crop", visual_cache=args.visual_cache)
        ours.show_progress = False
        ours.task_dict = datasets
        theirs = LlavaHf(pretrained=tmp, device=args.device, device_map=args.device, dtype=args.dtype, batch_size=1)
        theirs.task_dict = datasets
        their_errors = record_errors(theirs.model)
        our_s, their_s = [], []
        with contextlib.redirect_stderr(open("/dev/null", "w")):  # llava_hf's progress bar
            # One untimed pass each first (kernel selection, allocator, lazy imports), then alternated timed passes
            # so that drift in the machine's load hits both adapters alike.
            for _ in range(args.warmup_passes):
                timed(ours, requests)
                timed(theirs, requests)
            for _ in range(args.repeats):
                our_answers, seconds = timed(ours, requests)
                our_s.append(seconds)
                their_answers, seconds = timed(theirs, requests)
                their_s.append(seconds)

    if their_errors:
        raise SystemExit(f"adapter_throughput: lmms-eval's llava_hf failed in {len(their_errors)} generate calls "
                         f"(it logs the error and answers '', which would be timed as a result): {their_errors[0]!r}")
    same = sum(a.strip() == b.strip() for a, b in zip(our_answers, their_answers))
    n = len(requests)
    ours_med, theirs_med = statistics.median(our_s), statistics.median(their_s)
    speedups = [b / a for a, b in zip(our_s, their_s)]
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    return {"model": args.model, "device": device, "dtype": args.dtype, "requests": n,
            "tasks": sorted({r.task_name for r in requests}), "repeats": args.repeats,
            "stf_bench": {"batch_size": args.batch_size, "visual_cache": args.visual_cache,
                          "seconds": [round(x, 2) for x in our_s], "samples_per_s": round(n / ours_med, 3)},
            "llava_hf": {"batch_size": 1, "seconds": [round(x, 2) for x in their_s],
                         "samples_per_s": round(n / theirs_med, 3)},
            "speedup": round(statistics.median(speedups), 2), "speedups": [round(x, 2) for x in speedups],
            "identical": same, "identical_fraction": round(same / n, 4),
            "with_text": sum(bool(a.strip()) for a in our_answers)}


def summary_lines(figures: dict) -> list[str]:
    """The figures in words: the lines printed without --json, and the GPU run's Markdown block."""
    n, same = figures["requests"], figures["identical"]
    ours, theirs = figures["stf_bench"], figures["llava_hf"]
    return [f"{n} requests ({', '.join(figures['tasks'])}) on {figures['device']}, {figures['dtype']}; "
            f"median of {figures['repeats']} passes",
            f"stf_bench (batch {ours['batch_size']}): {ours['samples_per_s']:.2f} samples/s (s per pass: {ours['seconds']})",
            f"llava_hf  (batch 1):  {theirs['samples_per_s']:.2f} samples/s (s per pass: {theirs['seconds']})",
            f"speedup {figures['speedup']:.2f}x per pass {figures['speedups']} (goal >= 4x); "
            f"identical answers {same}/{n} = {same / n:.1%} (goal >= 99%); answers with any text: "
            f"{figures['with_text']}/{n}" + (" (an untrained model's token ids mostly have no text in the byte-level "
                                            "stand-in tokenizer: identity is a weak check here)"
                                            if figures["with_text"] < n / 2 else "")]


def main(argv: list[str] | None = None) -> int:
    """Measure, then print the figures (JSON with --json)."""
    args = parse_args(argv)
    figures = measure_throughput(args)
    print(json.dumps(figures, indent=2) if args.json else "\n".join(summary_lines(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
