"""`stf-bench compare A B`: paired bootstrap over the samples two lmms-eval runs share."""

from __future__ import annotations

import json

import pytest
from conftest import results_file

from stf_bench.cli import main
from stf_bench.errors import StfBenchError
from stf_bench.report.compare import compare
from stf_bench.store.db import ingest_paths, open_store


@pytest.fixture
def two_runs(db_path, lmms_out):
    with open_store(db_path) as store:
        ingest_paths(store, [lmms_out])
        yield store


def test_paired_comparison_uses_lmms_evals_scores(two_runs, lmms_out):
    res = {m: json.loads(results_file(lmms_out, m).read_text())["results"] for m in ("oracle-a", "oracle-b")}
    out = {c.column: c for c in compare(two_runs, "oracle-a", "oracle-b", iters=500)}
    assert set(out) == {"SQA", "POPE", "MMB", "ChartQA"}
    sqa = out["SQA"]
    assert sqa.n_shared == 24 and sqa.n_mismatched == 0
    assert sqa.a == pytest.approx(100 * res["oracle-a"]["scienceqa_img"]["exact_match,none"])
    assert sqa.b == pytest.approx(100 * res["oracle-b"]["scienceqa_img"]["exact_match,none"])
    assert sqa.diff == pytest.approx(sqa.a - sqa.b) and sqa.ci[0] <= sqa.diff <= sqa.ci[1]
    assert out["MMB"].n_shared == 8  # paired by MMBench question, circular copies together
    assert out["POPE"].b == pytest.approx(100 * res["oracle-b"]["pope"]["pope_f1_score,none"])
    for c in out.values():
        assert c.verdict in ("A > B", "A < B", "no significant difference")


def test_a_run_against_itself_and_task_filter(two_runs):
    same = compare(two_runs, "1", "#1", task="pope", iters=200)
    assert [c.column for c in same] == ["POPE"]
    assert same[0].diff == 0 and same[0].p_value == 1.0 and same[0].verdict == "no significant difference"
    assert [c.column for c in compare(two_runs, "oracle-a", "oracle-b", task="ChartQA", iters=50)] == ["ChartQA"]


def test_compare_errors(two_runs):
    with pytest.raises(StfBenchError, match="no run of 'nobody'"):
        compare(two_runs, "nobody", "oracle-b")
    with pytest.raises(StfBenchError, match="no run #99"):
        compare(two_runs, "99", "oracle-b")
    with pytest.raises(StfBenchError, match="share no per-sample records on gqa"):
        compare(two_runs, "oracle-a", "oracle-b", task="gqa")


def test_compare_cli(two_runs, db_path, capsys):
    assert main(["compare", "oracle-a", "oracle-b", "--db", str(db_path), "--iters", "200"]) == 0
    text = capsys.readouterr().out
    assert "paired bootstrap" in text and "POPE" in text and "ChartQA" in text
    assert main(["compare", "oracle-a", "oracle-b", "--db", str(db_path), "--iters", "200", "--task", "SQA",
                 "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["column"] for c in data["comparisons"]] == ["SQA"]
    assert main(["compare", "a", "b", "--db", str(db_path.with_name("none.sqlite"))]) == 2
    assert "no results store" in capsys.readouterr().err


def test_report_row_label_with_fingerprint_is_accepted(db_path, lmms_out):
    from stf_bench.report.compare import report_label, select_runs

    with open_store(db_path) as store:
        ingest_paths(store, [results_file(lmms_out, "oracle-a")], checkpoint_fingerprint="sha256:0123456789abcdef")
        (run,) = store.runs()
        label = report_label(run)
        assert label.endswith(" @01234567")
        assert [r.id for r in select_runs(store, label)] == [run.id]


def test_unknown_task_lists_the_valid_names(two_runs):
    with pytest.raises(StfBenchError, match=r"unknown --task 'nosuch'.*GQA, SQA.*scienceqa_img"):
        compare(two_runs, "oracle-a", "oracle-b", task="nosuch")


def test_benchmarks_in_paper_order_with_units(two_runs, db_path, capsys):
    out = compare(two_runs, "oracle-a", "oracle-b", iters=50)
    assert [c.column for c in out] == ["SQA", "POPE", "MMB", "ChartQA"]
    assert {c.unit for c in out} == {"%"}
    assert main(["compare", "oracle-a", "oracle-b", "--db", str(db_path), "--iters", "50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "unit" in next(line for line in lines if line.startswith("benchmark"))
    assert [line.split()[:2] for line in lines if line.split()[:1] in (["SQA"], ["POPE"], ["MMB"], ["ChartQA"])] == [
        ["SQA", "%"], ["POPE", "%"], ["MMB", "%"], ["ChartQA", "%"]]
