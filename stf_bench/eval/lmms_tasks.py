"""Task files for lmms-eval's own command line, on the data `stf-bench run` would use (`stf-bench lmms-tasks DIR`,
whose CLI is lmms_tasks_cli.py).

The project's task files (`tasks/stf_llava/`) name the hub datasets, which lmms-eval's CLI would download. Each file
written here includes one of them and points it at local parquet files instead (the embedded samples by default),
so that `python -m lmms_eval --model stf_bench --tasks stf_pope --include_path DIR` runs offline. The data hooks a
YAML file cannot hold (GQA's image join, MMBench's integer index) go in `stf_bench_data.py` beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

HOOKS_MODULE = "stf_bench_data"
HOOKS = {"gqa": "gqa_process_docs", "mmbench_en_dev": "mmbench_process_docs", "mmbench_cn_dev": "mmbench_process_docs"}


def hooks_source(gqa_image_files: list[str]) -> str:
    """The Python module the written task files take their `process_docs` from."""
    return (f'"""process_docs hooks of the task files beside this one (written by `stf-bench lmms-tasks`)."""\n\n'
            f"from stf_bench.eval.data_sources import gqa_join_images, mmbench_int_index\n\n"
            f"GQA_IMAGE_FILES = {json.dumps(gqa_image_files)}\n\n\n"
            f"def gqa_process_docs(dataset):\n    return gqa_join_images(dataset, GQA_IMAGE_FILES)\n\n\n"
            f"mmbench_process_docs = mmbench_int_index\n")


def task_yaml(benchmark: str, data_files: dict[str, list[str]]) -> str:
    """One task file: the project's `stf_<benchmark>` task with its dataset replaced by local parquet files."""
    from stf_bench.eval.tasks import TASKS_DIR, lmms_name

    task = lmms_name(benchmark, "llava")
    body = {"task": task, "include": str(TASKS_DIR / f"{task}.yaml"), "dataset_path": "parquet",
            "dataset_name": None, "dataset_kwargs": {"data_files": data_files}}
    text = yaml.safe_dump(body, sort_keys=False)
    if benchmark in HOOKS:
        text += f"process_docs: !function {HOOKS_MODULE}.{HOOKS[benchmark]}\n"
    return text


def write_task_files(out_dir: Path, benchmarks: list[str], data: str = "samples",
                     data_dir: str | None = None) -> list[Path]:
    """Write one task file per benchmark (and the hooks module) into `out_dir`; returns the task files."""
    from stf_bench.eval.data_sources import locate
    from stf_bench.eval.tasks import lmms_name

    # absolute paths: lmms-eval records them in its results, and `stf-bench score` finds the data there from any folder
    files = locate(benchmarks, data, None if data_dir is None else Path(data_dir).expanduser().resolve())
    out_dir.mkdir(parents=True, exist_ok=True)
    gqa_images = files["gqa"].image_files if "gqa" in files else []
    (out_dir / f"{HOOKS_MODULE}.py").write_text(hooks_source(gqa_images))
    written = []
    for benchmark in benchmarks:
        path = out_dir / f"{lmms_name(benchmark, 'llava')}.yaml"
        path.write_text(task_yaml(benchmark, files[benchmark].data_files()))
        written.append(path)
    return written
