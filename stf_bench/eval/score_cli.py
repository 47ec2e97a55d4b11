"""`stf-bench score PATH`: re-score saved predictions with today's scorers, without loading a model.

PATH is what a run's `--output-dir` was given, one model folder inside it, or one samples JSONL (stf-bench's own,
or lmms-eval's `--log_samples` output for the same tasks). The newest run found is used: its predictions are
replayed through lmms-eval (a stand-in model answers each request with the saved answer for its task and doc id,
so rows are joined to the dataset by doc id), the results are written in lmms-eval's layout beside the originals
and recorded in the store with the current scorer versions. A protocol is prompts and scoring together: a saved
prediction whose prompt is not the one the protocol asks for is refused.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from lmms_eval.api.model import lmms

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


class ReplayLM(lmms):
    """An lmms-eval model that answers each request with the saved answer for its task and doc id."""

    is_simple = True

    def __init__(self, predictions: dict[str, dict[int, dict]], identity: str, protocol: str) -> None:
        super().__init__()
        self.predictions, self.identity, self.protocol = predictions, identity, protocol
        self.identity_hash = "replay"
        self.answer_cache = None
        self.skipped: dict = {}
        self.show_progress = False

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


def rescore_spec(results: dict, results_path: Path, tasks: list[str], protocol: str | None):
    """The RunSpec that replays a recorded run: its model, arguments, data and limit, written beside it."""
    from stf_bench.benchmarks import of_task
    from stf_bench.eval import tasks as task_registry
    from stf_bench.eval.runner import RunSpec

    meta = results.get("stf_bench") or {}
    recorded = meta.get("protocol") or ("llava" if all(t.startswith("stf_") for t in tasks) else "lmms-eval")
    protocol = protocol or recorded
    benchmarks = list(dict.fromkeys(b.name for b in map(of_task, tasks) if b)) or list(meta.get("tasks") or [])
    if not benchmarks:
        raise StfBenchError(f"none of the run's tasks ({', '.join(tasks)}) is one of stf-bench's benchmarks")
    if meta.get("tasks") and set(tasks) >= {task_registry.lmms_name(b, recorded) for b in meta["tasks"]}:
        benchmarks = list(meta["tasks"])
    config = results.get("config") or {}
    return RunSpec(model=meta.get("model") or config.get("model") or "unknown-model",
                   model_args=dict(meta.get("model_args") or {}), tasks=",".join(benchmarks), protocol=protocol,
                   data=meta.get("data") or "samples", data_dir=meta.get("data_dir"),
                   limit=meta.get("limit", config.get("limit")), output_dir=str(results_path.parent.parent),
                   resume=False, show_progress=False), recorded


def run(args: argparse.Namespace) -> int:
    """Re-score, print like `stf-bench run`, record in the store."""
    from stf_bench.eval.cli import record_and_print
    from stf_bench.eval.runner import evaluate

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
    identity = (results.get("stf_bench") or {}).get("model_identity") or json.dumps({"model": spec.model,
                                                                                     "weights": None})
    outcome = evaluate(spec, lm=ReplayLM(predictions, identity, spec.protocol))
    print(f"re-scored {results_path} -> {outcome.results_path}", file=sys.stderr)
    return record_and_print(outcome, spec, args, "score")
