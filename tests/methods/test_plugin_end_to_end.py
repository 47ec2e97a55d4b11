"""The example plug-in through every command: `run` (the method and its arguments in the store's identity and the
row label), `flops` (equal to the paper-convention count of a model with that many tokens) and `latency`."""

from __future__ import annotations

import json

import pytest

from stf_bench.cli import main
from stf_bench.report.attributes import row_label
from stf_bench.store.db import open_store


def test_run_with_random_drop_scores_and_records_the_method(random_drop_plugin, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = str(tmp_path / "store.sqlite")
    argv = ["run", "--model", "llava-tiny", "--method", "random-drop", "--method-args", "keep=16", "--tasks", "pope",
            "--limit", "2", "--output-dir", str(tmp_path / "out"), "--db", db, "--format", "json", "--no-progress"]
    assert main(argv) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"pope"} and 0 <= scores["pope"]["f1"] <= 100
    with open_store(db) as store:
        (run,) = store.runs()
    assert run.model_args["method"] == "random-drop"
    assert (run.model_args["method.keep"], run.model_args["method.seed"]) == (16, 0)  # defaults filled in
    assert row_label(run.model, run.model_args, run.protocol) == "llava-tiny (data=samples) + random-drop(keep=16, seed=0) [llava]"


def test_flops_of_random_drop_keep_144_equals_the_144_token_count(random_drop_plugin, capsys):
    assert main(["flops", "--model", "llava-1.5-7b", "--method", "random-drop", "--method-args", "keep=144",
                 "--format", "json", "--no-store"]) == 0
    dropped = json.loads(capsys.readouterr().out)
    assert main(["flops", "--model", "stf-7b", "--format", "json", "--no-store"]) == 0  # 144 tokens, same LLM
    stf = json.loads(capsys.readouterr().out)
    assert dropped["visual_tokens"] == stf["visual_tokens"] == 144
    assert dropped["tflops"] == stf["tflops"] == pytest.approx(1.876, abs=5e-4)
    assert dropped["model"] == "llava-1.5-7b + random-drop(keep=144, seed=0)"
    assert dropped["details"]["method_args"] == {"keep": 144, "seed": 0}


def test_latency_with_random_drop_times_the_reduced_model(random_drop_plugin, capsys):
    assert main(["latency", "--model", "llava-tiny", "--method", "random-drop", "--method-args", "keep=16",
                 "--batch-size", "1", "--warmup", "0", "--iters", "1", "--device", "cpu", "--format", "json",
                 "--no-store"]) == 0
    report = json.loads(capsys.readouterr().out)
    (figures,) = report["models"].values()
    assert figures["visual_tokens"] == 16


@pytest.mark.parametrize("argv,needle", [
    (["--method", "no-such-method"], "unknown method 'no-such-method'; registered: mlp2x_gelu"),
    (["--method", "random-drop", "--method-args", "kep=3"], "no argument 'kep'; valid: keep: int"),
    (["--method", "random-drop", "--method-args", "keep=0"], "keep=0 is out of range"),
    (["--method", "random-drop", "--method-args", "keep=999"], "valid: 1..576"),
    (["--method-args", "keep=3"], "without --method"),
    (["--method", "stf"], "is a projector"),
])
def test_bad_method_flags_exit_2_with_the_valid_ones(random_drop_plugin, argv, needle, capsys):
    assert main(["flops", "--model", "llava-tiny", *argv, "--no-store"]) == 2
    assert needle in capsys.readouterr().err


def test_a_vision_method_on_a_projector_that_mixes_tokens_is_refused(random_drop_plugin, capsys):
    assert main(["flops", "--model", "stf-tiny", "--method", "random-drop", "--no-store"]) == 2
    err = capsys.readouterr().err
    assert "does not map tokens one by one" in err and "mlp2x_gelu" in err


def test_the_question_reading_plugin_gets_each_requests_question_through_run_and_flops(question_keep_plugin,
                                                                                       tmp_path, capsys, monkeypatch):
    """examples/question-plugin through its entry point: `run` hands its `reduce` the question's word ids and
    embeddings of each request (never an empty question), the fast paths stay off for it, and `flops` counts it."""
    seen: list[list[int]] = []
    reduce = question_keep_plugin.reduce

    def recording(self, features, ctx):
        seen.extend(ids.numel() for ids in ctx.question_ids)
        assert all(e.shape == (ids.numel(), features.shape[-1]) for ids, e in zip(ctx.question_ids,
                                                                                   ctx.question_embeds))
        return reduce(self, features, ctx)

    monkeypatch.setattr(question_keep_plugin, "reduce", recording)
    monkeypatch.chdir(tmp_path)
    assert not question_keep_plugin.fast_paths().visual_cache
    argv = ["run", "--model", "llava-tiny", "--method", "question-keep", "--method-args", "keep=16", "--tasks",
            "pope", "--limit", "2", "--output-dir", str(tmp_path / "out"), "--no-store", "--format", "json",
            "--no-progress"]
    assert main(argv) == 0
    assert "pope" in json.loads(capsys.readouterr().out)
    assert len(seen) >= 2 and all(n > 0 for n in seen)  # every request's question reached the method
    assert main(["flops", "--model", "llava-1.5-7b", "--method", "question-keep", "--method-args", "keep=144",
                 "--format", "json", "--no-store"]) == 0
    assert json.loads(capsys.readouterr().out)["tflops"] == pytest.approx(1.876, abs=5e-4)  # the LLM over 144
