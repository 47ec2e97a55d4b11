"""Ingesting lmms-eval output (written by lmms-eval itself) and stf-bench FLOPs/latency JSON into the store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stf_bench.errors import StfBenchError
from stf_bench.store.db import ingest_paths
from stf_bench.store.ingest import parse_paths, split_metric_key


def _results(lmms_out: Path, model: str) -> Path:
    return next((lmms_out / model).glob("*_results.json"))


def test_ingest_folder_records_every_number_of_the_results_file(store, lmms_out):
    results = ingest_paths(store, [lmms_out])
    runs = store.runs()
    assert [r.model for r in runs] == ["oracle-a", "oracle-b"]
    assert sum(r.added for r in results) == 2 + 2 * 4  # two runs, four samples files each
    for run in runs:
        data = json.loads(_results(lmms_out, run.model).read_text())
        stored = {(s.task, s.metric, s.filter): s for s in store.scores(run.id)}
        expected = {(t, *split_metric_key(k)[:2]): v for t, m in data["results"].items() for k, v in m.items()
                    if split_metric_key(k) and split_metric_key(k)[2] is None and isinstance(v, float | int)}
        assert expected and {k: s.value for k, s in stored.items()} == expected
        assert all(s.n == 24 for s in stored.values())
        assert run.protocol == "lmms-eval"
        # lmms-eval's `lmms_eval_version` is `git describe` of the folder it ran in (here stf-bench's checkout), not
        # its version: kept as such, and the run's lmms-eval version stays unknown (a foreign file does not say it)
        assert run.lmms_eval_version is None and run.environment["lmms_eval_describe"] == data["lmms_eval_version"]
        assert run.model_args == {"pretrained": run.model}
        assert store.sample_tasks(run.id) == sorted(data["results"])
        pope = store.samples(run.id, "pope")
        assert len(pope) == 24 and pope[0].metrics["pope_f1_score"]["ground_truth"] == "yes"


def test_ingesting_the_same_files_twice_adds_nothing(store, lmms_out):
    ingest_paths(store, [lmms_out])
    before = store.counts()
    again = ingest_paths(store, [lmms_out, _results(lmms_out, "oracle-a")])
    assert not any(r.added for r in again)
    assert store.counts() == before
    assert store.record_lmms_eval(_results(lmms_out, "oracle-b"))[0].added is False


def test_record_lmms_eval_keeps_what_the_caller_knows(store, lmms_out):
    env = {"device": "cpu", "libraries": {"torch": "x"}, "git_commit": "abc"}
    out = store.record_lmms_eval(_results(lmms_out, "oracle-a"), samples_paths=[], model="stf-tiny",
                                 model_args="k=2,e=1", checkpoint_fingerprint="sha256:ff", protocol="llava",
                                 environment=env, model_config={"projector_type": "mbtf+stf"})
    assert [r.kind for r in out] == ["run"]
    run = store.runs()[0]
    assert (run.model, run.model_args, run.protocol, run.checkpoint_fingerprint) == (
        "stf-tiny", {"k": 2, "e": 1}, "llava", "sha256:ff")
    assert run.environment == env and run.model_config == {"projector_type": "mbtf+stf"}
    assert store.sample_tasks(run.id) == []  # samples_paths=[]: none recorded
    # the samples can be added later to the same run (same results file), once
    later = store.record_lmms_eval(_results(lmms_out, "oracle-a"))
    assert [r.added for r in later] == [False, True, True, True, True]
    assert len(store.sample_tasks(run.id)) == 4


def test_default_environment_names_versions_and_source(store, lmms_out):
    ingest_paths(store, [_results(lmms_out, "oracle-a")])
    env = store.runs()[0].environment
    assert env["source"] == "ingest" and env["lmms_eval_describe"] and env["lmms_eval_version"] is None
    assert "torch" in env["ingested_with"]["libraries"] and env["ingested_with"]["python"]


def test_folder_discovery_skips_lmms_eval_submission_files(lmms_out):
    # lmms-eval's MMBench aggregation wrote submissions/mmbench_en_dev_results.json beside the output folder
    parsed = parse_paths([lmms_out.parent])
    assert len(parsed.runs) == 2
    assert any("mmbench_en_dev_results.json" in s for s in parsed.skipped)


def _copy_run(lmms_out: Path, tmp_path: Path, model: str = "oracle-a") -> Path:
    dst = tmp_path / "copy" / model
    shutil.copytree(lmms_out / model, dst)
    return dst


@pytest.mark.parametrize("content, expected", [
    ('{"results": {"pope": ', "not valid JSON"),
    ('{"foo": 1}', "expected an lmms-eval results file"),
    ('{"results": {"pope": 3}}', "expected an lmms-eval results file"),
    ('{"results": {}}', "'results' is empty"),
    ("\x00\x01binary", "not valid JSON"),
])
def test_corrupt_or_foreign_results_file_is_refused_and_nothing_is_written(store, lmms_out, tmp_path, content,
                                                                          expected):
    run_dir = _copy_run(lmms_out, tmp_path)
    bad = run_dir / "20990101_000000_results.json"
    bad.write_text(content)
    with pytest.raises(StfBenchError, match=expected) as err:
        ingest_paths(store, [tmp_path / "copy"])  # a valid run and a bad one: all or nothing
    assert str(bad) in str(err.value)
    assert store.counts() == dict.fromkeys(store.counts(), 0)


def test_corrupt_samples_line_names_file_and_line(store, lmms_out, tmp_path):
    run_dir = _copy_run(lmms_out, tmp_path)
    samples = next(run_dir.glob("*_samples_pope.jsonl"))
    lines = samples.read_text().splitlines()
    lines[3] = lines[3][:40]
    samples.write_text("\n".join(lines) + "\n")
    with pytest.raises(StfBenchError, match=rf"{samples.name}:4: not valid JSON"):
        store.record_lmms_eval(next(run_dir.glob("*_results.json")))
    assert store.counts()["runs"] == 0


def test_samples_of_a_task_the_results_file_lacks(store, lmms_out, tmp_path):
    run_dir = _copy_run(lmms_out, tmp_path)
    src = next(run_dir.glob("*_samples_pope.jsonl"))
    shutil.copy(src, src.with_name(src.name.replace("_pope", "_gqa")))
    with pytest.raises(StfBenchError, match="samples for task 'gqa'"):
        store.record_lmms_eval(next(run_dir.glob("*_results.json")))


def test_samples_file_alone_and_empty_folder_are_refused(store, lmms_out, tmp_path):
    with pytest.raises(StfBenchError, match="samples file on its own"):
        ingest_paths(store, [next((lmms_out / "oracle-a").glob("*_samples_pope.jsonl"))])
    (tmp_path / "empty").mkdir()
    with pytest.raises(StfBenchError, match="no lmms-eval results file"):
        ingest_paths(store, [tmp_path / "empty"])
    with pytest.raises(StfBenchError, match="no such file"):
        ingest_paths(store, [tmp_path / "nope.json"])


FLOPS = {"model": "stf-7b", "convention": "paper", "visual_tokens": 144, "tflops": 1.876, "components": {"llm": 1.876}}
LATENCY = {"device": {"type": "cuda", "name": "NVIDIA H100"}, "baseline": "llava-1.5-7b", "speedup": 3.4,
           "models": {"llava-1.5-7b": {"visual_tokens": 576, "ttft_per_sample_ms": {"mean": 30.0}},
                      "stf-7b": {"visual_tokens": 144, "ttft_per_sample_ms": {"mean": 8.8}}}}


def test_flops_and_latency_records_dedupe_by_content(store, tmp_path):
    assert store.record_flops(FLOPS).added and not store.record_flops(dict(FLOPS)).added
    assert [r.added for r in store.record_latency(LATENCY)] == [True, True]
    assert [r.added for r in store.record_latency(json.loads(json.dumps(LATENCY)))] == [False, False]
    rows = store.latency()
    assert [r["model"] for r in rows] == ["llava-1.5-7b", "stf-7b"] and rows[0]["device"] == "NVIDIA H100"
    assert rows[1]["payload"]["speedup"] == 3.4 and rows[0]["measurement"] == rows[1]["measurement"]
    assert store.flops()[0]["tflops"] == 1.876
    # the same JSON files through `ingest`
    (tmp_path / "f.json").write_text(json.dumps({**FLOPS, "tflops": 1.9}))
    (tmp_path / "l.json").write_text(json.dumps(LATENCY))
    added = [r.added for r in ingest_paths(store, [tmp_path / "f.json", tmp_path / "l.json"])]
    assert added == [True, False, False]


@pytest.mark.parametrize("payload", [{"model": "x", "convention": "paper", "visual_tokens": "144", "tflops": 1.0},
                                     {"model": "x", "convention": "paper", "visual_tokens": 144, "tflops": "nan"},
                                     {"convention": "paper", "visual_tokens": 144, "tflops": 1.0}])
def test_malformed_flops_payload(store, payload):
    with pytest.raises(StfBenchError, match="expected a stf-bench flops JSON object"):
        store.record_flops(payload)
    assert store.counts()["flops"] == 0


def test_malformed_latency_payload(store):
    for payload in ({"models": {}}, {"models": {"a": 3}}, {"device": "cpu"}):
        with pytest.raises(StfBenchError, match="expected a stf-bench latency JSON object"):
            store.record_latency(payload)


def test_split_metric_key():
    assert split_metric_key("exact_match,none") == ("exact_match", "none", None)
    assert split_metric_key("exact_match_stderr,none") == ("exact_match", "none", "")
    assert split_metric_key("pope_f1_score_stderr_clt,none") == ("pope_f1_score", "none", "_clt")
    assert split_metric_key("alias") is None


def _results_of(lmms_out, tmp_path):
    """A copy of oracle-a's run folder and its results JSON, parsed."""
    run_dir = _copy_run(lmms_out, tmp_path)
    path = next(run_dir.glob("*_results.json"))
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["results"]["pope"].update({k: "abc" for k in d["results"]["pope"] if k.endswith(",none")
                                            and "_stderr" not in k}), r"is 'abc', not a number"),
    (lambda d: d["results"].__setitem__("pope", {"alias": "pope"}), r"results\['pope'\] has no numeric metric"),
    (lambda d: d.pop("config"), r"no 'config' object.*--model NAME"),
])
def test_results_without_usable_numbers_or_config_are_refused(store, lmms_out, tmp_path, mutate, expected):
    path, data = _results_of(lmms_out, tmp_path)
    data.pop("group_subtasks", None)
    mutate(data)
    path.write_text(json.dumps(data))
    for sp in path.parent.glob("*_samples_*.jsonl"):
        sp.unlink()
    with pytest.raises(StfBenchError, match=expected):
        ingest_paths(store, [path])
    assert store.counts() == dict.fromkeys(store.counts(), 0)


def test_failed_ingest_creates_no_store_file(lmms_out, tmp_path, capsys):
    from stf_bench.cli import main

    path, data = _results_of(lmms_out, tmp_path)
    data["results"]["pope"] = {"alias": "pope"}
    path.write_text(json.dumps(data))
    db = tmp_path / "new.sqlite"
    assert main(["ingest", str(path), "--db", str(db)]) == 2
    assert "has no numeric metric" in capsys.readouterr().err
    assert not db.exists()


@pytest.mark.parametrize("where", ["samples", "data dir"])
def test_lmms_eval_on_the_sample_data_is_ingested_as_sample_data(where, tmp_path, store):
    """lmms-eval on `stf-bench lmms-tasks` files: the task config it wrote names the data, and a run on the
    embedded sample data is recorded as data=samples (a data dir's is not)."""
    from lmms_tasks_run import lmms_eval_pope, pope_data_dir

    data = pope_data_dir(tmp_path / "D", "no") if where == "data dir" else None
    out = lmms_eval_pope(tmp_path, "Yes", data)
    ingest_paths(store, [out])
    (run,) = store.runs()
    assert run.model == "llava-tiny"
    assert run.model_args.get("data") == ("samples" if where == "samples" else None)


def test_a_trained_checkpoints_training_record_is_read_and_checked(tmp_path):
    from lmms_run import TRAINING

    from stf_bench.store.ingest import TRAINING_FILE, read_training

    assert read_training(tmp_path) is None and read_training("stf-tiny") is None  # made elsewhere, or a preset
    (tmp_path / TRAINING_FILE).write_text(json.dumps(TRAINING))
    assert read_training(tmp_path) == TRAINING
    (tmp_path / TRAINING_FILE).write_text(json.dumps({k: v for k, v in TRAINING.items() if k != "steps"}))
    with pytest.raises(StfBenchError, match=r"training.json: the training record has no 'steps'"):
        read_training(tmp_path)
    (tmp_path / TRAINING_FILE).write_text("{not json")
    with pytest.raises(StfBenchError, match=r"training.json: not JSON .*restore the file `stf-bench train` wrote"):
        read_training(tmp_path)


def test_the_training_record_in_a_results_file_reaches_the_store(store, lmms_out, tmp_path):
    from lmms_run import TRAINING, with_training

    store.record_lmms_eval(with_training(lmms_out, "oracle-a", tmp_path / "trained"), model="runs/avgpool-7b",
                           model_args="data=hub")
    store.record_lmms_eval(_results(lmms_out, "oracle-b"), model="llava-tiny")
    trained, plain = store.runs()
    assert trained.training == TRAINING and plain.training is None
