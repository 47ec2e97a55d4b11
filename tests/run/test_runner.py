"""The runner over a tiny two-task registry: lmms-eval layout, bad rows, empty data, reuse of one model, resume."""

from __future__ import annotations

import json

import pytest

from stf_bench.errors import StfBenchError
from stf_bench.run.runner import RESUME_DIR, RunSpec, evaluate


@pytest.fixture(scope="module")
def lm():
    from stf_bench.adapter.lmms_model import StfBenchLmms

    return StfBenchLmms(preset="stf-tiny", device="cpu", dtype="float32", batch_size=4)


def _spec(tmp_path, **kw) -> RunSpec:
    kw.setdefault("model", "stf-tiny")  # the model `lm` was built from (the run names its output folder after it)
    return RunSpec(output_dir=str(tmp_path / "out"), show_progress=False, **kw)


def _predictions(outcome) -> dict[str, list]:
    out = {}
    for path in outcome.sample_paths:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        out[path.name.split("_samples_")[1]] = [(r["doc_id"], r["filtered_resps"]) for r in sorted(rows, key=lambda r: r["doc_id"])]
    return out


def test_writes_lmms_eval_layout_and_counts_a_bad_row(tmp_path, lm, tiny_tasks):
    reg = tiny_tasks(bad_rows=(0, 2))  # lmms-eval decodes row 0 while building a task: it must not crash
    outcome = evaluate(_spec(tmp_path), lm=lm, task_registry=reg)
    assert outcome.results_path.parent == tmp_path / "out" / "stf-tiny"
    saved = json.loads(outcome.results_path.read_text())
    assert set(saved["results"]) == {"stfb_tiny_a", "stfb_tiny_b"}
    assert saved["stf_bench"]["n_skipped"] == {"stfb_tiny_a": 2, "stfb_tiny_b": 2}
    assert "image missing or unreadable" in saved["stf_bench"]["skipped"]["stfb_tiny_a"][0]["reason"]
    assert outcome.skipped_by_benchmark == {"stfb_tiny_a": 2, "stfb_tiny_b": 2}
    preds = _predictions(outcome)
    assert [d for d, _ in preds["stfb_tiny_a.jsonl"]] == list(range(6))
    assert [d for d, p in preds["stfb_tiny_a.jsonl"] if p == ""] == [0, 2]
    metric = saved["results"]["stfb_tiny_a"]["pred_len,none"]
    lengths = [len(p) for _, p in preds["stfb_tiny_a.jsonl"]]
    assert metric == pytest.approx(sum(lengths) / 6)
    assert outcome.headline["stfb_tiny_a"]["pred_len"] == pytest.approx(100 * metric)


def test_second_evaluation_with_the_same_model_instance(tmp_path, lm, tiny_tasks):
    reg = tiny_tasks()
    first = evaluate(_spec(tmp_path, resume=False), lm=lm, task_registry=reg)
    second = evaluate(_spec(tmp_path, resume=False), lm=lm, task_registry=reg)  # lmms-eval called lm.clean() between
    assert second.headline == first.headline and _predictions(second) == _predictions(first)
    assert second.results_path != first.results_path


def test_rerun_reuses_every_cached_answer(tmp_path, lm, tiny_tasks):
    reg = tiny_tasks()
    first = evaluate(_spec(tmp_path), lm=lm, task_registry=reg)
    assert first.results["stf_bench"]["resumed_answers"] == 0
    again = evaluate(_spec(tmp_path), lm=lm, task_registry=reg)
    assert again.results["stf_bench"]["resumed_answers"] == 12
    assert again.headline == first.headline and _predictions(again) == _predictions(first)
    assert list((tmp_path / "out" / RESUME_DIR).iterdir())[0].name == lm.identity_hash


def test_empty_dataset_is_an_error_and_writes_no_results(tmp_path, lm, tiny_tasks):
    reg = tiny_tasks(empty=True)
    with pytest.raises(StfBenchError, match="no rows"):
        evaluate(_spec(tmp_path), lm=lm, task_registry=reg)
    assert not list((tmp_path / "out").glob("*/*_results.json"))


def test_all_rows_unreadable_is_an_error_not_a_zero(tmp_path, lm, tiny_tasks):
    reg = tiny_tasks(rows=3, bad_rows=(0, 1, 2))
    with pytest.raises(StfBenchError, match="all 3 rows were skipped"):
        evaluate(_spec(tmp_path), lm=lm, task_registry=reg)
    assert not list((tmp_path / "out").glob("*/*_results.json"))


def test_unknown_task_is_an_error(tmp_path, lm, tiny_tasks):
    reg = tiny_tasks()
    with pytest.raises(StfBenchError, match="unknown task"):
        evaluate(_spec(tmp_path, tasks="nope"), lm=lm, task_registry=reg)


def test_honesty_check_counts_rows_of_a_fractional_limit():
    from stf_bench.run.runner import check_honest

    results = {"n-samples": {"t": {"original": 10, "effective": 0.5}}}
    check_honest(results, {"t": [{"doc_id": 0, "reason": "x"}]})  # 1 of 5 rows skipped: fine
    with pytest.raises(StfBenchError, match="all 5 rows"):
        check_honest(results, {"t": [{"doc_id": i, "reason": "x"} for i in range(5)]})


def test_a_task_that_fails_to_load_is_named_not_printed_as_its_config(monkeypatch):
    import lmms_eval.tasks

    from stf_bench.run.runner import load_tasks

    def get_task_dict(specs, task_manager):  # lmms-eval pops "task" out of the config, then reads the rows
        specs[0].pop("task")
        raise KeyError("question")

    monkeypatch.setattr(lmms_eval.tasks, "get_task_dict", get_task_dict)
    spec = {"task": "stf_pope", "dataset_path": "parquet", "dataset_kwargs": {"data_files": {"test": ["x.parquet"]}}}
    with pytest.raises(StfBenchError, match="task 'stf_pope': the data has no column 'question'") as exc:
        load_tasks([spec], None)
    assert "dataset_path" not in str(exc.value)


@pytest.mark.parametrize("show", [True, False])
def test_no_progress_silences_lmms_evals_bars_too(tmp_path, lm, tiny_tasks, capfd, show):
    spec = RunSpec(model="stf-tiny", output_dir=str(tmp_path / "out"), show_progress=show, resume=False)
    outcome = evaluate(spec, lm=lm, task_registry=tiny_tasks())
    err = capfd.readouterr().err
    assert outcome.rows == {"stfb_tiny_a": 6, "stfb_tiny_b": 6}
    assert ("it/s]" in err) == show, err[-2000:]
    if show:  # one bar for the run (the adapter's), not lmms-eval's build and postprocessing bars per task
        labels = {line.split("|")[0].rsplit(":", 1)[0].strip() for line in err.replace("\r", "\n").splitlines()
                  if "it/s]" in line}
        assert labels == {"stf-bench generate"}, labels


def test_saving_results_never_copies_the_weights(tmp_path, lm, tiny_tasks, monkeypatch):
    """lmms-eval logs the model object as `model_source` and its tracker deep-copies that when it saves: on a 7B
    run that was a second copy of every weight (OOM at 24 GB). The saved source is the adapter's name."""
    import torch

    def refuse(self, memo):
        raise AssertionError("a model parameter was deep-copied while saving results")

    monkeypatch.setattr(torch.nn.Parameter, "__deepcopy__", refuse)
    outcome = evaluate(_spec(tmp_path), lm=lm, task_registry=tiny_tasks())
    assert json.loads(outcome.results_path.read_text())["model_source"] == "stf_bench"


# ---------------------------------------------------------------- issue 24 item 6: faults while writing results


def test_results_are_written_in_lmms_evals_own_format(tmp_path):
    """stf-bench writes the results and samples itself (atomically); the bytes are those lmms-eval's tracker writes."""
    import copy

    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    from stf_bench.run.runner import _save

    samples = {"t": [{"doc_id": i, "doc": {"q": i}, "target": i, "arguments": [f"prompt {i}", {}],
                      "resps": [[f"a{i}"]], "filtered_resps": [f"a{i}"], "doc_hash": f"h{i}"} for i in range(3)]
               + [{"doc_id": 3, "doc": {}, "target": "x", "arguments": ["p", {}], "resps": [["raw"]],
                   "filtered_resps": ["clean"], "doc_hash": "h3"}]}
    results = {"results": {"t": {"exact_match,none": 0.5}}, "configs": {"t": {}}}
    theirs = EvaluationTracker(output_path=str(tmp_path / "theirs"))
    theirs.general_config_tracker.model_name_sanitized = "m"
    theirs.save_results_aggregated(results=copy.deepcopy(results), samples=copy.deepcopy(samples),
                                   datetime_str="D")
    theirs.save_results_samples(task_name="t", samples=copy.deepcopy(samples)["t"])
    ours = EvaluationTracker(output_path=str(tmp_path / "ours"))
    ours.general_config_tracker.model_name_sanitized = "m"
    results_path, (sample_path,) = _save(ours, results, samples, "D", tmp_path / "ours", "m")
    assert sample_path.read_text() == (tmp_path / "theirs" / "m" / "D_samples_t.jsonl").read_text()
    mine, reference = json.loads(results_path.read_text()), json.loads((tmp_path / "theirs/m/D_results.json").read_text())
    for times in ("start_time", "end_time", "total_evaluation_time_seconds", "model_source"):
        mine.pop(times, None), reference.pop(times, None)
    assert mine == reference


def _fail_when_writing(monkeypatch, folder, error=28):
    """fsync fails with `error` (ENOSPC) for files inside `folder`, as a full disk does on the way out."""
    import os

    real = os.fsync

    def fsync(fd):
        if str(folder) in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(error, os.strerror(error))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_leaves_no_results_file_and_says_so(tmp_path, lm, tiny_tasks, monkeypatch):
    """A full disk while saving: one line naming the folder, and neither a results file nor a truncated samples
    file (lmms-eval's tracker logged a warning and left a valid-looking results file beside a truncated one)."""
    _fail_when_writing(monkeypatch, tmp_path / "out" / "stf-tiny")
    with pytest.raises(StfBenchError, match=f"no space left on {tmp_path / 'out'}"):
        evaluate(_spec(tmp_path), lm=lm, task_registry=tiny_tasks())
    assert [p.name for p in (tmp_path / "out" / "stf-tiny").iterdir()] == []


def test_a_second_run_into_a_locked_output_dir_is_refused(tmp_path, lm, tiny_tasks):
    """Two runs into one --output-dir interleaved their files (16 lines for 8 docs); the second is refused."""
    from stf_bench.run.runner import output_dir_lock

    with output_dir_lock(tmp_path / "out"):
        with pytest.raises(StfBenchError, match="is in use by another stf-bench run"):
            evaluate(_spec(tmp_path), lm=lm, task_registry=tiny_tasks())
    assert not (tmp_path / "out" / "stf-tiny").exists()
    outcome = evaluate(_spec(tmp_path), lm=lm, task_registry=tiny_tasks())  # released: the next run goes ahead
    assert len(outcome.sample_paths[0].read_text().splitlines()) == 6


def test_the_lock_dies_with_its_process(tmp_path):
    """A run killed with SIGKILL leaves no stale lock: the OS drops it with the process."""
    import os
    import signal
    import subprocess
    import sys

    from stf_bench.run.runner import output_dir_lock

    code = ("import sys, time; from pathlib import Path; from stf_bench.run.runner import output_dir_lock\n"
            "with output_dir_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(600)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(StfBenchError, match=f"pid {child.pid}"):
            with output_dir_lock(tmp_path):
                pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    with output_dir_lock(tmp_path):
        pass


def test_a_run_is_started_and_read_through_the_adapter_s_run_api(lm, tmp_path):
    from stf_bench.adapter.resume import AnswerCache

    lm.skipped = {("a task", 1): "a row of an earlier run"}
    lm.begin_run(AnswerCache(tmp_path), show_progress=False)
    assert lm.skipped == {} and lm.show_progress is False and lm.answer_cache is not None
    summary = lm.run_summary()
    assert summary.identity == lm.identity and summary.weights == json.loads(lm.identity)["weights"]
    assert (summary.world_size, summary.resumed_answers, summary.method_summary) == (1, 0, None)
    lm.begin_run(None, show_progress=False)
    assert lm.answer_cache is None and lm.run_summary().resumed_answers == 0
