"""One evaluation: model + tasks + protocol + data -> lmms-eval results, written in lmms-eval's layout.

`evaluate(spec)` builds the adapter (or reuses one), points its answer cache at `{output_dir}/.resume/<model>`,
runs `lmms_eval.evaluator.simple_evaluate`, checks that every task was scored honestly (no empty dataset, no
task whose rows were all skipped), writes `{output_dir}/{model}/{date}_results.json` and one
`{date}_samples_{task}.jsonl` per task in lmms-eval's format (atomically: the results file appears only once every
file is complete), and returns the paper-unit headline. One run at a time writes into an output folder (a lock).
Under `accelerate launch` / torchrun every rank calls it; rank 0 writes and returns the outcome, others get None.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stf_bench.accuracy import scorer_versions
from stf_bench.adapter.progress import progress_bars
from stf_bench.compat import lenient_images, lmms_evaluator_patched
from stf_bench.errors import StfBenchError
from stf_bench.files import write_files_atomically
from stf_bench.models.default_model import DEFAULT_MODEL

RESUME_DIR = ".resume"
LOCK_FILE = ".stf-bench.lock"  # in the output dir, held by the run (or `score`) writing there


@dataclass
class RunSpec:
    """Everything that defines a run (the CLI flags, as data)."""

    model: str = DEFAULT_MODEL
    model_args: dict = field(default_factory=dict)
    tasks: str = "all"
    protocol: str = "llava"
    data: str = "samples"
    data_dir: str | None = None
    limit: float | None = None
    batch_size: int = 8
    device: str | None = None
    dtype: str | None = None
    output_dir: str = "results"
    model_dir: str | None = None  # folder under output_dir the files go in; None: the model's name ("": output_dir)
    resume: bool = True
    show_progress: bool = True
    verbosity: str = "WARNING"


@dataclass
class RunOutcome:
    """What a finished run produced (rank 0 only)."""

    headline: dict[str, dict[str, float]]
    results: dict
    skipped: dict[str, list[dict]]
    results_path: Path
    sample_paths: list[Path]
    tasks: list[str]
    skipped_by_benchmark: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # benchmark -> rows scored (all of its subtasks)
    weights: str | None = None  # the answering model's weights fingerprint (`RunSummary.weights`)


def quiet_loguru(level: str = "WARNING") -> None:
    """Send lmms-eval's loguru output to stderr (its default sink is stdout, which `--format json` keeps clean)."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=level, format="{time:HH:mm:ss} | {level: <7} | {message}")


def build_model(spec: RunSpec):
    """The stf_bench lmms-eval model for `spec` (loading errors become StfBenchError)."""
    from stf_bench.adapter.lmms_model import StfBenchLmms

    return StfBenchLmms(preset=spec.model, device=spec.device, dtype=spec.dtype, batch_size=spec.batch_size,
                        **spec.model_args)


def model_args_string(spec: RunSpec) -> str:
    """lmms-eval style `pretrained=NAME,k=v,...`: names the output folder and is recorded in the results."""
    parts = [f"pretrained={spec.model}"] + [f"{k}={v}" for k, v in spec.model_args.items()]
    if spec.dtype:
        parts.append(f"dtype={spec.dtype}")
    return ",".join(parts)


def _datetime_str(output_dir: Path, model_dir: str) -> str:
    """A UTC timestamp that names no existing results file in the model's output folder."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d_%H%M%S")
    candidate, n = stamp, 1
    while (output_dir / model_dir / f"{candidate}_results.json").exists():
        n += 1
        candidate = f"{stamp}_{n}"
    return candidate


def _spec_name(spec: Any) -> str:
    return spec if isinstance(spec, str) else str(spec.get("task", spec)) if isinstance(spec, dict) else repr(spec)


def _leaf_tasks(task_dict: dict) -> Iterator[tuple[str, Any]]:
    """(name, Task) for every task of an lmms-eval task dict, groups flattened."""
    for name, obj in task_dict.items():
        if isinstance(obj, dict):
            yield from _leaf_tasks(obj)
        elif obj is not None:
            yield str(name), obj[1] if isinstance(obj, tuple) else obj


def load_tasks(task_specs: list, task_manager) -> dict:
    """Load every task once, one at a time, so that a failure names its task; refuse tasks with no rows.

    lmms-eval itself crashes with an IndexError on an empty dataset and retries a failing load five times before
    raising a bare RetryError: neither names the task or the fix.
    """
    from lmms_eval.tasks import get_task_dict

    merged: dict = {}
    for spec in task_specs:
        name = _spec_name(spec)  # before lmms-eval pops "task" out of the dict
        try:
            loaded = get_task_dict([spec], task_manager)
        except StfBenchError:
            raise
        except Exception as exc:
            cause = exc
            if type(exc).__name__ == "RetryError" and hasattr(exc, "last_attempt"):
                cause = exc.last_attempt.exception() or exc
            if isinstance(cause, IndexError) and "size 0" in str(cause):
                raise StfBenchError(f"task {name!r}: the dataset has no rows; check --data/--data-dir "
                                    f"(an empty or wrongly filtered snapshot)") from None
            if isinstance(cause, KeyError):
                raise StfBenchError(f"task {name!r}: the data has no column {cause}; its parquet files have another "
                                    f"schema (a different dataset or version?); check --data/--data-dir") from None
            raise StfBenchError(f"task {name!r} could not be loaded: {type(cause).__name__}: {cause}; "
                                f"check --data/--data-dir") from None
        for name, task in _leaf_tasks(loaded):
            if len(task.eval_docs) == 0:
                raise StfBenchError(f"task {name!r}: the dataset has no rows; check --data/--data-dir")
        merged.update(loaded)
    return merged


def _backend() -> str:
    """lmms-eval's collective backend: plain torch.distributed once a process group is up (as its own CLI picks).

    Its `accelerate` path gathers 0-d tensors, which comes back as a bare int on CPU/gloo and crashes.
    """
    import torch.distributed as dist

    return "torchrun" if dist.is_available() and dist.is_initialized() else "accelerate"


def end_distributed() -> None:
    """Tear down the process group accelerate set up, before interpreter exit: left to the exit handlers, gloo's
    threads can be destroyed while still joinable and the process aborts (SIGABRT) after its results are written."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _gather_skipped(lm) -> dict[str, list[dict]]:
    """Skipped rows of every rank, by task: [{"doc_id", "reason"}] sorted by doc_id."""
    import torch.distributed as dist

    local = [{"task": t, "doc_id": d, "reason": r} for (t, d), r in lm.skipped.items()]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        everything: list = [None] * dist.get_world_size()
        dist.all_gather_object(everything, local)
        local = [row for part in everything for row in part]
    by_task: dict[str, dict[int, dict]] = {}
    for row in local:
        by_task.setdefault(row["task"], {})[row["doc_id"]] = {"doc_id": row["doc_id"], "reason": row["reason"]}
    return {t: [rows[d] for d in sorted(rows)] for t, rows in sorted(by_task.items())}


def check_honest(results: dict, skipped: dict[str, list[dict]]) -> None:
    """Refuse results that would look like scores but are not: empty datasets, tasks with every row skipped."""
    from stf_bench.run.task_specs import rows_scored

    for task, counts in results.get("n-samples", {}).items():
        rows = rows_scored(counts)
        if counts.get("original", 0) == 0 or rows == 0:
            raise StfBenchError(f"task {task!r} has no rows in the selected data; check --data/--data-dir "
                                f"(the dataset is empty) or raise --limit")
        n_skipped = len(skipped.get(task, []))
        if n_skipped >= rows:
            reasons = sorted({row["reason"] for row in skipped[task]})
            raise StfBenchError(f"task {task!r}: all {n_skipped} rows were skipped ({'; '.join(reasons)[:300]}); "
                                f"fix the dataset's images, nothing was scored")


@contextlib.contextmanager
def output_dir_lock(output_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `{output_dir}/.stf-bench.lock` while a run writes there; a second run (or `score`)
    into the same folder is refused at once with one line, instead of both writing the same files (two runs
    started in the same second picked the same file names and appended to each other's samples).

    `flock` belongs to the open file: the OS releases it when the process ends, however it ends (SIGKILL
    included), so a crashed run never leaves the folder locked. The file is removed when the lock is released
    (whoever locks checks that the file it locked is still the one at the path). Only rank 0 writes, so only it
    locks.
    """
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no lock
        yield
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StfBenchError(f"--output-dir {output_dir} is in use by another stf-bench run ({holder}); wait for "
                                f"it to finish or pass another --output-dir") from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file as we opened it: lock the one at the path now
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {_dt.datetime.now().isoformat(timespec='seconds')}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # nothing left in the folder (a killed run leaves the file, unlocked)
        os.close(fd)  # releases the lock


def _sample_lines(samples: list[dict]) -> Iterator[str]:
    """One JSON line per sample, as lmms-eval 0.7.3's `EvaluationTracker.save_results_samples` writes them
    (lmms_eval/loggers/evaluation_tracker.py): prompt as `input`, single responses unwrapped, `resps` dropped when
    equal to `filtered_resps`, `target` as a string, no `arguments` or `doc`."""
    from lmms_eval.utils import handle_non_serializable, sanitize_list

    for sample in samples:
        sample["input"] = sample["arguments"][0]
        for key in ("resps", "filtered_resps"):
            sample[key] = sanitize_list(sample[key])
            if isinstance(sample[key], list) and len(sample[key]) == 1:
                sample[key] = sample[key][0]
        resps, filtered = sample["resps"], sample["filtered_resps"]
        if resps == filtered or isinstance(resps, list) and len(resps) == 1 and resps[0] == filtered:
            sample.pop("resps")
        sample["target"] = str(sample["target"])
        sample.pop("arguments")
        sample.pop("doc")
        yield json.dumps(sample, default=handle_non_serializable, ensure_ascii=False) + "\n"


def _results_text(tracker, results: dict, samples: dict) -> str:
    """The results JSON as lmms-eval 0.7.3's `EvaluationTracker.save_results_aggregated` writes it: the results
    with each task's sample hash and the run's general config."""
    from dataclasses import asdict

    from lmms_eval.utils import handle_non_serializable, hash_string

    tracker.general_config_tracker.log_end_time()
    results["task_hashes"] = {task: hash_string("".join(f"sample_{i}" + s["doc_hash"] for i, s in enumerate(rows)))
                              for task, rows in samples.items()}
    results.update(asdict(tracker.general_config_tracker))
    return json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False)


def _save(tracker, results: dict, samples: dict, datetime_str: str, output_dir: Path, model_dir: str
          ) -> tuple[Path, list[Path]]:
    """Write the per-task samples and the results in lmms-eval's layout and format, atomically: the results JSON
    appears last and only when every file is complete (lmms-eval's own tracker appends line by line and logs a
    failed write as a warning, which left a valid-looking results file beside a truncated samples file)."""
    # simple_evaluate logs the model object itself as `model_source`, which the tracker deep-copies (`asdict`) when
    # it saves: a second copy of every weight (a 7B bf16 run went past 24 GB). Name the adapter instead.
    tracker.general_config_tracker.model_source = "stf_bench"
    tracker.general_config_tracker.model_name_sanitized = model_dir  # the folder it writes into (spec.model_dir)
    folder = output_dir / model_dir
    date_id = datetime_str.replace(":", "-")
    results_path = folder / f"{date_id}_results.json"
    tasks = [t for t in results["configs"] if t in samples]
    sample_paths = [folder / f"{date_id}_samples_{t}.jsonl" for t in tasks]
    results_text = _results_text(tracker, results, samples)  # hashes the samples before they are rewritten
    write_files_atomically([*((p, _sample_lines(samples[t])) for p, t in zip(sample_paths, tasks)),
                            (results_path, [results_text])], output_dir, subject="results")
    return results_path, sample_paths


def training_record(model: str) -> dict | None:
    """The provenance `stf-bench train` wrote for `model`: beside a checkpoint directory, or, for a preset with
    shipped weights (`stf-tiny-trained`), the record shipped with them; None for anything else (a preset built from
    a seed, a hub id, a checkpoint made elsewhere)."""
    from stf_bench.models.default_model import DEFAULT_DIR
    from stf_bench.models.presets import PRESETS
    from stf_bench.store.ingest import read_training

    preset = PRESETS.get(model)
    return read_training(DEFAULT_DIR if preset is not None and preset.shipped else model)


def evaluate(spec: RunSpec, lm=None, task_registry=None) -> RunOutcome | None:
    """Run `spec` end to end; returns the outcome on rank 0 and None on other ranks.

    `lm`: an adapter to reuse (else built from `spec`); `task_registry`: anything with `expand_tasks`, `resolve`
    and `paper_scores` (default: stf_bench.run.task_specs, every declared benchmark). The output folder is locked
    for the whole run (`output_dir_lock`).
    """
    with output_dir_lock(Path(spec.output_dir)):
        return _evaluate(spec, lm, task_registry)


def _evaluate(spec: RunSpec, lm, task_registry) -> RunOutcome | None:
    """`evaluate` inside the output folder's lock."""
    if task_registry is None:
        from stf_bench.run import task_specs as task_registry

    names = task_registry.expand_tasks(spec.tasks)
    setup = task_registry.resolve(names, spec.protocol, data=spec.data, data_dir=spec.data_dir)
    training = training_record(spec.model)  # what `stf-bench train` recorded, checked before work

    import lmms_eval.evaluator as lmms_evaluator
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker
    from lmms_eval.utils import sanitize_model_name

    quiet_loguru(spec.verbosity)
    with contextlib.redirect_stdout(sys.stderr), lenient_images(), progress_bars(spec.show_progress):
        task_dict = load_tasks(setup.task_specs, setup.task_manager)  # data errors surface before a model loads
    lm = lm if lm is not None else build_model(spec)
    output_dir = Path(spec.output_dir)
    cache = None
    if spec.resume:
        from stf_bench.adapter.resume import AnswerCache

        cache = AnswerCache(output_dir / RESUME_DIR / lm.identity_hash, lm.rank)
    lm.begin_run(cache, spec.show_progress)

    model_args = model_args_string(spec)
    model_dir = sanitize_model_name(spec.model) if spec.model_dir is None else spec.model_dir
    datetime_str = _datetime_str(output_dir, model_dir)
    tracker = EvaluationTracker(output_path=str(output_dir))
    # what lmms-eval and its tasks read from its CLI namespace (submission files go under output_path/submissions)
    cli_args = argparse.Namespace(process_with_media=False, reasoning_tags=None, agentic_trace_mode="basic",
                                  output_path=str(output_dir / model_dir), log_samples_suffix="",
                                  stf_bench_protocol=spec.protocol, stf_bench_data=spec.data)
    with (contextlib.redirect_stdout(sys.stderr), lmms_evaluator_patched(task_dict), lenient_images(),
          progress_bars(spec.show_progress)):
        results = lmms_evaluator.simple_evaluate(
            model=lm, model_args=model_args, tasks=setup.task_specs, task_manager=setup.task_manager,
            limit=spec.limit, log_samples=True, evaluation_tracker=tracker, bootstrap_iters=0,
            cli_args=cli_args, datetime_str=datetime_str, verbosity=spec.verbosity,
            batch_size=spec.batch_size, device=str(lm.device), distributed_executor_backend=_backend(),
        )
    skipped = _gather_skipped(lm)
    if results is None:  # not rank 0
        return None
    check_honest(results, skipped)
    samples = results.pop("samples")
    headline = task_registry.paper_scores(results, setup.lmms_names)
    results["config"]["model"] = spec.model
    ran = lm.run_summary()
    results["stf_bench"] = {
        "model": spec.model, "model_args": spec.model_args, "model_identity": ran.identity,
        "tasks": names, "protocol": spec.protocol, "data": spec.data, "data_dir": spec.data_dir,
        "dtype": spec.dtype,
        "limit": spec.limit, "headline": headline, "skipped": skipped,
        "n_skipped": {t: len(rows) for t, rows in skipped.items()},
        "world_size": ran.world_size, "resumed_answers": ran.resumed_answers,
        "scorer_versions": scorer_versions.for_tasks(list(setup.lmms_names.values())),
        "lmms_eval_version": _package_version("lmms_eval"), "training": training,
    }
    if ran.method_summary is not None:  # e.g. PruMerge+'s adaptive token counts
        results["stf_bench"]["method_summary"] = ran.method_summary
    results_path, sample_paths = _save(tracker, results, samples, datetime_str, output_dir, model_dir)
    groups = results.get("group_subtasks", {})
    by_benchmark = skipped_by_benchmark(skipped, setup.lmms_names, groups)
    return RunOutcome(headline, results, skipped, results_path, sample_paths, names, by_benchmark,
                      rows_by_benchmark(results.get("n-samples", {}), setup.lmms_names, groups), ran.weights)


def _package_version(name: str) -> str | None:
    """An installed package's version (lmms-eval's own results record only `git describe` of its working folder)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def rows_by_benchmark(n_samples: dict[str, dict], lmms_names: dict[str, str], groups: dict[str, list]
                      ) -> dict[str, int]:
    """Rows scored per benchmark name, from lmms-eval's n-samples (a group's subtasks summed)."""
    from stf_bench.run.task_specs import rows_scored

    return {bench: sum(rows_scored(n_samples.get(task, {})) for task in {lmms_name, *groups.get(lmms_name, [])})
            for bench, lmms_name in lmms_names.items()}


def skipped_by_benchmark(skipped: dict[str, list], lmms_names: dict[str, str], groups: dict[str, list]
                         ) -> dict[str, int]:
    """Skipped-row counts per benchmark name (a benchmark may be an lmms-eval group of subtasks)."""
    out = {}
    for bench, lmms_name in lmms_names.items():
        members = {lmms_name, *groups.get(lmms_name, [])}
        count = sum(len(rows) for task, rows in skipped.items() if task in members)
        if count:
            out[bench] = count
    return out


def record_in_store(outcome: RunOutcome, spec: RunSpec, db_path: str | None = None) -> str:
    """Record the run (results + samples) in the results store (`stf_bench.store`, $STF_BENCH_DB); returns a note."""
    from stf_bench.store.db import collect_environment, open_store

    meta = outcome.results["stf_bench"]
    environment = {**collect_environment(), "source": "stf-bench run", "torch_device": outcome.results["config"].get("device"),
                   "world_size": meta["world_size"]}
    with open_store(db_path) as store:
        records = store.record_lmms_eval(
            outcome.results_path, outcome.sample_paths, model=spec.model,
            model_args={**spec.model_args, "protocol": spec.protocol, "data": spec.data, "dtype": spec.dtype},
            checkpoint_fingerprint=outcome.weights, protocol=spec.protocol,
            environment=environment)
        return f"recorded in the results store {store.path} (run {records[0].id})"


def json_ready(headline: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Headline with plain floats, for `--format json`."""
    return {task: {metric: float(value) for metric, value in metrics.items()} for task, metrics in headline.items()}
