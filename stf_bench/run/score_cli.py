"""`stf-bench score PATH`: re-score saved predictions with today's scorers, without loading a model.

PATH is what a run's `--output-dir` was given, one model folder inside it, or one samples JSONL (stf-bench's own,
or lmms-eval's `--log_samples` output for the same tasks). The newest run found is used: its predictions are
replayed through lmms-eval (a stand-in model answers each request with the saved answer for its task and doc id).
Rows are joined by doc id to the data the predictions were made on, which the run's own task config names
(lmms-eval writes it into the results JSON): the same files, found where the run read them, or nothing is scored.
The results are written in lmms-eval's layout in the folder holding the predictions and recorded in the store
with the current scorer versions, under the run's model (not the adapter's name). A protocol is prompts and
scoring together: a saved prediction whose prompt is not the one the protocol asks for is refused.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from lmms_eval.api.model import lmms

from stf_bench.accuracy import BENCHMARKS
from stf_bench.adapter.identity import RunState
from stf_bench.errors import StfBenchError
from stf_bench.store.cli import add_store_arguments

SAMPLES = re.compile(r"^(?P<date>.+)_samples_(?P<task>.+)\.jsonl$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `stf-bench score`."""
    parser.add_argument("path", help="a run's --output-dir, one model folder in it, or one samples JSONL")
    parser.add_argument("--protocol", choices=["llava", "lmms-eval"], default=None,
                        help="the protocol to score under (default: the one the predictions were made with)")
    parser.add_argument("--format", default="table", choices=["table", "json"],
                        help="table (default) or json: {task: {metric: value}} on stdout, nothing else")
    add_store_arguments(parser)


def newest_run(path: Path) -> tuple[Path, list[str] | None]:
    """(results JSON of the newest run under `path`, the lmms-eval tasks to score or None for all of them)."""
    if not path.exists():
        raise StfBenchError(f"{path} does not exist; pass a run's --output-dir, a model folder or a samples JSONL")
    if path.is_file():
        match = SAMPLES.match(path.name)
        if not match:
            raise StfBenchError(f"{path} is not a samples file (DATE_samples_TASK.jsonl, as lmms-eval writes them)")
        results = path.with_name(f"{match['date']}_results.json")
        if not results.is_file():
            raise StfBenchError(f"{path} has no {results.name} beside it: the run's results file is needed for its "
                                f"model, protocol and limit")
        return results, [match["task"]]
    found = [p for p in path.rglob("*_results.json") if not {".resume", "submissions"} & set(p.parts)]
    if not found:
        raise StfBenchError(f"no *_results.json under {path}; pass a run's --output-dir, a model folder or a samples "
                            f"JSONL")
    return max(found, key=lambda p: (p.name, str(p))), None


def read_predictions(results_path: Path, only: list[str] | None) -> dict[str, dict[int, dict]]:
    """{lmms-eval task: {doc_id: saved sample row}} of one run."""
    date = results_path.name.removesuffix("_results.json")
    out: dict[str, dict[int, dict]] = {}
    for file in sorted(results_path.parent.glob(f"{date}_samples_*.jsonl")):
        task = SAMPLES.match(file.name)["task"]
        if only is not None and task not in only:
            continue
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        out[task] = {int(row["doc_id"]): row for row in rows}
    if not out:
        raise StfBenchError(f"{results_path.parent} holds no samples files of the run {date}: it was run without "
                            f"--log_samples (stf-bench always writes them)")
    return out


def _answer(row: dict) -> str:
    """The saved answer of a sample row (stf-bench writes a string; lmms-eval a list, or nested lists)."""
    value: Any = row.get("filtered_resps", row.get("resps"))
    while isinstance(value, list):
        if not value:
            return ""
        value = value[0]
    return "" if value is None else str(value)


class ReplayLM(RunState, lmms):
    """An lmms-eval model that answers each request with the saved answer for its task and doc id."""

    is_simple = True

    def __init__(self, predictions: dict[str, dict[int, dict]], identity: str, protocol: str,
                 weights: str | None = None) -> None:
        super().__init__()
        self.predictions, self.identity, self.protocol, self.weights = predictions, identity, protocol, weights
        self.begin_run(None, show_progress=False)

    @property
    def device(self) -> str:
        return "cpu"

    def generate_until(self, requests) -> list[str]:
        out = []
        for request in requests:
            ctx, _gen, _visual, doc_id, task, _split = request.args
            saved = self.predictions.get(task, {}).get(int(doc_id))
            if saved is None:
                have = ", ".join(sorted(self.predictions)) or "none"
                raise StfBenchError(f"no saved prediction for {task} doc {doc_id} (the run's predictions are for: "
                                    f"{have}); score under the protocol and --limit the run used")
            if "input" in saved and saved["input"] != ctx:
                raise StfBenchError(f"{task} doc {doc_id}: the saved prompt differs from the one the {self.protocol} "
                                    f"protocol asks ({saved['input'][:60]!r} vs {ctx[:60]!r}); a protocol is prompts "
                                    f"and scoring together: score under the protocol the predictions were made with")
            out.append(_answer(saved))
        return out

    def loglikelihood(self, requests):
        raise StfBenchError("saved predictions hold generated answers only; loglikelihood tasks cannot be re-scored")

    def generate_until_multi_round(self, requests):
        raise StfBenchError("multi-round tasks cannot be re-scored from saved predictions")


def run_identity(results: dict) -> tuple[str, dict, str]:
    """(model name, model arguments, identity JSON) of a recorded run: what `stf-bench run` wrote, else what
    lmms-eval's config says (`preset=`/`pretrained=` in its model_args, as `stf-bench ingest` reads it), never the
    lmms-eval model's name (`stf_bench`, the adapter)."""
    from stf_bench.args import parse_model_args
    from stf_bench.store.ingest import model_name

    meta = results.get("stf_bench") or {}
    if meta.get("model"):
        return meta["model"], dict(meta.get("model_args") or {}), meta.get("model_identity") or json.dumps(
            {"model": meta["model"], "weights": None})
    config = results.get("config") or {}
    args = parse_model_args(config.get("model_args"), strict=False)  # a foreign file's: kept, not refused
    name = model_name(results, config, args)
    return name, args, json.dumps({"model": name, "weights": None})


def _absolute(files) -> set[Path]:
    return {Path(f).expanduser().resolve() for f in files}


def rescore_data(results: dict, results_path: Path, benchmarks: list[str]) -> tuple[str, str | None]:
    """(data, data_dir) of the rows the run's predictions were made on, read from its task configs; a StfBenchError
    naming what is missing when they cannot be found, or when what is there now is not the same files."""
    from stf_bench.data.samples import samples_dirname
    from stf_bench.data.sources import locate
    from stf_bench.store.ingest import HUB, SAMPLES, data_origins

    origins = data_origins(results)
    unknown = [b for b in benchmarks if b not in origins or origins[b].data is None]
    if unknown:
        raise StfBenchError(f"{results_path}: its task config does not name the data {unknown[0]} was predicted on "
                            f"(local files or a hub dataset), so it cannot be re-scored: joining it to other data by "
                            f"doc id would score answers against other questions")
    sources = {(origins[b].data, origins[b].root) for b in benchmarks}
    if len(sources) > 1:
        raise StfBenchError(f"{results_path}: the run read its benchmarks from different data "
                            f"({'; '.join(f'{b}: {origins[b].root or origins[b].data}' for b in benchmarks)}); "
                            f"re-score each task's samples file on its own")
    data, root = sources.pop()
    if data == HUB:
        wrong = [b for b in benchmarks if origins[b].repo and origins[b].repo != BENCHMARKS[b].source.repo]
        if wrong:
            raise StfBenchError(f"{wrong[0]}: the run read the hub dataset {origins[wrong[0]].repo}, not "
                                f"{BENCHMARKS[wrong[0]].source.repo} which stf-bench scores; it cannot be re-scored")
        return HUB, None
    missing = [(b, f) for b in benchmarks for f in origins[b].files if not Path(f).expanduser().is_file()]
    if missing and data == SAMPLES and root and Path(root).name == samples_dirname():
        return SAMPLES, None  # the same version of the embedded sample data, generated here (deterministic)
    if missing:
        bench, file = missing[0]
        where = "" if Path(file).is_absolute() else (" (a relative path, as lmms-eval was given it: run "
                                                     "`stf-bench score` in the folder lmms-eval ran in)")
        raise StfBenchError(f"{bench}: the data its predictions were made on, {file}, cannot be found{where}; "
                            f"restore it there to re-score (other data is never used in its place)")
    if root is None:
        bench = benchmarks[0]
        raise StfBenchError(f"{bench}: the run read {origins[bench].files[0]}, which is not inside a data dir laid "
                            f"out as docs/protocols.md says (DIR/{BENCHMARKS[bench].source.folder}/...); it cannot "
                            f"be re-scored")
    located = locate(benchmarks, data_dir=root)
    for bench in benchmarks:
        if _absolute(located[bench].files) != _absolute(origins[bench].files):
            raise StfBenchError(f"{bench}: {root} now holds other files for it ({', '.join(located[bench].files)}) "
                                f"than the run read ({', '.join(origins[bench].files)}); it cannot be re-scored")
    return data, root


def rescore_spec(results: dict, results_path: Path, tasks: list[str], protocol: str | None):
    """The RunSpec that replays a recorded run: its model, arguments, data and limit, written beside it."""
    from stf_bench.accuracy import of_task
    from stf_bench.run import task_specs as task_registry
    from stf_bench.run.runner import RunSpec

    meta = results.get("stf_bench") or {}
    recorded = meta.get("protocol") or ("llava" if all(t.startswith("stf_") for t in tasks) else "lmms-eval")
    protocol = protocol or recorded
    benchmarks = list(dict.fromkeys(b.name for b in map(of_task, tasks) if b)) or list(meta.get("tasks") or [])
    if not benchmarks:
        raise StfBenchError(f"none of the run's tasks ({', '.join(tasks)}) is one of stf-bench's benchmarks")
    if meta.get("tasks") and set(tasks) >= {task_registry.lmms_name(b, recorded) for b in meta["tasks"]}:
        benchmarks = list(meta["tasks"])
    config = results.get("config") or {}
    model, model_args, _ = run_identity(results)
    data, data_dir = rescore_data(results, results_path, benchmarks)
    return RunSpec(model=model, model_args=model_args, tasks=",".join(benchmarks), protocol=protocol,
                   data=data, data_dir=data_dir, limit=meta.get("limit", config.get("limit")),
                   output_dir=str(results_path.parent), model_dir="", resume=False, show_progress=False), recorded


def check_targets(predictions: dict[str, dict[int, dict]], sample_paths: list[Path]) -> str | None:
    """The first doc whose target in the re-scored samples is not the one saved with its prediction (the data
    changed under the same file names), or None."""
    for path in sample_paths:
        task = SAMPLES.match(path.name)["task"]
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else None
            saved = predictions.get(task, {}).get(int(row["doc_id"])) if row else None
            if saved is not None and "target" in saved and saved["target"] != row.get("target"):
                return (f"{task} doc {row['doc_id']}: the data gives the target {row.get('target')!r}, the "
                        f"prediction was made for {saved['target']!r}")
    return None


def run(args: argparse.Namespace) -> int:
    """Re-score, print like `stf-bench run`, record in the store."""
    from stf_bench.run.cli import record_and_print
    from stf_bench.run.runner import evaluate

    results_path, only = newest_run(Path(args.path))
    try:
        results = json.loads(results_path.read_text())
    except (OSError, ValueError) as exc:
        raise StfBenchError(f"{results_path} is not a readable results JSON ({exc})") from None
    predictions = read_predictions(results_path, only)
    spec, recorded = rescore_spec(results, results_path, list(predictions), args.protocol)
    if spec.protocol != recorded:
        raise StfBenchError(f"the predictions in {results_path.parent} were made under the {recorded} protocol; a "
                            f"protocol is prompts and scoring together, so they cannot be scored under "
                            f"{spec.protocol}: rerun the model with --protocol {spec.protocol}")
    _, _, identity = run_identity(results)
    weights = json.loads(identity).get("weights")  # the recorded model's fingerprint, as its run recorded it
    outcome = evaluate(spec, lm=ReplayLM(predictions, identity, spec.protocol, weights))
    mismatch = check_targets(predictions, outcome.sample_paths)
    if mismatch:
        for written in (outcome.results_path, *outcome.sample_paths):
            written.unlink(missing_ok=True)
        raise StfBenchError(f"{results_path}: not the data its predictions were made on ({mismatch}); nothing "
                            f"was re-scored")
    print(f"re-scored {results_path} -> {outcome.results_path}", file=sys.stderr)
    return record_and_print(outcome, spec, args, "score")
