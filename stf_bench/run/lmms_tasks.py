"""Task files for lmms-eval's own command line, on the data `stf-bench run` would use (`stf-bench lmms-tasks DIR`,
whose CLI is lmms_tasks_cli.py).

The project's task files (`tasks/stf_llava/`) name the hub datasets, which lmms-eval's CLI would download. Each file
written here includes one of them and points it at local parquet files instead (the embedded samples by default),
so that `python -m lmms_eval --model stf_bench --tasks stf_pope --include_path DIR` runs offline. The data hooks a
YAML file cannot hold (a benchmark module's `local_process_docs`: GQA's image join, MMBench's integer index) go in
`stf_bench_data.py` beside them, built from the files written into it.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from stf_bench.accuracy import BENCHMARKS

HOOKS_MODULE = "stf_bench_data"


def hook_name(benchmark: str) -> str:
    """The name of a benchmark's `process_docs` in the hooks module."""
    return f"{benchmark}_process_docs"


def hooks_source(files: dict) -> str:
    """The Python module the written task files take their `process_docs` from: for each benchmark whose module
    has a `local_process_docs`, that hook built on the files written into its task file (`files`: benchmark ->
    `DataFiles`)."""
    hooked = {b: f for b, f in files.items() if BENCHMARKS[b].hook("local_process_docs") is not None}
    lines = ['"""process_docs hooks of the task files beside this one (written by `stf-bench lmms-tasks`)."""', "",
             "from stf_bench.accuracy import BENCHMARKS", "from stf_bench.data.sources import DataFiles", ""]
    for bench, f in hooked.items():
        lines += ["", f"{hook_name(bench)} = BENCHMARKS[{bench!r}].hook('local_process_docs')(",
                  f"    DataFiles({f.split!r}, {json.dumps(f.files)}, {json.dumps(f.image_files)}))"]
    return "\n".join(lines) + "\n"


def task_yaml(benchmark: str, data_files: dict[str, list[str]], hooked: bool = False) -> str:
    """One task file: the project's `stf_<benchmark>` task with its dataset replaced by local parquet files (and,
    when `hooked`, its `process_docs` taken from the hooks module)."""
    from stf_bench.run.task_specs import lmms_name, task_dir

    task = lmms_name(benchmark, "llava")
    body = {"task": task, "include": str(task_dir(benchmark) / f"{task}.yaml"), "dataset_path": "parquet",
            "dataset_name": None, "dataset_kwargs": {"data_files": data_files}}
    text = yaml.safe_dump(body, sort_keys=False)
    if hooked:
        text += f"process_docs: !function {HOOKS_MODULE}.{hook_name(benchmark)}\n"
    return text


def write_task_files(out_dir: Path, benchmarks: list[str], data: str = "samples",
                     data_dir: str | None = None) -> list[Path]:
    """Write one task file per benchmark (and the hooks module) into `out_dir`; returns the task files."""
    from stf_bench.data.sources import locate
    from stf_bench.run.task_specs import lmms_name

    # absolute paths: lmms-eval records them in its results, and `stf-bench score` finds the data there from any folder
    files = locate(benchmarks, data, None if data_dir is None else Path(data_dir).expanduser().resolve())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{HOOKS_MODULE}.py").write_text(hooks_source(files))
    written = []
    for benchmark in benchmarks:
        path = out_dir / f"{lmms_name(benchmark, 'llava')}.yaml"
        hooked = BENCHMARKS[benchmark].hook("local_process_docs") is not None
        path.write_text(task_yaml(benchmark, files[benchmark].data_files(), hooked))
        written.append(path)
    return written
