"""The benchmark declaration: every benchmark's facts in one entry, and an added entry seen everywhere."""

from __future__ import annotations

import json
import shutil

import pytest

from stf_bench import benchmarks
from stf_bench.benchmarks import BENCHMARKS, Benchmark, Metric, Source


def test_every_benchmark_declares_a_headline_with_an_aggregator_and_distinct_columns():
    assert len(BENCHMARKS) == 10 and len(set(benchmarks.columns())) == 10
    for bench in BENCHMARKS.values():
        for metrics in (bench.llava_metrics, bench.lmms_metrics):
            assert metrics[0].aggregator, bench.name  # the headline can be recomputed per sample (CIs)
        assert benchmarks.of_task(bench.llava_task) is bench and benchmarks.of_task(bench.name) is bench
        assert benchmarks.of_column(bench.column) is bench
    assert benchmarks.paper8() == benchmarks.names()[:8]
    assert benchmarks.of_task("mme") is None and benchmarks.of_column("Avg.") is None


def test_the_ocrbench_points_rule_is_declared_once_and_holds_on_a_subset():
    ours, lmms = BENCHMARKS["ocrbench"].llava_metrics[0], BENCHMARKS["ocrbench"].lmms_metrics[0]
    assert ours.in_paper_units(297.0) == 297.0
    # lmms-eval: total points / 1000; 3 right of 20 rows is 150 points out of 1000, 297 of 1000 is 297
    assert lmms.in_paper_units(0.003, rows=20) == pytest.approx(150.0)
    assert lmms.in_paper_units(0.297, rows=1000) == pytest.approx(297.0)
    assert lmms.in_paper_units(0.297, rows=None) is None


FAKE = Benchmark("fakeqa", "FakeQA", Source("example/FakeQA", "FakeQA", None, "test"),
                 (Metric("relaxed_overall", "relaxed_accuracy", 100.0, "mean_pct"),), tolerance=1.0)


@pytest.fixture
def fake_benchmark(monkeypatch, tmp_path):
    """A benchmark added as a user would: its entry, a sample maker (ChartQA's rows) and its task YAML."""
    from stf_bench.eval import samples, tasks

    monkeypatch.setitem(BENCHMARKS, FAKE.name, FAKE)
    monkeypatch.setitem(samples.BUILDERS, FAKE.name, samples.BUILDERS["chartqa"])
    task_dir = tmp_path / "stf_llava"
    shutil.copytree(tasks.TASKS_DIR, task_dir)
    yaml = (task_dir / "stf_chartqa.yaml").read_text().replace("task: stf_chartqa", f"task: {FAKE.llava_task}")
    (task_dir / f"{FAKE.llava_task}.yaml").write_text(yaml)
    monkeypatch.setattr(tasks, "TASKS_DIR", task_dir)
    monkeypatch.setenv("STF_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_an_added_benchmark_is_run_reported_and_given_sample_data(fake_benchmark, capsys):
    from stf_bench.cli import main
    from stf_bench.eval import samples, tasks

    tmp = fake_benchmark
    assert tasks.expand_tasks("all")[-1] == "fakeqa" and "fakeqa" not in tasks.expand_tasks("paper8")
    db = tmp / "store.sqlite"
    code = main(["run", "--tasks", "fakeqa", "--output-dir", str(tmp / "out"), "--db", str(db), "--format", "json",
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    score = json.loads(captured.out)["fakeqa"]["relaxed_accuracy"]
    # the sample data: its folder in the hub layout, in a sample set of its own (the cached ten lack it)
    root = tmp / "cache" / samples.samples_dirname()
    assert samples.samples_dirname() != "samples-v1" and (root / "FakeQA" / "data" / "test-00000-of-00001.parquet").is_file()
    # the report: a column of its own in the every-benchmark table, holding the run's score
    assert main(["report", "--table", "benchmarks", "--format", "json", "--db", str(db), "--output-dir",
                 str(tmp / "reports"), "--no-plots", "--bootstrap-iters", "50"]) == 0
    table = json.loads((tmp / "reports" / "table_benchmarks.json").read_text())
    assert table["columns"][-1] == "FakeQA"
    (row,) = table["rows"]
    assert row["cells"]["FakeQA"] == pytest.approx(score) and row["cells"]["GQA"] is None
