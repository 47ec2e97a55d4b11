"""The paper's numbers as data: complete, sourced, and consistent with the paper's own Avg. column."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from stf_bench.errors import StfBenchError
from stf_bench.published import baselines_dir, load_published

PAPER_TABLES = [str(t) for t in range(2, 15)]
# Avg. cells are rounded to 0.1 and so is each of the eight benchmarks: the mean of the rounded cells can differ
# from the published (rounded) mean by at most 0.05 + 0.05.
AVG_TOLERANCE = 0.1


def test_every_table_is_there_with_sources():
    pub = load_published()
    assert set(PAPER_TABLES) | {"zoo"} == set(pub.tables)
    for tid in ("10", "11"):
        assert pub.tables[tid].rows == [] and "GQA" in pub.tables[tid].columns and pub.tables[tid].note
    for tid, table in pub.tables.items():
        if tid in ("10", "11"):
            continue
        assert table.rows, tid
        for row in table.rows:
            assert set(row.cells) <= set(table.columns)
            assert all(row.sources[c] for c in row.cells)
    with (baselines_dir() / "published.csv").open() as f:
        assert sum(1 for _ in csv.DictReader(f)) == 386


def test_spot_cells_against_the_paper():
    t = load_published().tables
    assert t["2"].row("STC (ours)").cells["VisWiz"] == 51.1
    assert t["2"].row("FastV").cells["SQA"] is None  # printed as '-'
    assert t["4"].row("MustDrop").cells["POPE"] is None
    assert t["5"].row("k=8, E=4").cells == {"TFLOPs": 0.5, "GQA": 35.3, "SQA": 37.2, "VQA^T": 29.4, "POPE": 59.6,
                                            "MMB": 43.2, "MMB^CN": 36.8, "VQA^v2": 52.1, "VisWiz": 24.9, "Avg.": 39.8}
    assert t["8"].row("LLaVA-1.5-7B").cells == {"OCRBench": 297.0, "ChartQA": 18.2}
    assert t["9"].row("STF-7B (ours, k=2, E=1)").cells == {"Latency (ms)": 103.8, "Speedup": 3.3}
    assert t["zoo"].row("LLaVA-1.5-7B").cells == {"GQA": 62.0, "SQA": 66.8, "VQA^T": 58.2, "POPE": 85.9, "MMB": 64.3,
                                                  "MMB^CN": 58.3, "VQA^v2": 78.5, "VisWiz": 50.0}


def test_transcription_matches_the_papers_own_avg_column():
    pub = load_published()
    checked, excluded = 0, []
    for tid, table in pub.tables.items():
        if "Avg." not in table.columns:
            continue
        for row in table.rows:
            if "Avg." not in row.cells:
                continue
            values = [row.cells[b] for b in pub.benchmarks]
            if any(v is None for v in values):
                excluded.append((tid, row.method))  # a '-' cell: the paper's mean is over fewer benchmarks
                continue
            mean = sum(values) / len(values)
            assert abs(mean - row.cells["Avg."]) <= AVG_TOLERANCE + 1e-9, (tid, row.method, mean)
            checked += 1
    assert excluded == [("2", "FastV")]
    assert checked == 34


def test_a_typo_is_caught_by_the_avg_check(tmp_path):
    # the check above is not vacuous: one mistyped cell breaks it
    folder = tmp_path / "baselines"
    shutil.copytree(baselines_dir(), folder)
    path = folder / "published.csv"
    path.write_text(path.read_text().replace("2,YOPO,GQA,61.6", "2,YOPO,GQA,66.1"))
    row = load_published(folder).tables["2"].row("YOPO")
    mean = sum(row.cells[b] for b in load_published(folder).benchmarks) / 8
    assert abs(mean - row.cells["Avg."]) > AVG_TOLERANCE


@pytest.mark.parametrize("old, new, message", [
    ("2,YOPO,GQA,61.6", "2,YOPO,GQA,sixty", r"published.csv:\d+: value 'sixty'"),
    ("2,YOPO,GQA,61.6", "2,YOPO,Foo,61.6", "columns \\['Foo'\\]"),
    ("2,YOPO,GQA,61.6", "2,Nobody,GQA,61.6", "row 'Nobody'"),
    ("table,method,column,value,source", "table,method,value", "expected the header"),
])
def test_malformed_baselines_are_refused(tmp_path, old, new, message):
    folder = tmp_path / "baselines"
    shutil.copytree(baselines_dir(), folder)
    path = folder / "published.csv"
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(StfBenchError, match=message):
        load_published(folder)


def test_missing_baselines_folder(tmp_path):
    with pytest.raises(StfBenchError, match="tables.yaml"):
        load_published(Path(tmp_path))


def test_the_paper_is_named_by_its_full_title():
    title = "Learning Compact Vision Tokens for Efficient Large Multimodal Models"
    sources = [s for table in load_published().tables.values() for row in table.rows for s in row.sources.values()]
    paper = [s for s in sources if "Learning Compact Vision Tokens" in s]
    assert paper and all(title in s for s in paper)


@pytest.mark.parametrize("old, new, message", [
    ("cell_notes: {POPE: \"80.5", "cell_notes: {MMB^CN: \"80.5", "cell_notes for \\['MMB\\^CN'\\]"),
    ("not_judged: [POPE]", "not_judged: [GQA]", "not_judged \\['GQA'\\] needs a cell note"),
    ("        beside_note: \"training-free PruMerge+", "        unused: \"training-free PruMerge+",
     "`beside` needs a `beside_note`"),
])
def test_malformed_row_notes_are_refused(tmp_path, old, new, message):
    folder = tmp_path / "baselines"
    shutil.copytree(baselines_dir(), folder)
    path = folder / "tables.yaml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(StfBenchError, match=message):
        load_published(folder)
