"""Real lmms-eval output for the store and report tests, written by lmms-eval 0.7.3 itself.

A tiny deterministic model (an `lmms_eval.api.model.lmms` subclass that answers from the doc) is evaluated by
`lmms_eval.evaluator.simple_evaluate` on small parquet datasets written here (lmms-eval's own task definitions for
pope, scienceqa_img, mmbench_en_dev and chartqa, with the dataset path overridden to the local files), and the
results/samples files are written by lmms-eval's `EvaluationTracker`, exactly as `lmms-eval --output_path` does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

N_DOCS = 24
TASKS = ("pope", "scienceqa_img", "mmbench_en_dev", "chartqa")
_CACHE: dict[str, Path] = {}


def _image(i: int) -> Image.Image:
    return Image.new("RGB", (8, 8), ((37 * i) % 256, (91 * i) % 256, (13 * i) % 256))


def write_datasets(folder: Path) -> dict[str, Path]:
    """One small parquet file per task, in the column schema of the real dataset."""
    from datasets import Dataset, Features, Sequence, Value
    from datasets import Image as HFImage

    folder.mkdir(parents=True, exist_ok=True)
    n = N_DOCS
    tables = {
        "pope": ({"id": [str(i) for i in range(n)], "question_id": [str(i) for i in range(n)],
                  "question": [f"Is there a thing {i} in the image?" for i in range(n)],
                  "answer": ["yes" if i % 2 == 0 else "no" for i in range(n)],
                  "image_source": [f"img{i}" for i in range(n)], "image": [_image(i) for i in range(n)],
                  "category": [("adversarial", "popular", "random")[i % 3] for i in range(n)]},
                 {"image": HFImage()}),
        "scienceqa_img": ({"image": [_image(i) for i in range(n)], "question": [f"Question {i}?" for i in range(n)],
                           "choices": [["red", "green", "blue"] for _ in range(n)], "answer": [i % 3 for i in range(n)],
                           "hint": ["" for _ in range(n)], "task": ["closed choice"] * n, "grade": ["grade1"] * n,
                           "subject": ["natural science"] * n, "topic": ["colors"] * n, "category": ["c"] * n,
                           "skill": ["s"] * n, "lecture": [""] * n, "solution": [""] * n},
                          {"image": HFImage(), "choices": Sequence(Value("string"))}),
        # MMBench dev: 8 questions, each with 3 circular copies at index + k * 1e6 (rotated answers)
        "mmbench_en_dev": _mmbench_rows(),
        "chartqa": ({"type": ["human_test" if i % 2 else "augmented_test" for i in range(n)],
                     "question": [f"What is bar {i}?" for i in range(n)], "answer": [str(10 + i) for i in range(n)],
                     "image": [_image(i) for i in range(n)]}, {"image": HFImage()}),
    }
    paths = {}
    for task, (columns, special) in tables.items():
        features = Features({k: special.get(k, _value_feature(v[0])) for k, v in columns.items()})
        path = folder / f"{task}.parquet"
        Dataset.from_dict(columns, features=features).to_parquet(str(path))
        paths[task] = path
    return paths


def _value_feature(example):
    from datasets import Value

    return Value("int64") if isinstance(example, int) else Value("string")


def _mmbench_rows():
    from datasets import Image as HFImage

    rows: dict[str, list] = {k: [] for k in ("index", "question", "hint", "answer", "A", "B", "C", "D", "category",
                                             "image", "source", "L2-category", "comment", "split")}
    options = ["cat", "dog", "bird", "fish"]
    for q in range(8):
        for copy in range(3):
            rot = options[copy:] + options[:copy]
            right = options[q % 4]
            rows["index"].append(q + copy * 1_000_000)
            rows["question"].append(f"Which animal is shown in picture {q}?")
            rows["hint"].append("nan")
            rows["answer"].append("ABCD"[rot.index(right)])
            for letter, text in zip("ABCD", rot):
                rows[letter].append(text)
            rows["category"].append("recognition")
            rows["image"].append(_image(q))
            rows["source"].append("synthetic")
            rows["L2-category"].append("perception")
            rows["comment"].append("")
            rows["split"].append("dev")
    return rows, {"image": HFImage()}


def make_model(name: str, miss_every: int):
    """A deterministic lmms-eval model: right answer from the doc, except a wrong one for every `miss_every`-th doc."""
    from lmms_eval.api.model import lmms

    class Oracle(lmms):
        def generate_until(self, requests):
            out = []
            for req in requests:
                _ctx, _gen, _visual, doc_id, task, split = req.args
                doc = self.task_dict[task][split][doc_id]
                out.append(self.answer(task, doc, doc_id))
            return out

        def answer(self, task, doc, doc_id):
            wrong = miss_every and doc_id % miss_every == 0
            if task == "pope":
                return ("no" if doc["answer"] == "yes" else "yes") if wrong else doc["answer"]
            if task == "scienceqa_img":
                return "ABC"[(doc["answer"] + int(wrong)) % 3]
            if task == "mmbench_en_dev":
                return "ABCD"[("ABCD".index(doc["answer"]) + int(wrong)) % 4]
            if task == "chartqa":
                return "0" if wrong else doc["answer"]
            raise AssertionError(task)

        def loglikelihood(self, requests):
            raise NotImplementedError("generation-only test model")

        def generate_until_multi_round(self, requests):
            raise NotImplementedError("generation-only test model")

    model = Oracle()
    model.name = name
    return model


def task_manager():
    """lmms-eval's TaskManager over the four built-in task folders only (indexing all tasks takes seconds)."""
    import lmms_eval.tasks
    from lmms_eval.tasks import TaskManager

    root = Path(lmms_eval.tasks.__file__).parent
    folders = [str(root / d) for d in ("pope", "scienceqa", "mmbench", "chartqa")]
    return TaskManager("WARNING", include_path=folders, include_defaults=False)


def run_lmms_eval(out_dir: Path, data: dict[str, Path], name: str, miss_every: int, stamp: str, manager) -> Path:
    """Evaluate one model with lmms-eval and write its output; returns the results JSON path."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    tasks = [{"task": t, "dataset_path": "parquet", "dataset_name": None, "dataset_kwargs": {"data_files": {
        _split(t): str(data[t])}}} for t in TASKS]
    tracker = EvaluationTracker(output_path=str(out_dir))
    from stf_bench.compat import drop_lmms_filelock_patch

    drop_lmms_filelock_patch()  # as our adapter does: lmms-eval 0.7.3's own patch needs filelock._api
    results = simple_evaluate(model=make_model(name, miss_every), model_args=f"pretrained={name}", tasks=tasks,
                              log_samples=True, evaluation_tracker=tracker, bootstrap_iters=0, datetime_str=stamp,
                              process_docs_parallel=1, task_manager=manager, verbosity="WARNING")
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples, datetime_str=stamp)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    return out_dir / name / f"{stamp}_results.json"


def _split(task: str) -> str:
    return {"pope": "test", "scienceqa_img": "test", "mmbench_en_dev": "dev", "chartqa": "test"}[task]


def lmms_output(base: Path) -> Path:
    """lmms-eval output of two tiny models under `base/out` (computed once per process)."""
    if "out" in _CACHE:
        return _CACHE["out"]
    base.mkdir(parents=True, exist_ok=True)
    data = write_datasets(base / "data")
    cwd = os.getcwd()
    os.chdir(base)  # lmms-eval's MMBench aggregation writes a submissions/ folder into the working directory
    try:
        manager = task_manager()
        run_lmms_eval(base / "out", data, "oracle-a", 5, "20250101_120000", manager)
        run_lmms_eval(base / "out", data, "oracle-b", 7, "20250101_130000", manager)
    finally:
        os.chdir(cwd)
    _CACHE["out"] = base / "out"
    return base / "out"


@pytest.fixture(scope="session")
def lmms_out(tmp_path_factory) -> Path:
    """Folder with lmms-eval output of two tiny deterministic models (oracle-a, oracle-b) on four tasks."""
    return lmms_output(tmp_path_factory.mktemp("lmms"))


def results_file(lmms_out: Path, model: str) -> Path:
    """The results JSON lmms-eval wrote for `model`."""
    return next((lmms_out / model).glob("*_results.json"))


TRAINING = {"stage": "finetune", "preset": "avgpool-7b", "model_args": {}, "projector": "", "recipe": {"lr": 2e-5},
            "data": {"source": "hub", "rows": 665298, "masked_rows": 0, "skipped_rows": 0}, "steps": 5198,
            "stf_bench_version": "0.1.0"}


def with_training(lmms_out: Path, model: str, dest: Path, training: dict | None = TRAINING) -> Path:
    """A copy of `model`'s lmms-eval output in `dest` whose results JSON carries `training` as `stf-bench run`
    writes a trained checkpoint's provenance (`stf_bench.training`); returns the results file."""
    import json
    import shutil

    shutil.copytree(lmms_out / model, dest)
    results = next(dest.glob("*_results.json"))
    data = json.loads(results.read_text())
    data["stf_bench"] = {"training": training}
    results.write_text(json.dumps(data))
    return results
