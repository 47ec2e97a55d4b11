"""Read and validate lmms-eval output (results JSON + per-task samples JSONL) and our FLOPs/latency JSON.

Everything is parsed and checked before the store is touched, so a corrupt or foreign file raises a StfBenchError
naming the file and what was expected, and nothing is written. lmms-eval 0.7.3 writes
`{output}/{model}/{stamp}_results.json` and `{stamp}_samples_{task}.jsonl` (EvaluationTracker), with
`results[task]["<metric>,<filter>"]`, `configs`, `config`, `n-samples`, `higher_is_better`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stf_bench.accuracy.sampling import is_samples_dirname
from stf_bench.args import parse_model_args
from stf_bench.errors import StfBenchError

RESULTS_SUFFIX = "_results.json"
SAMPLES_INFIX = "_samples_"
# lmms-eval's time stamps start with a digit (`20250101_120000`, or ISO dates in older versions); this keeps
# submission files such as `submissions/mmbench_en_dev_results.json` out of folder discovery.
STAMPED_RESULTS = re.compile(r"^\d[^/]*_results\.json$")
SAMPLE_BOOKKEEPING = {"doc_id", "doc", "doc_hash", "target", "arguments", "input", "resps", "filtered_resps",
                      "token_counts", "input_media"}
MODEL_NAME_KEYS = ("preset", "pretrained", "model", "model_name", "model_id", "path")
# What `stf-bench train` writes beside a checkpoint (stf_bench.train.outputs): the provenance `run` carries into its
# results (stf_bench.training) and the store keeps with the run (runs.training).
TRAINING_FILE = "training.json"
TRAINING_KEYS = ("stage", "preset", "model_args", "recipe", "data", "steps", "stf_bench_version")


@dataclass(frozen=True)
class SampleRecord:
    """One per-sample record: the doc, the model's answer and the per-doc metric values (a line of a samples JSONL,
    and what the store gives back)."""

    doc_id: int
    doc_hash: str | None
    target: str | None
    response: Any
    metrics: dict


@dataclass
class ParsedSamples:
    """A validated samples file."""

    task: str
    path: Path
    content_hash: str
    records: list[SampleRecord]


@dataclass(frozen=True)
class Score:
    """One `results[task]["metric,filter"]` value with its stderr and sample count."""

    task: str
    metric: str
    filter: str
    value: float
    stderr: float | None
    n: int | None


@dataclass
class ParsedRun:
    """A validated lmms-eval results file and the samples files that go with it."""

    path: Path
    content_hash: str
    model: str
    model_args: dict
    config: dict
    scores: list[Score]
    tasks: list[str]
    lmms_eval_version: str | None
    date: str | None
    git_hash: str | None
    samples: list[ParsedSamples] = field(default_factory=list)
    rows: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)  # task -> (scored, full set)
    checkpoint_fingerprint: str | None = None  # from the file itself (stf-bench's own output), else None
    lmms_eval_describe: str | None = None  # the file's `lmms_eval_version` field: git describe of lmms-eval's cwd
    training: dict | None = None  # provenance of a checkpoint `stf-bench train` made (`read_training`), else None


def sha256_file(path: Path) -> str:
    """Content hash of a file: the store's identity for what has been ingested."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Content hash of a JSON-able object (canonical: sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise StfBenchError(f"{path}: not a text file; expected an lmms-eval results JSON") from None
    except json.JSONDecodeError as exc:
        raise StfBenchError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); expected an lmms-eval "
                            f"results JSON (or a stf-bench flops/latency JSON)") from None
    except OSError as exc:
        raise StfBenchError(f"{path}: cannot be read ({exc.strerror})") from None


STDERR_KEY = re.compile(r"^(?P<metric>.+?)_stderr(?P<kind>_[a-z]+)?$")


def split_metric_key(key: str) -> tuple[str, str, str | None] | None:
    """'exact_match,none' -> ('exact_match', 'none', None); 'exact_match_stderr_clt,none' -> (..., '_clt'); else None.

    The third item is None for a metric value and the stderr kind ('' bootstrap, '_clt', '_clustered') for a stderr.
    """
    name, sep, filt = key.partition(",")
    if not sep:
        return None
    m = STDERR_KEY.match(name)
    if m:
        return m["metric"], filt, m["kind"] or ""
    return name, filt, None


def _stderr(metrics: dict, metric: str, filt: str) -> float | None:
    """lmms-eval's bootstrap stderr if it computed one, else its CLT stderr."""
    for kind in ("", "_clt"):
        value = _number(metrics.get(f"{metric}_stderr{kind},{filt}"))
        if value is not None:
            return value
    return None


def parse_results(path: Path, samples_paths: list[Path] | None = None, *, model: str | None = None,
                  model_args: str | dict | None = None) -> ParsedRun:
    """Validate an lmms-eval results JSON (and its samples files; None = find them beside it by time stamp)."""
    path = Path(path)
    data = _load_json(path)
    return _parse_results_data(path, data, samples_paths, model=model, model_args=model_args)


def _parse_results_data(path: Path, data: Any, samples_paths: list[Path] | None, *, model: str | None,
                        model_args: str | dict | None) -> ParsedRun:
    expected = ("expected an lmms-eval results file: a JSON object whose 'results' maps each task to "
                "{'<metric>,<filter>': value}")
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise StfBenchError(f"{path}: {expected}")
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    groups = {g for g, subs in (data.get("group_subtasks") or {}).items() if subs} \
        if isinstance(data.get("group_subtasks"), dict) else set()
    n_samples = data.get("n-samples") if isinstance(data.get("n-samples"), dict) else {}
    scores: list[Score] = []
    tasks: list[str] = []
    task_rows: dict[str, tuple[int | None, int | None]] = {}
    counted = rows_per_task(n_samples)
    for task, metrics in data["results"].items():
        if not isinstance(metrics, dict):
            raise StfBenchError(f"{path}: results[{task!r}] is {type(metrics).__name__}; {expected}")
        tasks.append(task)
        task_rows[task] = counted.get(task, (None, None))
        n = task_rows[task][0]
        for key, value in metrics.items():
            parts = split_metric_key(key)
            if parts is None or parts[2] is not None:
                continue
            number = _number(value)
            if number is None:
                if isinstance(value, str):
                    raise StfBenchError(f"{path}: results[{task!r}][{key!r}] is {value!r}, not a number; nothing "
                                        f"was stored")
                continue
            scores.append(Score(task, parts[0], parts[1], number, _stderr(metrics, parts[0], parts[1]), n))
        if task not in groups and not any(sc.task == task for sc in scores):
            raise StfBenchError(f"{path}: results[{task!r}] has no numeric metric value ('<metric>,<filter>': "
                                f"number); nothing was stored")
    if not tasks:
        raise StfBenchError(f"{path}: 'results' is empty; {expected}")
    if not isinstance(data.get("config"), dict) and model is None:
        raise StfBenchError(f"{path}: no 'config' object, so the model it evaluated is unknown (lmms-eval writes "
                            f"one into every results file); pass --model NAME to ingest it anyway")
    own = data.get("stf_bench") if isinstance(data.get("stf_bench"), dict) else None
    if own is not None and model is None and model_args is None:  # stf-bench's own output: what `run` records
        args, name, fingerprint = _own_identity(own)
    else:
        args = parse_model_args(model_args if model_args is not None else config.get("model_args"), strict=False)
        name, fingerprint = model or model_name(data, config, args), None
    if "data" not in args and run_data(data) == SAMPLES:  # e.g. lmms-eval on `stf-bench lmms-tasks` files
        args["data"] = SAMPLES
    run = ParsedRun(path, sha256_file(path), name, args, config, scores, tasks,
                    lmms_eval_version(own), _str(data.get("date")), _str(data.get("git_hash")),
                    rows=task_rows, checkpoint_fingerprint=fingerprint,
                    lmms_eval_describe=_str(data.get("lmms_eval_version")),
                    training=check_training(own.get("training"), path) if own is not None else None)
    if samples_paths is None:
        samples_paths = sibling_samples(path)
    metric_names = {t: _metric_names(data, t) for t in tasks}
    for sp in samples_paths:
        task = samples_task(Path(sp), path)
        if task not in tasks:
            raise StfBenchError(f"{sp}: samples for task {task!r}, which {path} does not contain "
                                f"(its tasks: {', '.join(tasks)})")
        run.samples.append(parse_samples(Path(sp), task, metric_names[task]))
    return run


def _own_identity(meta: dict) -> tuple[dict, str, str | None]:
    """(model arguments, model name, checkpoint fingerprint) of a `stf-bench run` results file, as `stf-bench run`
    records them itself (its data source, protocol and dtype among the arguments)."""
    args = dict(meta["model_args"]) if isinstance(meta.get("model_args"), dict) else {}
    args.update({k: meta.get(k) for k in ("protocol", "data", "dtype")})
    try:
        fingerprint = json.loads(meta["model_identity"])["weights"]
    except (KeyError, TypeError, ValueError):
        fingerprint = None
    return args, str(meta.get("model") or "unknown-model"), fingerprint if isinstance(fingerprint, str) else None


def lmms_eval_version(own: dict | None) -> str | None:
    """lmms-eval's package version for a results file: what stf-bench recorded (`stf_bench.lmms_eval_version`),
    else None. lmms-eval's own `lmms_eval_version` field is `branch@commit` of `git describe` in the folder it ran
    in (lmms_eval/utils.py, get_lmms_eval_version_string, 0.7.3): stf-bench's checkout for `stf-bench run`, any
    project's for a foreign run, so it is kept apart (ParsedRun.lmms_eval_describe), never taken for a version."""
    value = own.get("lmms_eval_version") if own else None
    return value if isinstance(value, str) and value else None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def model_name(data: dict, config: dict, args: dict) -> str:
    """The model a foreign results file evaluated: its model_args' `preset=`, `pretrained=`, ... (not lmms-eval's
    model class name, e.g. `stf_bench` for stf-bench's adapter), else its model_name, else config.model."""
    for key in MODEL_NAME_KEYS:
        if isinstance(args.get(key), str) and args[key]:
            return args[key]
    if isinstance(data.get("model_name"), str) and data["model_name"]:
        return data["model_name"]
    return str(config.get("model") or "unknown-model")


def _metric_names(data: dict, task: str) -> set[str]:
    names = set()
    hib = data.get("higher_is_better")
    if isinstance(hib, dict) and isinstance(hib.get(task), dict):
        names.update(hib[task])
    for key in data["results"].get(task, {}):
        parts = split_metric_key(key)
        if parts and parts[2] is None:
            names.add(parts[0])
    return names


def results_stamp(path: Path) -> str | None:
    """'20250101_120000' for '20250101_120000_results.json', else None."""
    return path.name[: -len(RESULTS_SUFFIX)] if path.name.endswith(RESULTS_SUFFIX) else None


def sibling_samples(results_path: Path) -> list[Path]:
    """The samples files lmms-eval wrote beside a results file (same time stamp)."""
    stamp = results_stamp(results_path)
    if stamp is None:
        return []
    return sorted(results_path.parent.glob(f"{glob_escape(stamp)}{SAMPLES_INFIX}*.jsonl"))


def glob_escape(text: str) -> str:
    """Escape glob metacharacters."""
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def samples_task(path: Path, results_path: Path) -> str:
    """The task name in `{stamp}_samples_{task}.jsonl`."""
    stamp = results_stamp(results_path)
    name = path.name
    prefix = f"{stamp}{SAMPLES_INFIX}" if stamp else None
    if prefix and name.startswith(prefix) and name.endswith(".jsonl"):
        return name[len(prefix): -len(".jsonl")]
    if SAMPLES_INFIX in name and name.endswith(".jsonl"):
        return name.split(SAMPLES_INFIX, 1)[1][: -len(".jsonl")]
    raise StfBenchError(f"{path}: expected an lmms-eval samples file named <stamp>_samples_<task>.jsonl")


def parse_samples(path: Path, task: str, metric_names: set[str]) -> ParsedSamples:
    """Validate a samples JSONL: one JSON object per line with an integer doc_id."""
    records: list[SampleRecord] = []
    seen: set[int] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise StfBenchError(f"{path}: cannot be read as text ({exc}); expected an lmms-eval samples JSONL") from None
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StfBenchError(f"{path}:{line_no}: not valid JSON ({exc.msg}); expected one lmms-eval sample "
                                f"record per line") from None
        if not isinstance(rec, dict) or isinstance(rec.get("doc_id"), bool) or not isinstance(rec.get("doc_id"), int):
            raise StfBenchError(f"{path}:{line_no}: expected an lmms-eval sample record (a JSON object with an "
                                f"integer 'doc_id', 'target', 'filtered_resps' and per-doc metric values)")
        if rec["doc_id"] in seen:
            raise StfBenchError(f"{path}:{line_no}: doc_id {rec['doc_id']} appears twice")
        seen.add(rec["doc_id"])
        names = metric_names or (set(rec) - SAMPLE_BOOKKEEPING)
        metrics = {k: rec[k] for k in rec if k in names}
        records.append(SampleRecord(rec["doc_id"], _str(rec.get("doc_hash")), _str(rec.get("target")),
                                    rec.get("filtered_resps"), metrics))
    if not records:
        raise StfBenchError(f"{path}: no sample records; expected one JSON object per line")
    return ParsedSamples(task, path, sha256_file(path), records)


def rows_per_task(n_samples: dict) -> dict[str, tuple[int | None, int | None]]:
    """(rows scored, rows in the full set) per task of lmms-eval's `n-samples` (effective, original); None where
    it does not say."""
    out: dict[str, tuple[int | None, int | None]] = {}
    for task, info in n_samples.items():
        info = info if isinstance(info, dict) else {}
        scored, full = info.get("effective"), info.get("original")
        out[task] = (scored if isinstance(scored, int) else None, full if isinstance(full, int) else None)
    return out


def partial_rows(rows: dict[str, tuple[int | None, int | None]]) -> dict[str, str]:
    """Tasks scored on fewer rows than their full set -> 'N of M rows' (from `rows_per_task`, or the store)."""
    return {task: f"{scored} of {full} rows" for task, (scored, full) in rows.items()
            if scored is not None and full is not None and scored < full}


# ---------------------------------------------------------------------------------------------- data origin
SAMPLES, LOCAL, HUB = "samples", "local", "hub"
LOCAL_BUILDERS = {"parquet", "json", "csv", "arrow"}


@dataclass(frozen=True)
class DataOrigin:
    """Where one benchmark's rows came from in a run, read from the task config lmms-eval wrote into its results.

    `data`: samples (the embedded sample data), local (a `--data-dir`), hub (a hub dataset or its cache) or None
    (not known); `root`: the data dir holding one folder per dataset (samples, local); `files`: the data files the
    config names, as written (lmms-eval keeps relative paths relative to the folder it ran in); `repo`: the hub
    dataset a config names instead of files."""

    benchmark: str
    data: str | None
    root: str | None = None
    files: tuple[str, ...] = ()
    repo: str | None = None


def _flat_files(data_files: Any) -> list[str]:
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, dict):
        return [f for v in data_files.values() for f in _flat_files(v)]
    if isinstance(data_files, list | tuple):
        return [f for v in data_files for f in _flat_files(v)]
    return []


def _origin_of_files(benchmark: str, folder: str, files: list[str]) -> DataOrigin:
    path = Path(files[0])
    if any(part.startswith("datasets--") for part in path.parts):  # the huggingface_hub cache
        return DataOrigin(benchmark, HUB, None, tuple(files))
    parents = [p for p in path.parents if p.name == folder]
    root = parents[0].parent if parents else None
    if root is not None and is_samples_dirname(root.name):
        return DataOrigin(benchmark, SAMPLES, str(root), tuple(files))
    return DataOrigin(benchmark, LOCAL, None if root is None else str(root), tuple(files))


def data_origins(results: dict) -> dict[str, DataOrigin]:
    """{benchmark: DataOrigin} of an lmms-eval results JSON, from its own task configs (`configs`); benchmarks
    stf-bench does not declare are left out."""
    from stf_bench.accuracy import of_task

    configs = results.get("configs") if isinstance(results.get("configs"), dict) else {}
    groups = results.get("group_subtasks") if isinstance(results.get("group_subtasks"), dict) else {}
    parent = {sub: group for group, subs in groups.items() if isinstance(subs, list) for sub in subs}
    out: dict[str, DataOrigin] = {}
    for task, config in configs.items():
        bench = of_task(task) or (of_task(parent[task]) if task in parent else None)
        if bench is None or not isinstance(config, dict):
            continue
        path = config.get("dataset_path")
        kwargs = config.get("dataset_kwargs") if isinstance(config.get("dataset_kwargs"), dict) else {}
        files = _flat_files(kwargs.get("data_files"))
        if path in LOCAL_BUILDERS and files:
            origin = _origin_of_files(bench.name, bench.source.folder, files)
        elif isinstance(path, str) and path and path not in LOCAL_BUILDERS and not files:
            origin = DataOrigin(bench.name, HUB, repo=path)
        else:
            origin = DataOrigin(bench.name, None)
        have = out.get(bench.name)
        if have is not None and have.data == origin.data and have.root == origin.root and have.repo == origin.repo:
            origin = DataOrigin(bench.name, origin.data, origin.root, tuple(dict.fromkeys(have.files + origin.files)),
                                origin.repo)
        elif have is not None:  # a group's subtasks on different data: say nothing certain
            origin = DataOrigin(bench.name, None)
        out[bench.name] = origin
    return out


def run_data(results: dict) -> str | None:
    """`samples` when any benchmark of the run was scored on the embedded sample data (such a run is not a
    benchmark score), else the one source every benchmark shares (local, hub), else None."""
    kinds = {o.data for o in data_origins(results).values()}
    if SAMPLES in kinds:
        return SAMPLES
    return kinds.pop() if len(kinds) == 1 else None


# ---------------------------------------------------------------------------------------------- FLOPs / latency
def check_flops(payload: Any, where: str = "flops record") -> dict:
    """Validate a `stf-bench flops` JSON object: model, convention, visual_tokens, tflops[, components]."""
    ok = (isinstance(payload, dict) and isinstance(payload.get("model"), str)
          and isinstance(payload.get("convention"), str)
          and isinstance(payload.get("visual_tokens"), int) and not isinstance(payload.get("visual_tokens"), bool)
          and _number(payload.get("tflops")) is not None)
    if not ok:
        raise StfBenchError(f"{where}: expected a stf-bench flops JSON object with 'model' (str), 'convention' "
                            f"(str), 'visual_tokens' (int) and 'tflops' (number)")
    return payload


def check_latency(payload: Any, where: str = "latency record") -> dict:
    """Validate a `stf-bench latency` JSON object: {models: {name: {...}}, device, speedup?}."""
    models = payload.get("models") if isinstance(payload, dict) else None
    if not isinstance(models, dict) or not models or not all(isinstance(v, dict) for v in models.values()):
        raise StfBenchError(f"{where}: expected a stf-bench latency JSON object with 'models' (name -> figures) "
                            f"and 'device'")
    return payload


# ---------------------------------------------------------------------------------------------- discovery
@dataclass
class Parsed:
    """Everything found under the given paths, validated: lmms-eval runs, flops and latency records."""

    runs: list[ParsedRun] = field(default_factory=list)
    flops: list[tuple[Path, dict]] = field(default_factory=list)
    latency: list[tuple[Path, dict]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def parse_paths(paths: list[str | Path], *, model: str | None = None, model_args: str | None = None) -> Parsed:
    """Validate every file under `paths` (files: by content; folders: lmms-eval results files, recursively)."""
    out = Parsed()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob(f"*{RESULTS_SUFFIX}") if q.is_file())
            stamped = [q for q in found if STAMPED_RESULTS.match(q.name)]
            out.skipped += [f"{q} (not an lmms-eval <stamp>_results.json name)" for q in found if q not in stamped]
            if not stamped:
                raise StfBenchError(f"{p}: no lmms-eval results file (<stamp>_results.json) in this folder or below; "
                                    f"pass the --output_path of an lmms-eval run, or a results JSON")
            out.runs += [parse_results(q, model=model, model_args=model_args) for q in stamped]
        elif p.is_file():
            if p.suffix == ".jsonl":
                raise StfBenchError(f"{p}: a samples file on its own cannot be ingested; pass its results JSON "
                                    f"(<stamp>_results.json) or the folder holding both")
            data = _load_json(p)
            if isinstance(data, dict) and "results" in data:
                out.runs.append(_parse_results_data(p, data, None, model=model, model_args=model_args))
            elif isinstance(data, dict) and "tflops" in data:
                out.flops.append((p, check_flops(data, str(p))))
            elif isinstance(data, dict) and "models" in data:
                out.latency.append((p, check_latency(data, str(p))))
            else:
                raise StfBenchError(f"{p}: not an lmms-eval results JSON (no 'results'), nor a stf-bench flops "
                                    f"('tflops') or latency ('models') JSON")
        else:
            raise StfBenchError(f"{p}: no such file or folder")
    return out


def read_training(model: str | os.PathLike) -> dict | None:
    """The provenance `stf-bench train` wrote beside the checkpoint `model` (its `training.json`: stage, preset,
    model arguments, recipe, data, steps, stf-bench version), or None when `model` is not a directory holding one
    (a preset, a hub id, a checkpoint made elsewhere). A file there that is not such a record is an error naming it,
    so that a run never records a provenance it cannot vouch for."""
    path = Path(model).expanduser() / TRAINING_FILE
    try:
        if not path.is_file():
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StfBenchError(f"{path}: cannot read the checkpoint's training record ({exc.strerror or exc}); make it "
                            f"readable, or remove it if the checkpoint was not made by `stf-bench train`") from None
    except ValueError as exc:
        raise StfBenchError(f"{path}: not JSON ({exc}); restore the file `stf-bench train` wrote, or remove it if "
                            f"the checkpoint was not made by stf-bench train") from None
    return check_training(record, path)


def check_training(record: Any, path: Path) -> dict | None:
    """`record` if it is a training record with every key `stf-bench train` writes (None stays None); else an error
    naming `path` and the first missing key."""
    if record is None:
        return None
    if not isinstance(record, dict):
        raise StfBenchError(f"{path}: the training record is a {type(record).__name__}, not a JSON object; restore "
                            f"the file `stf-bench train` wrote, or remove it")
    missing = [k for k in TRAINING_KEYS if k not in record]
    if missing:
        raise StfBenchError(f"{path}: the training record has no {missing[0]!r} (expected {', '.join(TRAINING_KEYS)}"
                            f"); restore the file `stf-bench train` wrote, or remove it")
    return record
