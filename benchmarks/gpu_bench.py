"""One prepared run on a lent GPU: the full-size figures of docs/BENCHMARKS.md, step by step, each kept as it ends.

Steps, in this order, each in a process of its own with its own time limit (all inside `--budget` seconds):
  table9     llava-1.5-7b vs stf-7b, random weights, bf16, SDPA, VQAv2 prompts: TTFT per batch and per sample
             (mean, median, p90), achieved TFLOP/s, fraction of the device's peak, peak memory; batch 16, then 1
             with the same models (benchmarks/latency.py)
  methods    the training-free methods at their published settings against llava-1.5-7b (benchmarks/method_ttft.py)
  adapter    evaluation throughput at 7B: our lmms-eval adapter vs lmms-eval's llava_hf on the same requests,
             identical-answer count (benchmarks/adapter_throughput.py)
  precision  bf16 vs fp32 on the tiny presets: greedy answers changed (benchmarks/precision.py)
  train      one training step of STF vs LLaVA-1.5 at full size, finetune recipe, 128 rows as 16 per device x 8
             accumulation, after one warm-up step: DeepSpeed ZeRO-3 where importable and fitting, else the plain
             Trainer in bf16, as the output says (benchmarks/train_step.py)
A step that runs out of time is killed alone: what it wrote so far and every earlier step are kept.

Written under --out (at most 8 files, what the GPU tool brings back): `<step>.json` for each step that ran (its
figures, its Markdown block, the device and versions, and the Python distributions it imported), `gpu_bench.md`
(the Markdown blocks, appended as steps end), `summary.json` (each step's status and seconds, rewritten after
every step) and `log.txt` (the steps' own output).

`--dry-run` runs the same steps on the CPU with the full-size presets cut to one vision layer and one LLM layer
(two for the methods step, which times FastV alone there: at k=1 it needs a layer after it), tiny batches and one
timed iteration: the wiring, never a figure.

    bash scripts/gpu_bench.sh                                           # on the GPU machine: $OUT, carried wheels
    .venv/bin/python benchmarks/gpu_bench.py --dry-run --out /tmp/dry   # CPU wiring check (tests/benchmarks)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the other benchmarks, and stf_bench from the working tree

from stf_bench.files import write_text_atomically  # noqa: E402
from stf_bench.models.presets import cut_full_size as cut_presets  # noqa: E402  (train_step.py's dry run too)

DEFAULT_BUDGET_S = 540  # the whole run, inside one 600 s command of the GPU tool (the wheels' install comes first)
MIN_STEP_S = 15  # a step with less time left than this is not started
# An untrained model never emits its end token, so every answer runs to its task's max_new_tokens (llava protocol:
# 16 for ChartQA, 128 for most, 1024 for MMBench and ScienceQA). At batch 1 and 7B, llava_hf spends about that many
# decode steps per request: the 7B comparison takes the tasks capped at 16 or 128 tokens, and the tiny-preset
# comparison leaves out the 1024-token ones, so that each fits its time limit.
SHORT_ANSWER_TASKS = "chartqa,pope,vqav2_val"
CAPPED_128_TASKS = "gqa,textvqa_val,pope,vqav2_val,vizwiz_vqa_val,ocrbench,chartqa"


@dataclass(frozen=True)
class Step:
    """One step: its time limit, its settings on the GPU and in the dry run, and the function that runs it."""

    name: str
    limit_s: int
    title: str
    gpu: dict = field(default_factory=dict)
    dry: dict = field(default_factory=dict)
    run: Callable[[dict, Callable[[dict, str], None]], None] | None = None
    skipped: Callable[[], str | None] = lambda: None


def _device(params: dict):
    from stf_bench.devices import resolve_device

    return resolve_device(params["device"])


def run_table9(params: dict, emit: Callable[[dict, str], None]) -> None:
    """Table 9 at each batch size in turn, on the same two models (built once, at the largest batch)."""
    from latency import compare, rebatch

    from stf_bench.profile.latency import load_subject
    from stf_bench.profile.prompts import vqav2_requests

    device, sizes = _device(params), params["batch_sizes"]
    requests, source = vqav2_requests(max(sizes))
    subjects = [load_subject(name, {}, requests, device, params["dtype"], random_weights=True)
                for name in ("llava-1.5-7b", "stf-7b")]
    results, blocks = {}, []
    for size in sizes:
        where = source if size == max(sizes) else f"{source}; the first {size} of them"
        report, text = compare([rebatch(s, size) for s in subjects], device, params["warmup"], params["iters"], where)
        results[f"batch_{size}"] = report
        blocks.append(f"#### Table 9: llava-1.5-7b vs stf-7b, batch {size}\n\n{text}")
        emit(results, "\n\n".join(blocks))


def run_methods(params: dict, emit: Callable[[dict, str], None]) -> None:
    """Each training-free method at its published (128-token) setting against the base model, rows kept as they
    come (`method_ttft.method_settings`)."""
    from method_ttft import HEADER, method_settings, time_methods, with_overrides

    base, device = "llava-1.5-7b", _device(params)
    settings = with_overrides(method_settings(), params.get("set", []))
    if "only" in params:
        settings = {name: settings[name] for name in params["only"]}
    rows, lines = [], [HEADER.format(base=base, batch=params["batch_size"], dtype=params["dtype"])]
    for row in time_methods(base, settings, device, params["dtype"], params["batch_size"], params["warmup"],
                            params["iters"], random_weights=True):
        rows.append(row)
        lines.append(row["markdown_row"])
        report = row.get("report") or next((r["report"] for r in rows if "report" in r), None)  # None: refused
        note = f"\ndevice: {report['device']}; prompts: {report['prompts_source']}" if report else ""
        emit({"rows": rows}, "#### Training-free methods against llava-1.5-7b\n\n" + "\n".join(lines) + note)


def stub_decord() -> bool:
    """Dry run only: where decord is not installed (the test extras lack it), a `decord` module whose two names
    raise if used, so that lmms-eval's llava_hf (which imports them at module level, for video) loads for images.
    True when the stub was put in place. The GPU run carries the real decord (scripts/gpu_wheels.sh)."""
    import importlib.util
    import types

    if importlib.util.find_spec("decord") is not None:
        return False

    def unavailable(*args, **kwargs):
        raise RuntimeError("decord is a stand-in in gpu_bench's dry run: videos cannot be read")

    sys.modules["decord"] = types.SimpleNamespace(VideoReader=unavailable, cpu=unavailable, __spec__=None)
    return True


def run_adapter(params: dict, emit: Callable[[dict, str], None]) -> None:
    """Our adapter against lmms-eval's llava_hf on one exported llava-1.5-7b checkpoint."""
    from adapter_throughput import measure_throughput, parse_args, summary_lines

    stubbed = params.get("stub_decord") and stub_decord()

    args = parse_args(["--model", "llava-1.5-7b", "--random-weights", "--device", params["device"],
                       "--dtype", params["dtype"], "--tasks", params["tasks"], "--limit", str(params["limit"]),
                       "--batch-size", str(params["batch_size"]), "--repeats", str(params["repeats"]),
                       "--warmup-passes", str(params.get("warmup_passes", 1))])
    figures = {**measure_throughput(args), "decord": "stand-in (dry run)" if stubbed else "installed"}
    emit(figures, "#### Evaluation throughput, llava-1.5-7b: stf_bench adapter vs lmms-eval llava_hf\n\n"
         + "\n".join(f"- {line}" for line in summary_lines(figures)))


def run_precision(params: dict, emit: Callable[[dict, str], None]) -> None:
    """bf16 against fp32 greedy answers, one tiny preset at a time."""
    from precision import HEADER, compare_precision, markdown_row

    results, lines = [], [HEADER]
    for result in compare_precision(params["presets"], params["device"], params["tasks"], params["limit"],
                                    params["batch_size"]):
        results.append(result)
        lines.append(markdown_row(result))
        emit({"presets": results}, f"#### bfloat16 vs float32 greedy answers ({params['device']})\n\n"
             + "\n".join(lines))


def run_train(params: dict, emit: Callable[[dict, str], None]) -> None:
    """One training step (after one warm-up step on the GPU) of llava-1.5-7b and stf-7b with the same finetune recipe
    and batch, through `stf-bench train`'s Trainer (benchmarks/train_step.py)."""
    from train_step import markdown, parse_args, run

    argv = ["--models", "llava-1.5-7b,stf-7b", "--per-device-batch-size", str(params["per_device"]),
            "--global-batch-size", str(params["global_batch"]), "--steps", str(params["steps"]),
            "--warmup-steps", str(params["warmup"])]
    argv += ["--gpu"] if params["device"] == "cuda" else ["--pure-bf16"]
    report = run(parse_args(argv))
    emit(report, "#### One training step, llava-1.5-7b vs stf-7b (finetune)\n\n" + markdown(report))


STEPS = (
    Step("table9", 150, "Table 9: time to first token, llava-1.5-7b vs stf-7b",
         gpu=dict(device="cuda", dtype="bfloat16", batch_sizes=[16, 1], warmup=3, iters=20),
         dry=dict(device="cpu", dtype="bfloat16", batch_sizes=[2, 1], warmup=0, iters=1, llm_layers=1),
         run=run_table9),
    Step("methods", 130, "training-free methods against llava-1.5-7b",
         gpu=dict(device="cuda", dtype="bfloat16", batch_size=16, warmup=2, iters=10),
         dry=dict(device="cpu", dtype="bfloat16", batch_size=1, warmup=0, iters=1, llm_layers=2, only=["fastv"],
                  set=["fastv:k=1,r=0.75"]),
         run=run_methods),
    Step("adapter", 170, "evaluation throughput at 7B against lmms-eval's llava_hf",
         gpu=dict(device="cuda", dtype="bfloat16", tasks=SHORT_ANSWER_TASKS, limit=2, batch_size=16, repeats=2),
         dry=dict(device="cpu", dtype="bfloat16", tasks="chartqa", limit=1, batch_size=2, repeats=1, warmup_passes=0,
                  llm_layers=1, stub_decord=True),
         run=run_adapter),
    Step("precision", 90, "bf16 vs fp32 greedy answers on the tiny presets",
         gpu=dict(device="cuda", presets=["llava-tiny", "stf-tiny"], tasks=CAPPED_128_TASKS, limit=1000, batch_size=16),
         dry=dict(device="cpu", presets=["llava-tiny"], tasks="chartqa", limit=1, batch_size=2), run=run_precision),
    Step("train", 150, "one training step of STF vs LLaVA-1.5 at full size (paper appendix A.2)",
         gpu=dict(device="cuda", per_device=16, global_batch=128, steps=1, warmup=1),
         dry=dict(device="cpu", per_device=1, global_batch=1, steps=1, warmup=0, llm_layers=1), run=run_train),
)


def imported_distributions() -> list[str]:
    """The installed distributions (normalised names) that this process imported: checked against what the GPU
    machine's image holds plus what scripts/gpu_wheels.sh carries (tests/benchmarks/test_gpu_bench.py)."""
    import re
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    tops = {name.partition(".")[0] for name in list(sys.modules)}
    return sorted({re.sub(r"[-_.]+", "-", dist).lower() for top in tops for dist in owners.get(top, ())})


def environment() -> dict:
    """Device, versions and imports of this step's process."""
    import torch

    from stf_bench.profile.latency import library_versions

    return {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "CPU",
            "versions": library_versions(), "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "distributions": imported_distributions()}


def write_json(path: Path, data: dict) -> None:
    """Write whole or not at all (a step killed mid-write leaves the previous version)."""
    write_text_atomically(path, json.dumps(data, indent=2, default=str) + "\n", subject="step records", flag="--out")


CARRY_LIMIT = 64 * 2**20  # what one call of the GPU tool takes along: the working tree plus the carried paths


def wheel_name(path: Path) -> str:
    """`lmms_eval-0.7.3-py3-none-any.whl` -> `lmms-eval` (normalised as pip does)."""
    import re

    return re.sub(r"[-_.]+", "-", path.name.split("-")[0]).lower()


def carry_report(wheels: list[Path], tree: list[Path], limit: int = CARRY_LIMIT) -> tuple[bool, str]:
    """Whether the wheels and the working tree fit in one call's carry together, and one line saying so. Two
    versions of one package stop the install on the GPU machine (`pip --target` refuses), so they fail too."""
    sizes = {"wheels": sum(p.stat().st_size for p in wheels), "tree": sum(p.stat().st_size for p in tree)}
    total = sizes["wheels"] + sizes["tree"]
    names = [wheel_name(p) for p in wheels]
    twice = sorted({n for n in names if names.count(n) > 1})
    mib = {k: v / 2**20 for k, v in {**sizes, "total": total, "limit": limit}.items()}
    line = (f"{len(wheels)} wheels {mib['wheels']:.1f} MiB + working tree ({len(tree)} files) {mib['tree']:.1f} MiB "
            f"= {mib['total']:.1f} MiB of the {mib['limit']:.0f} MiB a GPU call carries")
    if twice:
        return False, f"{line}; more than one wheel of {', '.join(twice)}: empty the wheel folder and fetch again"
    if total > limit:
        return False, f"{line}: over by {(total - limit) / 2**20:.1f} MiB; carry fewer wheels"
    return True, line


def tree_files(root: Path) -> list[Path]:
    """The files a GPU call sends: tracked, and untracked but not ignored."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return [root / name for name in listed if name and (root / name).is_file()]


def run_step(step: Step, out: Path, dry_run: bool) -> int:
    """Inside the step's own process: run it, writing `<step>.json` each time it has something new."""
    params = step.dry if dry_run else step.gpu
    if dry_run:
        cut_presets(params.get("llm_layers", 1))
    path = out / f"{step.name}.json"
    record = {"step": step.name, "title": step.title, "dry_run": dry_run, "params": params, "complete": False}

    def emit(results: dict, markdown: str) -> None:
        write_json(path, {**record, "results": results, "markdown": markdown})

    emit({}, "")
    step.run(params, emit)
    data = json.loads(path.read_text())
    write_json(path, {**data, "complete": True, "environment": environment()})
    return 0


def step_command(step: Step, out: Path, dry_run: bool) -> list[str]:
    """The command that runs one step in a process of its own (killed with its children at its time limit)."""
    return [sys.executable, str(Path(__file__).resolve()), "--step", step.name, "--out", str(out),
            *(["--dry-run"] if dry_run else [])]


def _tail(path: Path, start: int, lines: int = 40) -> str:
    with path.open("rb") as f:
        f.seek(start)
        return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    """Run the steps in order, each with its own time limit, keeping every output as soon as its step ends."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-bench-out"),
                        help="output folder (default: $OUT, else ./gpu-bench-out)")
    parser.add_argument("--dry-run", action="store_true", help="CPU, full-size presets cut to a few layers")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="seconds for all steps together")
    parser.add_argument("--limit-scale", type=float, default=1.0,
                        help="multiply every step's time limit (a dry run on a busy CPU needs more)")
    parser.add_argument("--steps", default=",".join(s.name for s in STEPS), help="comma list, in the order given")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: run this one step in this process
    parser.add_argument("--check-carry", type=Path, metavar="WHEEL_DIR",
                        help="only check that WHEEL_DIR's wheels and the working tree fit in one call (exit 2 if not)")
    args = parser.parse_args(argv)
    if args.check_carry:
        fits, line = carry_report(sorted(args.check_carry.glob("*.whl")), tree_files(HERE.parent))
        print(f"gpu_bench: carry: {line}", file=sys.stdout if fits else sys.stderr)
        return 0 if fits else 2
    by_name = {s.name: s for s in STEPS}
    wanted = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in [*wanted, *([args.step] if args.step else [])] if s not in by_name]
    if unknown or not wanted:
        print(f"gpu_bench: unknown step {', '.join(unknown) or '(none given)'}; valid: {', '.join(by_name)}",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # the GPU machine reaches nothing: never wait on the hub
        os.environ.setdefault(key, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.step:
        return run_step(by_name[args.step], args.out, args.dry_run)

    start = time.monotonic()
    log, md = args.out / "log.txt", args.out / "gpu_bench.md"
    summary = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "dry_run": args.dry_run, "budget_s": args.budget, "host": platform.node(),
               "steps": [{"name": n, "status": "pending"} for n in wanted]}
    md.write_text(f"### gpu_bench {'dry run (CPU, layers cut: not figures)' if args.dry_run else 'run'}, "
                  f"{summary['started']}\n")
    log.touch()
    write_json(args.out / "summary.json", summary)
    worst = 0
    for entry in summary["steps"]:
        step = by_name[entry["name"]]
        left = args.budget - (time.monotonic() - start)
        reason = step.skipped()
        if reason is None and left < MIN_STEP_S:
            reason = f"not started: {left:.0f} s of the {args.budget:.0f} s budget left"
        if reason is not None:
            entry.update(status="skipped", reason=reason)
            text = f"\n### {step.title}\n\nskipped: {reason}\n"
        else:
            limit = min(step.limit_s * args.limit_scale, left)
            entry.update(status="running", limit_s=round(limit))
            write_json(args.out / "summary.json", summary)
            offset = log.stat().st_size
            with log.open("a") as f:
                f.write(f"\n===== {step.name} (limit {limit:.0f} s) =====\n")
                f.flush()
                proc = subprocess.Popen(step_command(step, args.out, args.dry_run), stdout=f, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                began = time.monotonic()
                try:
                    rc = proc.wait(timeout=limit)
                    status = "ok" if rc == 0 else f"failed (exit {rc})"
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)  # the step and anything it started
                    rc = proc.wait()
                    status = f"timed out after {limit:.0f} s (killed)"
            entry.update(status=status, rc=rc, seconds=round(time.monotonic() - began, 1))
            result = args.out / f"{step.name}.json"
            data = json.loads(result.read_text()) if result.exists() else {}
            partial = "" if data.get("complete") else " (partial: what finished before it stopped)"
            text = f"\n### {step.title}: {status}, {entry['seconds']} s{partial}\n\n{data.get('markdown', '')}\n"
            if rc != 0:
                worst = 1
                text += f"\nlast lines of its output:\n\n```\n{_tail(log, offset)}\n```\n"
        with md.open("a") as f:
            f.write(text)
        write_json(args.out / "summary.json", summary)
        print(f"gpu_bench: {entry['name']}: {entry['status']}" + (f" ({entry['seconds']} s)" if "seconds" in entry
                                                                  else f": {entry.get('reason', '')}"), flush=True)
    summary["seconds"] = round(time.monotonic() - start, 1)
    write_json(args.out / "summary.json", summary)
    print(md.read_text())
    return worst


if __name__ == "__main__":
    sys.exit(main())
