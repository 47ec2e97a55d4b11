"""Shared test set-up: offline hub, a tiny two-task lmms-eval registry (parquet rows + YAML) for the runner, tiny
models built once per session for tests that only read them, and free ports for multi-process tests.

Safe under pytest-xdist (`pytest -n 2`): each worker process imports this file and gets its own results store and
cache folder; tests write only under their tmp_path; multi-process tests take a free port, never a fixed one."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (`-n N`) each worker gets its share of the cores for torch's threads: N workers each running as
# many OpenMP threads as there are cores oversubscribe the CPU, and spinning threads then wait on descheduled ones.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))
# Hermetic: the suite never writes into the user's results store or sample cache (subprocesses inherit these).
_HOME = tempfile.mkdtemp(prefix="stf-bench-tests-")
os.environ["STF_BENCH_DB"] = os.path.join(_HOME, "results.sqlite")
os.environ["STF_BENCH_CACHE"] = os.path.join(_HOME, "cache")

TINY_UTILS = '''
def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]

def doc_to_text(doc):
    return doc["question"]

def process_results(doc, results):
    pred = results[0]
    return {"pred_len": float(len(pred)), "first_byte": float(pred.encode()[0]) if pred else 0.0,
            "match": float(pred.strip().lower() == doc["answer"])}

def drop_all(dataset):
    return dataset.filter(lambda doc: False)
'''

TINY_YAML = """
task: {name}
dataset_path: parquet
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: {max_new}
  until: ["ASSISTANT:"]
process_results: !function utils.process_results
{extra}metric_list:
  - metric: pred_len
    aggregation: mean
    higher_is_better: true
  - metric: first_byte
    aggregation: mean
    higher_is_better: true
  - metric: match
    aggregation: mean
    higher_is_better: true
"""


def write_tiny_tasks(folder: Path, rows: int = 6, bad_rows: tuple[int, ...] = (), empty: bool = False,
                     max_new: int | None = None) -> Path:
    """Two tasks (`stfb_tiny_a`, `stfb_tiny_b`) on parquet rows with real images; `bad_rows` get corrupt bytes;
    `empty` filters every row out (process_docs), as a dataset with no usable rows would."""
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "utils.py").write_text(TINY_UTILS)
    features = Features({"image": Image(), "question": Value("string"), "answer": Value("string")})
    for name, task_max_new, shift in (("stfb_tiny_a", max_new or 6, 0), ("stfb_tiny_b", max_new or 9, 3)):
        images, questions = [], []
        for i in range(rows):
            if i in bad_rows:
                images.append({"bytes": b"this is not an image", "path": None})
            else:
                img = PILImage.new("RGB", (24 + 5 * i, 16 + 3 * ((i + shift) % 4)), (40 * i % 255, 90, 20 * shift))
                images.append(img)
            questions.append(f"What colour is shape {i + shift}?" + " Answer briefly." * ((i + shift) % 3))
        data = Dataset.from_dict({"image": images, "question": questions, "answer": ["red"] * len(questions)},
                                 features=features)
        path = folder / f"{name}.parquet"
        data.to_parquet(str(path))
        (folder / f"{name}.yaml").write_text(TINY_YAML.format(
            name=name, path=path, max_new=task_max_new, extra="process_docs: !function utils.drop_all\n" if empty else ""))
    return folder


def tiny_registry(folder: Path) -> SimpleNamespace:
    """A stand-in for stf_bench.run.task_specs over the tiny tasks (same interface: expand_tasks, resolve, paper_scores)."""
    from lmms_eval.tasks import TaskManager

    names = ["stfb_tiny_a", "stfb_tiny_b"]

    def expand_tasks(spec: str) -> list[str]:
        chosen = names if spec == "all" else spec.split(",")
        unknown = [n for n in chosen if n not in names]
        if unknown:
            from stf_bench.errors import StfBenchError

            raise StfBenchError(f"unknown task {unknown[0]!r}")
        return chosen

    def resolve(tasks, protocol, data="samples", data_dir=None):
        manager = TaskManager("WARNING", include_path=str(folder), include_defaults=False)
        return SimpleNamespace(task_manager=manager, task_specs=list(tasks), lmms_names={t: t for t in tasks})

    def paper_scores(results, lmms_names):
        return {b: {m: 100 * results["results"][t][f"{m},none"] for m in ("pred_len", "first_byte", "match")}
                for b, t in lmms_names.items()}

    from stf_bench.run.task_specs import rows_scored  # not about the tasks: the runner's row count, kept as it is

    return SimpleNamespace(expand_tasks=expand_tasks, resolve=resolve, paper_scores=paper_scores,
                           rows_scored=rows_scored)


@pytest.fixture
def tiny_tasks(tmp_path):
    """Factory: `tiny_tasks(rows=6, bad_rows=(), empty=False)` -> a registry over freshly written tiny tasks."""

    def make(**kw) -> SimpleNamespace:
        folder = write_tiny_tasks(tmp_path / "tiny_tasks", **kw)
        reg = tiny_registry(folder)
        reg.folder = folder
        return reg

    return make


# A child process that runs the `stf-bench` CLI over the tiny tasks (swapped in for stf_bench.run.task_specs).
CLI_CHILD = """
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("stfb_conftest", {conftest!r})
conf = importlib.util.module_from_spec(spec); spec.loader.exec_module(conf)
import stf_bench.run
stf_bench.run.task_specs = sys.modules["stf_bench.run.task_specs"] = conf.tiny_registry(Path({folder!r}))
from stf_bench.cli import main
sys.exit(main({argv!r}))
"""


@pytest.fixture
def cli_child():
    """`cli_child(folder, argv, **env)` -> (command, env) running `stf-bench argv` over the tiny tasks in `folder`."""
    import sys

    def make(folder: Path, argv: list[str], **env: str) -> tuple[list[str], dict]:
        script = CLI_CHILD.format(conftest=str(Path(__file__)), folder=str(folder), argv=argv)
        full_env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1",
                    **env}
        return [sys.executable, "-c", script], full_env

    return make


@pytest.fixture
def sample_predictions():
    """`sample_predictions(out)` -> {task file: sorted [(doc_id, answer)]} from a run's samples JSONL files."""
    import json

    from stf_bench.models.default_model import DEFAULT_MODEL

    def read(out: Path, model: str = DEFAULT_MODEL) -> dict:
        preds = {}
        for path in sorted(out.glob(f"{model}/*_samples_*.jsonl")):
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            preds[path.name.split("_samples_")[1]] = sorted((r["doc_id"], r["filtered_resps"]) for r in rows)
        assert preds, f"no {model}/*_samples_*.jsonl under {out}"  # two empty readings must not compare equal
        return preds

    return read


@pytest.fixture(scope="session")
def tiny_model():
    """`tiny_model("stf-tiny")` -> (model, processor), built once per session (per xdist worker) and per preset.

    Only for tests that read them (forward passes, configs, weights): a test that changes the model, its config or
    the processor (a flag, the padding side, train mode, hooks, save_pretrained) builds its own with load_model."""
    from stf_bench import load_model

    built: dict[str, tuple] = {}

    def get(name: str) -> tuple:
        if name not in built:
            built[name] = load_model(name)
        return built[name]

    return get


@pytest.fixture
def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a multi-process test's rendezvous (torchrun's default 29500 would collide
    with another test or run on the same machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
