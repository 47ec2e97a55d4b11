"""Scorer versions: one string per lmms-eval task, bumped whenever a scoring rule of that task changes.

Every run records the versions it was scored with (`stf-bench run`, `stf-bench score`; the store's
`scorer_versions` table). A stored score whose version is older than the current one is a "stale scorer" in
`stf-bench report`: shown, marked, never ranked. Runs recorded before versions existed count as UNVERSIONED.
No heavy imports here: the report reads this module.

History (docs/protocols.md has the rules and their sources):
- 1: every task, as first released.
- 2 (issue 12, the paper protocol traced to the official code): stf_scienceqa_img (LLaVA main-branch
  eval_science_qa.py parser), stf_vqav2_val (the VQA API's reference handling), stf_vizwiz_vqa_val (the VizWiz
  API: the prediction only is processed), stf_mmbench_en_dev / stf_mmbench_cn_dev (VLMEvalKit's can_infer).
"""

from __future__ import annotations

from stf_bench.errors import StfBenchError

UNVERSIONED = "1"  # what a run recorded before scorer versions existed was scored with

SCORER_VERSIONS: dict[str, str] = {
    "stf_gqa": "1", "stf_scienceqa_img": "2", "stf_textvqa_val": "1", "stf_pope": "1",
    "stf_mmbench_en_dev": "2", "stf_mmbench_cn_dev": "2", "stf_vqav2_val": "2", "stf_vizwiz_vqa_val": "2",
    "stf_ocrbench": "1", "stf_chartqa": "1",
    # the lmms-eval protocol: lmms-eval 0.7.3's own scorers (plus stf-bench's two fixes)
    "gqa": "1", "scienceqa_img": "1", "textvqa_val": "1", "pope": "1", "mmbench_en_dev": "1", "mmbench_cn_dev": "1",
    "vqav2_val": "1", "vizwiz_vqa_val": "1", "ocrbench": "1", "chartqa": "1",
}


def current(task: str) -> str:
    """The current scorer version of an lmms-eval task name (UNVERSIONED for tasks stf-bench does not score)."""
    return SCORER_VERSIONS.get(task, UNVERSIONED)


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
