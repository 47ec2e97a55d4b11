"""`stf-bench lmms-tasks DIR`: task files for lmms-eval's own command line, on the data `stf-bench run` would use.

The project's task files (`tasks/stf_llava/`) name the hub datasets, which lmms-eval's CLI would download. Each file
written here includes one of them and points it at local parquet files instead (the embedded samples by default),
so that `python -m lmms_eval --model stf_bench --tasks stf_pope --include_path DIR` runs offline. The data hooks a
YAML file cannot hold (GQA's image join, MMBench's integer index) go in `stf_bench_data.py` beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from stf_bench.errors import writable_dir

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

    files = locate(benchmarks, data, data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gqa_images = files["gqa"].image_files if "gqa" in files else []
    (out_dir / f"{HOOKS_MODULE}.py").write_text(hooks_source(gqa_images))
    written = []
    for benchmark in benchmarks:
        path = out_dir / f"{lmms_name(benchmark, 'llava')}.yaml"
        path.write_text(task_yaml(benchmark, files[benchmark].data_files()))
        written.append(path)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `stf-bench lmms-tasks`."""
    parser.add_argument("out_dir", metavar="DIR", help="folder to write the task files into (lmms-eval's --include_path)")
    parser.add_argument("--tasks", default="all", help="all, paper8, or a comma list of task names (default all)")
    parser.add_argument("--data", default="samples", choices=["samples", "hub"],
                        help="samples: the embedded sample data (default); hub: the real datasets")
    parser.add_argument("--data-dir", default=None, help="folder of local dataset snapshots (wins over --data)")


def run(args: argparse.Namespace) -> int:
    """Write the files, then say how lmms-eval finds them."""
    from stf_bench.eval.tasks import check_task_files, expand_tasks

    benchmarks = expand_tasks(args.tasks)
    check_task_files()
    out_dir = writable_dir(args.out_dir, "DIR")
    written = write_task_files(out_dir, benchmarks, args.data, args.data_dir)
    names = ",".join(p.stem for p in written)
    print(f"wrote {len(written)} task files to {out_dir}; run them with:\n"
          f"  python -m lmms_eval --model stf_bench --model_args preset=stf-tiny,device=cpu --tasks {names} "
          f"--include_path {out_dir}", file=sys.stderr)
    return 0
