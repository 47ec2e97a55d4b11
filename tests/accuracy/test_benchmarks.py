"""The benchmark registry (`stf_bench.accuracy`): every benchmark's facts in its own module, an added benchmark (one
module + one task YAML) seen by every command, and no benchmark's name tested outside its module."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stf_bench import accuracy as benchmarks
from stf_bench.accuracy import BENCHMARKS, builtin_modules
from stf_bench.errors import StfBenchError

ROOT = Path(__file__).resolve().parents[2]


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



# ---------------------------------------------------------------- an added benchmark: one module + one YAML

FAKE_MODULE = """
    \"\"\"A benchmark added as a researcher would: its declaration, prompt, score and sample data.\"\"\"
    from pathlib import Path

    from stf_bench.accuracy import Benchmark, Metric, Source
    from stf_bench.accuracy.rules import relaxed_correct

    BENCHMARK = Benchmark("fakeqa", "FakeQA", Source("example/FakeQA", "FakeQA", None, "test"),
                          (Metric("relaxed_overall", "relaxed_accuracy", 100.0, "mean_pct"),), tolerance=1.0,
                          module=__name__, columns=("image", "question", "answer"), task_dir=Path(__file__).parent)


    def doc_to_text(doc):
        return doc["question"] + "\\nAnswer with a number."


    def process_results(doc, results):
        return {"relaxed_overall": float(relaxed_correct(results[0].strip(), doc["answer"]))}


    def sample_files():
        from datasets import Image, Value

        from stf_bench.accuracy.drawing import bar_chart
        from stf_bench.accuracy.sampling import image_cell, single_file

        rows = [{"question": f"What is the value of {label}?", "answer": str(value),
                 "image": image_cell(bar_chart(["A", "B"], [float(value), 50.0]))}
                for label, value in (("A", 30), ("A", 70), ("B", 50))]
        features = {"question": Value("string"), "answer": Value("string"), "image": Image()}
        return single_file(BENCHMARK.source, features, rows)
"""

FAKE_YAML = """
    task: stf_fakeqa
    output_type: generate_until
    dataset_path: example/FakeQA
    test_split: test
    doc_to_visual: !function stf_bench.accuracy.rules.doc_to_visual
    doc_to_text: !function fakeqa_bench.doc_to_text
    doc_to_target: answer
    process_results: !function fakeqa_bench.process_results
    generation_kwargs:
      max_new_tokens: 16
      temperature: 0
      do_sample: false
      num_beams: 1
      until: ["ASSISTANT:"]
    metric_list:
      - metric: relaxed_overall
        aggregation: mean
        higher_is_better: true
    metadata:
      version: 1.0
"""


@pytest.fixture
def fake_benchmark(monkeypatch, tmp_path):
    """The two files a researcher writes (a module and its task YAML, outside this repository), registered with
    one call; the registry is left as it was afterwards."""
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "fakeqa_bench.py").write_text(textwrap.dedent(FAKE_MODULE))
    (plugin / "stf_fakeqa.yaml").write_text(textwrap.dedent(FAKE_YAML))
    monkeypatch.syspath_prepend(str(plugin))
    monkeypatch.setenv("STF_BENCH_CACHE", str(tmp_path / "cache"))
    benchmarks.register_module("fakeqa_bench")
    yield tmp_path
    del BENCHMARKS["fakeqa"]
    sys.modules.pop("fakeqa_bench", None)


def test_an_added_benchmark_is_run_scored_reported_and_written_for_lmms_eval(fake_benchmark, capsys):
    from stf_bench.cli import main
    from stf_bench.data import samples
    from stf_bench.run import task_specs

    tmp = fake_benchmark
    assert task_specs.expand_tasks("all")[-1] == "fakeqa" and "fakeqa" not in task_specs.expand_tasks("paper8")
    db = tmp / "store.sqlite"
    code = main(["run", "--tasks", "fakeqa", "--output-dir", str(tmp / "out"), "--db", str(db), "--format", "json",
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    score = json.loads(captured.out)["fakeqa"]["relaxed_accuracy"]
    # the sample data: its folder in the hub layout, in a sample set of its own (the cached ten lack it)
    root = tmp / "cache" / samples.samples_dirname()
    assert samples.samples_dirname() != "samples-v1" and (root / "FakeQA" / "data" / "test-00000-of-00001.parquet").is_file()
    # score: the saved predictions re-scored through the module's process_results give the run's number
    assert main(["score", str(tmp / "out"), "--format", "json", "--no-store"]) == 0
    assert json.loads(capsys.readouterr().out)["fakeqa"]["relaxed_accuracy"] == pytest.approx(score)
    # the report: a column of its own in the every-benchmark table, holding the run's score
    assert main(["report", "--table", "benchmarks", "--format", "json", "--db", str(db), "--output-dir",
                 str(tmp / "reports"), "--no-plots", "--bootstrap-iters", "50"]) == 0
    table = json.loads((tmp / "reports" / "table_benchmarks.json").read_text())
    assert table["columns"][-1] == "FakeQA"
    (row,) = table["rows"]
    assert row["cells"]["FakeQA"] == pytest.approx(score) and row["cells"]["GQA"] is None
    # lmms-tasks: a task file for lmms-eval's own command line, including the researcher's YAML
    assert main(["lmms-tasks", str(tmp / "lmms"), "--tasks", "fakeqa"]) == 0
    written = (tmp / "lmms" / "stf_fakeqa.yaml").read_text()
    assert f"include: {tmp / 'plugin' / 'stf_fakeqa.yaml'}" in written and "FakeQA" in written


def test_a_module_without_a_declaration_or_with_a_taken_name_is_refused(tmp_path, monkeypatch):
    (tmp_path / "not_a_bench.py").write_text("X = 1\n")
    (tmp_path / "second_pope.py").write_text("from dataclasses import replace\nfrom stf_bench.accuracy import "
                                             "BENCHMARKS\nBENCHMARK = replace(BENCHMARKS['pope'], module=__name__)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(StfBenchError, match="declares no BENCHMARK"):
        benchmarks.register_module("not_a_bench")
    with pytest.raises(StfBenchError, match="is taken by stf_bench.accuracy.pope"):
        benchmarks.register_module("second_pope")
    assert BENCHMARKS["pope"].module == "stf_bench.accuracy.pope"


# ---------------------------------------------------------------- no benchmark name outside its module

# Occurrences that are not a test of the benchmark, each with its reason (file, name).
ALLOWED = {
    ("stf_bench/train/data.py", "gqa"): "LLaVA's training-mix image folder gqa/images, not the benchmark",
    ("stf_bench/train/samples.py", "*"): "the training samples ask each benchmark's own prompt (its module's doc_to_text) so that "
                                         "what a tiny model learns transfers to that benchmark's evaluation samples",
    ("stf_bench/report/compare_cli.py", "pope"): "an example in --help text (documentation)",
    ("benchmarks/gpu_bench.py", "*"): "the GPU speed script's task groups (a command line, not stf_bench code)",
    ("benchmarks/method_decode.py", "*"): "the speed script's default --tasks (a command line)",
}


def name_occurrences(name: str, own: list[str]) -> list[str]:
    """`git grep` for a benchmark's name as a whole word in the code (package, task files, scripts, speed
    scripts, examples), outside the files given and outside lmms-eval's own module paths."""
    excluded = [f":!{path}" for path in own]
    found = subprocess.run(["git", "grep", "--untracked", "-n", "-w", "-e", name, "--", "stf_bench", "tasks", "scripts",
                            "benchmarks", "examples", "pyproject.toml", *excluded],
                           cwd=ROOT, capture_output=True, text=True, check=False)
    assert found.returncode in (0, 1), found.stderr  # 1: nothing found
    upstream = re.compile(rf"lmms_eval[./]tasks[./]{name}\b")
    return [line for line in found.stdout.splitlines() if not upstream.search(line)
            and (line.split(":")[0], name) not in ALLOWED and (line.split(":")[0], "*") not in ALLOWED]


def test_no_benchmark_name_is_found_outside_its_module_and_yaml():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for module in builtin_modules():
        bench = module.BENCHMARK
        own = [f"stf_bench/accuracy/{module.__name__.rpartition('.')[2]}.py", f"tasks/stf_llava/{bench.llava_task}.yaml"]
        assert name_occurrences(bench.name, own) == [], bench.name


def test_the_name_check_reports_a_file_that_names_a_benchmark():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    # the same grep, with the benchmark's own module no longer excluded: every line of it that names it
    found = name_occurrences("pope", ["tasks/stf_llava/stf_pope.yaml"])
    assert found and all(line.startswith("stf_bench/accuracy/pope.py:") for line in found)
