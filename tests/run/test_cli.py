"""`stf-bench run`: flags, `--format json` purity, the results store, and resuming after SIGKILL."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stf_bench import accuracy as benchmarks
from stf_bench.cli import main
from stf_bench.errors import StfBenchError
from stf_bench.models.default_model import DEFAULT_MODEL
from stf_bench.run import cli as run_cli


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    run_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_the_embedded_run():
    spec = run_cli.spec_from_args(_parse())
    assert (spec.model, spec.tasks, spec.protocol, spec.data, spec.output_dir) == (
        DEFAULT_MODEL, "all", "llava", "samples", "results")
    assert spec.device is None and spec.resume and spec.limit is None


def test_flags_map_to_the_spec():
    spec = run_cli.spec_from_args(_parse("--model", "llava-tiny", "--model-args", "k=4,e=8", "--tasks", "gqa,pope",
                                         "--protocol", "lmms-eval", "--data-dir", "/data", "--limit", "5",
                                         "--batch-size", "16", "--device", "cpu", "--dtype", "bfloat16",
                                         "--output-dir", "o", "--no-resume"))
    assert spec.model_args == {"k": 4, "e": 8} and spec.data == "local" and spec.data_dir == "/data"
    assert (spec.limit, spec.batch_size, spec.dtype, spec.resume) == (5, 16, "bfloat16", False)


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "--batch-size"),
    (["--limit", "-1"], "--limit"),
    (["--limit", "0.5"], "--limit 0.5: a whole number of rows"),
    (["--data", "local"], "--data-dir"),
    (["--model-args", "k4"], "key=value"),
])
def test_bad_flags_are_clear_errors(argv, message):
    with pytest.raises(StfBenchError, match=message):
        run_cli.spec_from_args(_parse(*argv))


def test_unknown_model_exits_2_with_a_message(tmp_path, tiny_tasks, monkeypatch, capsys):
    import stf_bench.run

    monkeypatch.setattr(stf_bench.run, "task_specs", tiny_tasks(), raising=False)
    code = main(["run", "--model", "no-such-model", "--output-dir", str(tmp_path), "--no-store"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown model preset 'no-such-model'" in err
    assert not list(tmp_path.glob("*/*_results.json"))


def test_json_output_is_only_json_and_the_run_is_stored(tmp_path, tiny_tasks, monkeypatch, capsys):
    import stf_bench.run
    from stf_bench.store.db import open_store

    monkeypatch.setattr(stf_bench.run, "task_specs", tiny_tasks(rows=3), raising=False)
    db = tmp_path / "store.sqlite"
    monkeypatch.setenv("STF_BENCH_DB", str(db))
    code = main(["run", "--output-dir", str(tmp_path / "out"), "--format", "json", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    scores = json.loads(captured.out)
    assert set(scores) == {"stfb_tiny_a", "stfb_tiny_b"} and all(isinstance(v, float) for v in scores["stfb_tiny_a"].values())
    with open_store(db) as store:
        runs = store.runs()
        assert len(runs) == 1 and runs[0].model == DEFAULT_MODEL and runs[0].protocol == "llava"
        assert {s.task for s in store.scores(runs[0].id)} == {"stfb_tiny_a", "stfb_tiny_b"}


def test_table_output(tmp_path, tiny_tasks, monkeypatch, capsys):
    import stf_bench.run
    import stf_bench.run.task_specs  # noqa: F401  (imported first, run's own import cannot undo the stand-in)

    monkeypatch.setattr(stf_bench.run, "task_specs", tiny_tasks(rows=3, bad_rows=(1,)), raising=False)
    assert main(["run", "--output-dir", str(tmp_path), "--no-store", "--no-progress"]) == 0
    captured = capsys.readouterr()
    header, table, _ = captured.out.split("\n\n")
    assert header.splitlines()[0].split() == ["model:", DEFAULT_MODEL]
    # the shipped default says what trained it (its training.json), so no one takes its scores for a real model's
    assert header.splitlines()[1].startswith("trained:  with stf-bench (stf-tiny, finetune, ")
    assert header.splitlines()[1].endswith("training data=samples); on sample data, not a real model")
    assert "data:     samples (the embedded sample rows" in header and "partial:  no" in header
    lines = table.splitlines()
    assert lines[0].split() == ["benchmark", "metric", "value", "unit", "rows", "skipped"]
    assert any(line.startswith("stfb_tiny_a") and line.split()[-3:] == ["%", "3", "1"] for line in lines), lines
    assert "1 row(s) skipped" in captured.err


def _argv(out: Path) -> list[str]:
    # batch 1: one fsynced cache write per answer, easy to kill between; the untrained stf-tiny answers to the
    # token cap (the trained default stops after a word or two, too soon to kill mid-run)
    return ["run", "--model", "stf-tiny", "--output-dir", str(out), "--batch-size", "1", "--format", "json",
            "--no-store", "--no-progress"]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_scores(tmp_path, tiny_tasks, monkeypatch, capsys,
                                                                    cli_child, sample_predictions):
    import stf_bench.run

    reg = tiny_tasks(rows=8, max_new=24)
    total = 16
    killed_out = tmp_path / "killed"
    cache = killed_out / ".resume"
    command, env = cli_child(reg.folder, _argv(killed_out))
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    done_before_kill = 0
    while time.monotonic() < deadline and proc.poll() is None:
        files = list(cache.glob("*/answers.rank0.jsonl"))
        done_before_kill = len(files[0].read_text().splitlines()) if files else 0
        if done_before_kill >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    answered = len(next(cache.glob("*/answers.rank0.jsonl")).read_text().splitlines())
    assert 4 <= answered < total, "killed mid-run"
    assert not list(killed_out.glob("stf-tiny/*_results.json")), "no results from the killed run"

    resumed = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    monkeypatch.setattr(stf_bench.run, "task_specs", reg, raising=False)  # the uninterrupted reference, in this process
    capsys.readouterr()
    assert main(_argv(tmp_path / "fresh")) == 0
    assert json.loads(resumed.stdout) == json.loads(capsys.readouterr().out)
    assert sample_predictions(killed_out, "stf-tiny") == sample_predictions(tmp_path / "fresh", "stf-tiny")
    saved = json.loads(next(killed_out.glob("stf-tiny/*_results.json")).read_text())
    assert saved["stf_bench"]["resumed_answers"] >= answered


@pytest.mark.slow
def test_lmms_eval_cli_runs_the_registered_model(tmp_path, tiny_tasks, cli_child):
    reg = tiny_tasks(rows=3)
    out = tmp_path / "lmms"
    proc = subprocess.run(
        [sys.executable, "-m", "lmms_eval", "--model", "stf_bench", "--model_args", "preset=stf-tiny,dtype=float32",
         "--tasks", "stfb_tiny_a", "--include_path", str(reg.folder), "--batch_size", "2", "--device", "cpu",
         "--output_path", str(out), "--log_samples"],
        env=cli_child(reg.folder, [])[1], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    results = json.loads(next(out.glob("*_results.json")).read_text())
    assert results["results"]["stfb_tiny_a"]["pred_len,none"] > 0
    assert len(next(out.glob("*_samples_stfb_tiny_a.jsonl")).read_text().splitlines()) == 3


def test_embedded_default_scores_all_ten_tasks(tmp_path, capsys):

    code = main(["run", "--limit", "3", "--output-dir", str(tmp_path), "--format", "json", "--no-store", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    scores = json.loads(captured.out)
    assert sorted(scores) == sorted(benchmarks.names())
    assert all(scores[t] and all(isinstance(v, float) for v in scores[t].values()) for t in benchmarks.names())
    assert len(list(tmp_path.glob(f"{DEFAULT_MODEL}/*_samples_*.jsonl"))) == 10


def test_lmms_eval_protocol_tasks_that_write_submission_files(tmp_path, capsys):
    """Regression: lmms-eval's TextVQA aggregation reads `args.output_path` from the CLI namespace."""
    code = main(["run", "--protocol", "lmms-eval", "--tasks", "textvqa_val", "--limit", "2", "--output-dir",
                 str(tmp_path), "--format", "json", "--no-store", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert list(json.loads(captured.out)) == ["textvqa_val"]
    assert list((tmp_path / DEFAULT_MODEL / "submissions").glob("textvqa_submission_*.json"))


def test_ingesting_our_own_output_keeps_data_source_and_fingerprint(tmp_path, tiny_tasks, monkeypatch, capsys):
    import stf_bench.run
    from stf_bench.report.compare import report_label
    from stf_bench.store.db import open_store

    monkeypatch.setattr(stf_bench.run, "task_specs", tiny_tasks(rows=3), raising=False)
    ran, ingested = tmp_path / "run.sqlite", tmp_path / "ingest.sqlite"
    assert main(["run", "--output-dir", str(tmp_path / "out"), "--db", str(ran), "--no-progress"]) == 0
    assert main(["ingest", str(tmp_path / "out"), "--db", str(ingested)]) == 0
    capsys.readouterr()
    with open_store(ran) as a, open_store(ingested) as b:
        (run_a,), (run_b,) = a.runs(), b.runs()
    assert (run_b.model, run_b.model_args, run_b.protocol, run_b.checkpoint_fingerprint, run_b.training) == (
        run_a.model, run_a.model_args, run_a.protocol, run_a.checkpoint_fingerprint, run_a.training)
    assert run_a.training["preset"] == "stf-tiny" and run_a.training["stage"] == "finetune"  # the shipped record
    label = report_label(run_b)
    assert label.startswith(f"{DEFAULT_MODEL} (data=samples) [llava] @") and label == report_label(run_a)


def test_table_names_units_and_rows_per_benchmark():
    from types import SimpleNamespace

    outcome = SimpleNamespace(headline={"pope": {"f1": 80.0}, "ocrbench": {"points": 412.0}},
                              skipped_by_benchmark={}, rows={"pope": 9, "ocrbench": 3}, results_path="r.json",
                              results={"stf_bench": {"model": "stf-tiny", "protocol": "llava", "data": "hub"}})
    lines = run_cli.format_table(outcome).split("\n\n")[1].splitlines()
    assert lines[2].split() == ["pope", "f1", "80.00", "%", "9"]
    assert lines[3].split() == ["ocrbench", "points", "412.00", "points/1000", "3"]


def test_table_names_model_method_protocol_data_and_partial():
    from types import SimpleNamespace

    results = {"stf_bench": {"model": "llava-tiny", "model_args": {"k": 4, "method": "fastv", "method.k": 2},
                             "protocol": "llava", "data": "samples", "limit": 3},
               "n-samples": {"stf_pope": {"effective": 3, "original": 36}}}
    outcome = SimpleNamespace(headline={"pope": {"f1": 50.0, "f1_adversarial": 50.0, "accuracy": 66.7}},
                              skipped_by_benchmark={}, rows={"pope": 3}, results_path="r.json", results=results)
    header, table, _ = run_cli.format_table(outcome).split("\n\n")
    described = dict(line.split(":", 1) for line in header.splitlines())
    assert {k: v.strip() for k, v in described.items()} == {
        "model": "llava-tiny (k=4)", "method": "fastv(k=2)", "protocol": "llava",
        "data": "samples (the embedded sample rows, not the benchmarks: not comparable with the paper)",
        "partial": "stf_pope 3 of 36 rows (--limit 3)"}
    assert "f1 (mean of 1 of 3 splits: adversarial)" in table.splitlines()[2]
    results["stf_bench"].update(data="local", data_dir="/d", limit=None, model_args={})
    results["n-samples"] = {"stf_pope": {"effective": 36, "original": 36}}
    outcome.headline = {"pope": {"f1": 1.0, "f1_adversarial": 1.0, "f1_popular": 1.0, "f1_random": 1.0}}
    header, table, _ = run_cli.format_table(outcome).split("\n\n")
    assert header.splitlines()[1:] == ["method:   none", "protocol: llava", "data:     local (/d)", "partial:  no"]
    assert table.splitlines()[2].split()[:3] == ["pope", "f1", "1.00"]


@pytest.mark.parametrize("extra, expected", [
    ([], "run the same command again to resume"),
    (["--no-resume"], "no answers were kept"),
])
def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, monkeypatch, capsys, extra, expected):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_cli, "run", interrupted)
    assert main(["run", "--output-dir", str(tmp_path / "o"), *extra]) == 130
    err = capsys.readouterr().err
    assert "stf-bench run: interrupted" in err and expected in err
    if not extra:
        assert str(tmp_path / "o" / ".resume") in err
