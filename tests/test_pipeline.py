"""The whole data flow on the embedded sample data: lmms-eval writes its own output files for all ten benchmarks,
`stf-bench ingest` stores them, and `stf-bench report` shows exactly the scores of lmms-eval's results file."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from scripted_lm import ScriptedLM

from stf_bench import accuracy as benchmarks
from stf_bench.cli import main
from stf_bench.data import samples
from stf_bench.run import task_specs

COLUMN = {"gqa": "GQA", "scienceqa_img": "SQA", "textvqa_val": "VQA^T", "pope": "POPE", "mmbench_en_dev": "MMB",
          "mmbench_cn_dev": "MMB^CN", "vqav2_val": "VQA^v2", "vizwiz_vqa_val": "VisWiz", "ocrbench": "OCRBench",
          "chartqa": "ChartQA"}


class NoisyOracle(ScriptedLM):
    """Right on about two docs in three (decided by a hash of the question), so every score is non-trivial."""

    def respond(self, task: str, doc_id: int, doc: dict) -> str:
        right = zlib.crc32(f"{task}/{doc_id}".encode()) % 3 != 0
        return benchmarks.BENCHMARKS[task.removeprefix("stf_")].target(doc) if right else "zzz"


@pytest.fixture(scope="module")
def lmms_output(tmp_path_factory) -> tuple[Path, dict]:
    import argparse

    import lmms_eval.evaluator as evaluator
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    root = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STF_BENCH_CACHE", str(root / "cache"))
        mp.chdir(root)
        samples.ensure_samples()
        setup = task_specs.resolve(list(benchmarks.names()), "llava")
        tracker = EvaluationTracker(output_path=str(root / "out"))
        cli_args = argparse.Namespace(output_path=str(root / "out" / "noisy-oracle"), process_with_media=False,
                                      reasoning_tags=None, agentic_trace_mode="basic", log_samples_suffix="")
        results = evaluator.simple_evaluate(model=NoisyOracle(), model_args="pretrained=noisy-oracle",
                                            tasks=setup.task_specs, task_manager=setup.task_manager, log_samples=True,
                                            evaluation_tracker=tracker, bootstrap_iters=0, verbosity="ERROR",
                                            cli_args=cli_args)
        sample_logs = results.pop("samples")
        tracker.save_results_aggregated(results=results, samples=sample_logs, datetime_str="20260101_000000")
        for task_name in results["configs"]:
            if task_name in sample_logs:
                tracker.save_results_samples(task_name=task_name, samples=sample_logs[task_name])
    headline = task_specs.paper_scores(results, setup.lmms_names)
    return root / "out", headline


def test_report_shows_lmms_evals_own_numbers(lmms_output, tmp_path, capsys):
    out_dir, headline = lmms_output
    results_files = list(out_dir.rglob("*_results.json"))
    assert len([p for p in results_files if "submissions" not in p.parts]) == 1  # written by lmms-eval itself
    db = str(tmp_path / "store.sqlite")
    assert main(["ingest", str(out_dir), "--db", db]) == 0
    capsys.readouterr()
    assert main(["ingest", str(out_dir), "--db", db]) == 0  # twice: nothing new
    again = capsys.readouterr().out
    assert "already in the store" in again and "added" not in again
    # lmms-eval ran on the embedded sample data: ingested as such, kept out of the paper's tables unless asked for
    assert main(["report", "--db", db, "--table", "2,8", "--format", "json", "--stdout", "--no-plots",
                 "--output-dir", str(tmp_path / "rep0")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert not [r for t in report["tables"] for r in t["rows"] if r["source"] == "reproduced"]
    assert main(["report", "--db", db, "--table", "2,8", "--format", "json", "--stdout", "--no-plots",
                 "--output-dir", str(tmp_path / "rep"), "--include-sample-data"]) == 0
    report = json.loads(capsys.readouterr().out)  # stdout holds the JSON alone
    assert {r["method"] for t in report["tables"] for r in t["rows"] if r["source"] == "reproduced"} == {
        "noisy-oracle (data=samples) [llava]"}
    tables = {t["table"]: t for t in report["tables"]}
    cells = {}
    for table in tables.values():
        rows = [r for r in table["rows"] if r["source"] == "reproduced"]
        assert len(rows) == 1, [r["method"] for r in rows]
        cells.update({k: v for k, v in rows[0]["cells"].items() if v is not None})
    for bench, metrics in headline.items():
        want = next(iter(metrics.values()))
        assert 0 < want < (1000 if bench == "ocrbench" else 100), (bench, want)  # non-trivial scores
        assert cells[COLUMN[bench]] == pytest.approx(want, abs=1e-6), bench
    eight = [next(iter(headline[b].values())) for b in benchmarks.paper8()]
    assert cells["Avg."] == pytest.approx(sum(eight) / 8, abs=1e-6)
