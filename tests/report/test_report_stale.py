"""Scorer versions: a cell scored with an older scorer version than the current one is marked and never ranked."""

from __future__ import annotations

import dataclasses

from lmms_run import results_file

from stf_bench.accuracy import BENCHMARKS, scorer_versions
from stf_bench.published import load_published
from stf_bench.report.formats import ranks, render
from stf_bench.report.tables import STALE, build_tables, table_ids

PUB = load_published()
TINY = "stf-tiny (data=hub) [llava] @01234567"


def _table2(store):
    return next(t for t in build_tables(PUB, store, table_ids("2", PUB), iters=50) if t.id == "2")


def _bump_sqa(monkeypatch) -> None:
    """A rule of SQA's lmms-eval task changed: its module declares version 2."""
    bench = BENCHMARKS["scienceqa_img"]
    monkeypatch.setitem(BENCHMARKS, bench.name, dataclasses.replace(bench, lmms_scorer_version="2"))


def _row_index(table, method):
    return next(i for i, r in enumerate(table.rows) if r.method == method)


def test_runs_record_the_versions_they_were_scored_with(filled_store, lmms_out):
    run = next(r for r in filled_store.runs() if r.model == "stf-tiny")
    assert filled_store.scorer_versions(run.id) == {}  # lmms-eval's own output names none: recorded as unversioned
    path = results_file(lmms_out, "oracle-a")
    records = filled_store.record_lmms_eval(path, model="again", protocol="llava",
                                            scorer_versions={"scienceqa_img": "7"})
    assert records[0].added is False  # same results file: the run is already there, versions unchanged
    assert filled_store.scorer_versions(run.id) == {}


def test_a_bump_makes_the_older_cell_stale_and_unranked(filled_store, monkeypatch):
    before = _table2(filled_store)
    i = _row_index(before, TINY)
    assert not before.rows[i].cells["SQA"].stale
    assert "stale" not in render([before], "md")
    ranked = ranks(before)

    _bump_sqa(monkeypatch)  # a rule of SQA changed
    after = _table2(filled_store)
    i = _row_index(after, TINY)
    cell = after.rows[i].cells["SQA"]
    assert cell.stale and cell.value == before.rows[i].cells["SQA"].value  # same number, marked
    assert "scored with version 1, current 2" in cell.note
    assert not after.rows[i].cells["POPE"].stale  # other tasks keep their status
    assert all(not after.rows[j].cells["SQA"].stale or (j, "SQA") not in ranks(after)
               for j in range(len(after.rows)))
    assert (i, "SQA") not in ranks(after)
    assert ranks(after).get((i, "POPE")) == ranked.get((i, "POPE"))
    for fmt in ("md", "html", "latex"):
        assert STALE in render([after], fmt), fmt
    assert STALE in render([after], "json")  # in the cell's note


def test_recorded_current_versions_are_not_stale(filled_store, lmms_out, monkeypatch, tmp_path):
    import json
    import shutil

    src = results_file(lmms_out, "oracle-a")
    copy = tmp_path / "oracle-c" / src.name
    copy.parent.mkdir()
    data = json.loads(src.read_text())
    data["stf_bench"] = {"scorer_versions": {"scienceqa_img": "2"}}  # as `stf-bench run` writes it
    copy.write_text(json.dumps(data))
    for sample in src.parent.glob(src.name.replace("_results.json", "_samples_*.jsonl")):
        shutil.copy(sample, copy.parent / sample.name)
    filled_store.record_lmms_eval(copy, model="stf-tiny", model_args="data=hub,run=c", protocol="llava")
    run = filled_store.runs()[-1]
    assert filled_store.scorer_versions(run.id) == {"scienceqa_img": "2"}
    _bump_sqa(monkeypatch)
    table = _table2(filled_store)
    fresh = [r for r in table.rows if r.source == "reproduced" and "run=c" in r.method]
    assert fresh and not fresh[0].cells["SQA"].stale
    assert scorer_versions.is_stale("scienceqa_img", None) and not scorer_versions.is_stale("scienceqa_img", "2")
