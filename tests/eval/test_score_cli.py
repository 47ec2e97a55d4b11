"""`stf-bench score`: re-scoring a run's saved predictions gives the run's scores, writes beside it, records it;
predictions made under another protocol, or with another prompt, are refused."""

from __future__ import annotations

import json

import pytest

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
