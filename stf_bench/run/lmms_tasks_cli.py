"""`stf-bench lmms-tasks DIR`: write the task files (lmms_tasks.py) and say how lmms-eval's CLI finds them."""

from __future__ import annotations

import argparse
import sys

from stf_bench.errors import writable_dir
from stf_bench.models.default_model import DEFAULT_MODEL
from stf_bench.run.lmms_tasks import write_task_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `stf-bench lmms-tasks`."""
    parser.add_argument("out_dir", metavar="DIR", help="folder to write the task files into (lmms-eval's --include_path)")
    parser.add_argument("--tasks", default="all", help="all, paper8, or a comma list of task names (default all)")
    parser.add_argument("--data", default="samples", choices=["samples", "hub"],
                        help="samples: the embedded sample data (default); hub: the real datasets")
    parser.add_argument("--data-dir", default=None, help="folder of local dataset snapshots (wins over --data)")


def run(args: argparse.Namespace) -> int:
    """Write the files, then say how lmms-eval finds them."""
    from stf_bench.run.task_specs import check_task_files, expand_tasks

    benchmarks = expand_tasks(args.tasks)
    check_task_files("", benchmarks)
    out_dir = writable_dir(args.out_dir, "DIR")
    written = write_task_files(out_dir, benchmarks, args.data, args.data_dir)
    names = ",".join(p.stem for p in written)
    print(f"wrote {len(written)} task files to {out_dir}; run them with:\n"
          f"  python -m lmms_eval --model stf_bench --model_args preset={DEFAULT_MODEL},device=cpu --tasks {names} "
          f"--include_path {out_dir}", file=sys.stderr)
    return 0
