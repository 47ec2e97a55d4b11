"""Scorer versions: one string per lmms-eval task, bumped whenever a scoring rule of that task changes. Each
benchmark declares its two (`scorer_version` for its llava task, `lmms_scorer_version` for lmms-eval's own) in its
module; this module reads them.

Every run records the versions it was scored with (`stf-bench run`, `stf-bench score`; the store's
`scorer_versions` table). A stored score whose version is older than the current one is a "stale scorer" in
`stf-bench report`: shown, marked, never ranked. Runs recorded before versions existed count as UNVERSIONED.
No heavy imports here: the report reads this module.

History: 1 is every task as first released; a benchmark module that bumps its version says why beside it
(docs/protocols.md has the rules and their sources).
"""

from __future__ import annotations

from stf_bench.accuracy import of_task
from stf_bench.errors import StfBenchError

UNVERSIONED = "1"  # what a run recorded before scorer versions existed was scored with


def current(task: str) -> str:
    """The current scorer version of an lmms-eval task name (UNVERSIONED for tasks stf-bench does not score)."""
    bench = of_task(task)
    return bench.scorer_version_of(task) if bench is not None else UNVERSIONED


def for_tasks(tasks: list[str]) -> dict[str, str]:
    """{task: current version} for the tasks of one run."""
    return {t: current(t) for t in tasks}


def _number(version: str) -> int:
    try:
        return int(version)
    except (TypeError, ValueError):
        raise StfBenchError(f"scorer version {version!r} is not a whole number; the results store holds a version "
                            f"this stf-bench cannot compare") from None


def is_stale(task: str, recorded: str | None) -> bool:
    """True when a score recorded with `recorded` (None: before versions existed) is older than `task`'s current."""
    return _number(recorded or UNVERSIONED) < _number(current(task))
