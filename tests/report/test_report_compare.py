"""`stf-bench compare A B`: paired bootstrap over the samples two lmms-eval runs share."""

from __future__ import annotations

import json

import pytest
from lmms_run import results_file

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


def test_each_side_is_labelled_model_method_protocol_data_partial(two_runs, db_path, capsys):
    assert main(["compare", "oracle-a", "oracle-b", "--db", str(db_path), "--iters", "50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "A = oracle-a: oracle-a; method none; protocol lmms-eval; data unknown; partial no (run #1)"
    assert lines[1] == "B = oracle-b: oracle-b; method none; protocol lmms-eval; data unknown; partial no (run #2)"
    assert main(["compare", "1", "2", "--db", str(db_path), "--iters", "50", "--format", "json"]) == 0
    sides = json.loads(capsys.readouterr().out)["sides"]
    assert sides["b"] == {"model": "oracle-b", "method": "none", "protocol": "lmms-eval", "data": "unknown",
                          "partial": "no", "runs": [2]}


@pytest.mark.parametrize("args_a, args_b, protocol_b, why", [
    ("data=hub", "data=hub", "llava", "under the lmms-eval protocol, B under llava"),
    ("data=samples", "data=hub", "lmms-eval", "on samples data, B on hub"),
])
def test_different_protocols_or_data_are_refused_unless_allowed(db_path, lmms_out, capsys, args_a, args_b,
                                                                protocol_b, why):
    with open_store(db_path) as store:
        store.record_lmms_eval(results_file(lmms_out, "oracle-a"), model="tiny-a", model_args=args_a,
                               protocol="lmms-eval")
        store.record_lmms_eval(results_file(lmms_out, "oracle-b"), model="tiny-b", model_args=args_b,
                               protocol=protocol_b)
    argv = ["compare", "tiny-a", "tiny-b", "--db", str(db_path), "--iters", "50"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert why in err and "--allow-different" in err
    assert main([*argv, "--allow-different"]) == 0
    out = capsys.readouterr().out
    assert f"protocol {protocol_b}; data {args_b.split('=')[1]}" in out.splitlines()[1]


def test_a_partial_side_says_so(db_path, lmms_out, tmp_path, capsys):
    import shutil

    src = results_file(lmms_out, "oracle-a")
    copy = tmp_path / "p" / src.name
    copy.parent.mkdir()
    data = json.loads(src.read_text())
    data["n-samples"]["pope"]["original"] = 30  # 24 of 30 rows: a --limit run
    copy.write_text(json.dumps(data))
    for sample in src.parent.glob(src.name.replace("_results.json", "_samples_*.jsonl")):
        shutil.copy(sample, copy.parent / sample.name)
    with open_store(db_path) as store:
        ingest_paths(store, [copy, results_file(lmms_out, "oracle-b")])
    assert main(["compare", "1", "2", "--db", str(db_path), "--iters", "50", "--task", "POPE"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("partial pope 24 of 30 rows (run #1)")
