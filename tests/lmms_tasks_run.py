"""lmms-eval output as its own command line writes it from `stf-bench lmms-tasks` task files, without a subprocess.

`stf-bench lmms-tasks DIR --tasks pope [--data-dir D]`, then lmms-eval's `simple_evaluate` on those files with
`--model_args preset=llava-tiny,device=cpu` and a scripted model, saved by lmms-eval's EvaluationTracker into
`out/` (with `preset=`, which lmms-eval does not read as a model name, the files go straight into `out/`, as
`python -m lmms_eval ... --output_path out/ --log_samples` puts them).
"""

from __future__ import annotations

import shutil
from pathlib import Path

STAMP = "20250101_120000"


def pope_data_dir(root: Path, answer: str) -> Path:
    """A data dir holding the embedded POPE sample rows with every answer set to `answer`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stf_bench.accuracy import BENCHMARKS
    from stf_bench.data.samples import ensure_samples

    folder = BENCHMARKS["pope"].source.folder
    if (root / folder).exists():
        shutil.rmtree(root / folder)
    shutil.copytree(ensure_samples() / folder, root / folder)
    for file in (root / folder).rglob("*.parquet"):
        table = pq.read_table(file)
        table = table.set_column(table.schema.get_field_index("answer"), "answer", pa.array([answer] * len(table)))
        pq.write_table(table, file)
    return root


def lmms_eval_pope(base: Path, answer: str, data_dir: Path | None = None) -> Path:
    """lmms-eval's output (results + samples) of a model answering `answer` to every POPE question, on `data_dir`
    (None: the embedded sample data, lmms-tasks' default); returns the output folder."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker
    from lmms_eval.tasks import TaskManager
    from scripted_lm import ScriptedLM

    from stf_bench.cli import main
    from stf_bench.compat import drop_lmms_filelock_patch

    tasks = base / "tasks"
    argv = ["lmms-tasks", str(tasks), "--tasks", "pope"] + (["--data-dir", str(data_dir)] if data_dir else [])
    assert main(argv) == 0
    out = base / "out"
    tracker = EvaluationTracker(output_path=str(out))
    drop_lmms_filelock_patch()  # as our adapter does: lmms-eval 0.7.3's own patch needs filelock._api
    manager = TaskManager("WARNING", include_path=[str(tasks)], include_defaults=False)
    results = simple_evaluate(model=ScriptedLM(lambda _bench, _doc: answer), model_args="preset=llava-tiny,device=cpu",
                              tasks=["stf_pope"], task_manager=manager, log_samples=True, evaluation_tracker=tracker,
                              bootstrap_iters=0, datetime_str=STAMP, verbosity="WARNING")
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples, datetime_str=STAMP)
    tracker.save_results_samples(task_name="stf_pope", samples=samples["stf_pope"])
    return out
