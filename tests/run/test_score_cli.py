"""`stf-bench score`: re-scoring a run's saved predictions gives the run's scores, writes beside it, records it;
predictions made under another protocol, or with another prompt, are refused."""

from __future__ import annotations

import json

import pytest
from lmms_tasks_run import lmms_eval_pope, pope_data_dir

from stf_bench.cli import main
from stf_bench.store.db import open_store


@pytest.fixture(scope="module")
def run_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("score")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(out)
        code = main(["run", "--model", "llava-tiny", "--tasks", "pope,gqa", "--limit", "2", "--output-dir",
                     str(out / "results"), "--no-store", "--format", "json", "--no-progress"])
    assert code == 0
    return out / "results"


def _scores(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_score_prints_the_runs_scores_and_records_them(run_output, tmp_path, capsys):
    (results,) = run_output.glob("llava-tiny/*_results.json")
    ran = json.loads(results.read_text())["stf_bench"]["headline"]
    db = str(tmp_path / "store.sqlite")
    assert main(["score", str(run_output), "--format", "json", "--db", db]) == 0
    assert _scores(capsys) == ran  # the same numbers: the same answers through the same scorers
    assert len(list(run_output.glob("llava-tiny/*_results.json"))) == 2  # written beside the original
    with open_store(db) as store:
        (run,) = store.runs()
    assert run.model == "llava-tiny" and run.protocol == "llava"


@pytest.mark.parametrize("which", ["model folder", "samples file"])
def test_score_takes_a_model_folder_or_one_samples_file(run_output, which, capsys):
    folder = run_output / "llava-tiny"
    path = folder if which == "model folder" else sorted(folder.glob("*_samples_stf_pope.jsonl"))[0]
    assert main(["score", str(path), "--format", "json", "--no-store"]) == 0
    scores = _scores(capsys)
    assert "pope" in scores and (which == "model folder") == ("gqa" in scores)


def test_another_protocol_is_refused(run_output, capsys):
    assert main(["score", str(run_output), "--protocol", "lmms-eval", "--no-store"]) == 2
    assert "made under the llava protocol" in capsys.readouterr().err


def test_a_changed_prompt_is_refused(run_output, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_output, copy)
    (samples,) = sorted((copy / "llava-tiny").glob("*_samples_stf_pope.jsonl"))[-1:]
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    rows[0]["input"] = "Describe the image in detail."
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["score", str(samples), "--no-store"]) == 2
    assert "saved prompt differs" in capsys.readouterr().err


def test_a_path_without_results_is_refused(tmp_path, capsys):
    assert main(["score", str(tmp_path), "--no-store"]) == 2
    assert "no *_results.json" in capsys.readouterr().err


# ---------------------------------------------------------------- lmms-eval's own output, on a --data-dir


@pytest.fixture
def lmms_eval_output(tmp_path):
    """What `stf-bench lmms-tasks tasks/ --data-dir D` then `python -m lmms_eval --model stf_bench --model_args
    preset=llava-tiny,... --include_path tasks/ --output_path out/ --log_samples` writes, with a model that answers
    "Yes" to everything, on a D whose POPE answers are all "no" (F1 0; on the embedded samples, half "yes", it
    would be 66.67). Returns (out/, D)."""
    data = pope_data_dir(tmp_path / "D", "no")
    out = lmms_eval_pope(tmp_path, "Yes", data)
    (results,) = out.glob("*_results.json")
    assert json.loads(results.read_text())["results"]["stf_pope"]["pope_f1_avg,none"] == 0.0
    return out, data


def _files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_lmms_eval_output_is_scored_against_the_data_it_was_predicted_on(lmms_eval_output, tmp_path, capsys):
    out, _data = lmms_eval_output
    outside = set(_files(tmp_path)) - set(_files(out))
    db = tmp_path / "db" / "store.sqlite"
    assert main(["score", str(out), "--format", "json", "--db", str(db)]) == 0
    assert _scores(capsys)["pope"]["f1"] == 0.0  # not 66.67: the embedded samples were never joined by doc id
    assert len(list(out.glob("*_results.json"))) == 2  # beside the predictions, inside PATH
    assert {p for p in set(_files(tmp_path)) - set(_files(out)) - outside if db.parent not in p.parents} == set()
    with open_store(str(db)) as store:
        (run,) = store.runs()
    assert run.model == "llava-tiny"  # the model the run evaluated, not lmms-eval's name of the adapter
    assert run.model_args["data"] == "local" and run.lmms_eval_version == "0.7.3"


def test_missing_data_is_refused_naming_it(lmms_eval_output, capsys):
    out, data = lmms_eval_output
    data.rename(data.with_name("moved"))
    before = _files(out)
    assert main(["score", str(out), "--no-store"]) == 2
    err = capsys.readouterr().err
    assert "cannot be found" in err and str(data / "POPE") in err
    assert _files(out) == before  # nothing written


def test_other_data_under_the_same_file_names_is_refused(lmms_eval_output, capsys):
    out, data = lmms_eval_output
    pope_data_dir(data, "yes")
    before = _files(out)
    assert main(["score", str(out), "--no-store"]) == 2
    assert "not the data its predictions were made on" in capsys.readouterr().err
    assert _files(out) == before


def test_a_results_file_directly_in_a_folder_is_rescored_in_that_folder(run_output, tmp_path, capsys):
    import shutil

    flat = tmp_path / "a" / "b"
    flat.mkdir(parents=True)
    for file in (run_output / "llava-tiny").glob("*"):
        if file.is_file():
            shutil.copy(file, flat / file.name)
    copied = len(list(flat.glob("*_results.json")))
    assert main(["score", str(flat), "--no-store", "--format", "json"]) == 0
    assert _files(tmp_path) == _files(flat) and len(list(flat.glob("*_results.json"))) == copied + 1
