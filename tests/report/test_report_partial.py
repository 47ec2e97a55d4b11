"""A partial run (`--limit`) is stored as partial and never replaces a full run's cell in `stf-bench report`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stf_bench.cli import main
from stf_bench.report.formats import ranks
from stf_bench.report.tables import Table
from stf_bench.store.db import open_store


def _report(db: Path, out: Path, capsys, *extra: str) -> list[dict]:
    capsys.readouterr()
    assert main(["report", "--db", str(db), "--format", "json", "--stdout", "--no-plots", "--bootstrap-iters", "20",
                 "--output-dir", str(out), *extra]) == 0
    return json.loads(capsys.readouterr().out)["tables"]


def _reproduced(tables: list[dict]) -> dict[tuple[str, str], dict]:
    return {(t["table"], r["method"]): r["cells"] for t in tables for r in t["rows"] if r["source"] == "reproduced"}


@pytest.fixture(scope="module")
def full_then_limited(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("partial")
    db = root / "store.sqlite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STF_BENCH_CACHE", str(root / "cache"))
        mp.chdir(root)
        # a full run of a few short-answer tasks (the llava protocol's 1024-token caps make SQA/MMBench slow on CPU)
        assert main(["run", "--db", str(db), "--tasks", "gqa,pope,chartqa", "--output-dir", str(root / "out"),
                     "--no-progress", "--format", "json"]) == 0
        snapshot = root / "full.sqlite"
        with open_store(db) as store:
            store.conn.execute(f"VACUUM INTO '{snapshot}'")
        assert main(["run", "--db", str(db), "--tasks", "pope", "--limit", "3", "--output-dir", str(root / "out"),
                     "--no-progress", "--format", "json"]) == 0
    return snapshot, db


def test_limit_run_is_stored_as_partial(full_then_limited):
    _, db = full_then_limited
    with open_store(db) as store:
        runs = store.runs()
        assert len(runs) == 2
        assert store.partial_tasks(runs[0]) == {}
        partial = store.partial_tasks(runs[1])
        assert list(partial) == ["stf_pope"] and partial["stf_pope"].startswith("3 of ")


def test_every_cell_after_a_limit_run_is_the_full_runs(full_then_limited, tmp_path, capsys):
    snapshot, db = full_then_limited
    before = _reproduced(_report(snapshot, tmp_path / "a", capsys))
    after = _reproduced(_report(db, tmp_path / "b", capsys))
    assert before and any(v is not None for cells in before.values() for v in cells.values())
    assert after == before


def test_include_partial_shows_a_marked_unranked_row_of_its_own(full_then_limited, tmp_path, capsys):
    _, db = full_then_limited
    full = _reproduced(_report(db, tmp_path / "a", capsys))
    tables = _report(db, tmp_path / "b", capsys, "--include-partial")
    shown = _reproduced(tables)
    partial = {k: v for k, v in shown.items() if "partial run #2" in k[1]}
    assert partial and all("pope" in method for _, method in partial)
    assert {k: v for k, v in shown.items() if k not in partial} == full  # the full row is untouched
    for cells in partial.values():
        assert cells["POPE"] is not None and cells.get("Avg.") is None
    row = next(r for t in tables for r in t["rows"] if "partial run #2" in r["method"])
    assert row.get("compared_to") is None


def test_partial_rows_are_never_ranked():
    from stf_bench.report.tables import Cell, Row

    rows = [Row("a", "published", {"GQA": Cell(50.0)}), Row("b", "published", {"GQA": Cell(40.0)}),
            Row("p", "reproduced", {"GQA": Cell(99.0)}, attributes={"partial": True})]
    marks = ranks(Table("2", "t", ["GQA"], rows))
    assert marks == {(0, "GQA"): "best", (1, "GQA"): "second"}
