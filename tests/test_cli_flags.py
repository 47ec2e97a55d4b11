"""`stf-bench` flag spelling: no silent abbreviations, lmms-eval's underscore spellings, did-you-mean (item 12)."""

from __future__ import annotations

import json

import pytest

from stf_bench.cli import _subparser, build_parser, main, normalize_flags
from stf_bench.errors import StfBenchError


def _run_parser():
    """The `run` sub-command's parser, as main builds it."""
    return _subparser(build_parser(["run"]), "run")


@pytest.mark.parametrize("argv", [["run", "--lim", "2", "--task", "gqa"], ["models", "--form", "json"]])
def test_abbreviations_are_refused_with_the_closest_flag(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "unrecognized argument --" in err and "did you mean --" in err


def test_unknown_flag_names_the_closest_one(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--limt", "2"])
    assert exc.value.code == 2 and "did you mean --limit?" in capsys.readouterr().err


def test_lmms_eval_spellings_are_aliases():
    argv = normalize_flags(["run", "--model_args", "k=4", "--batch_size=2", "--output_path", "o", "--no_resume"],
                           _run_parser())
    assert argv == ["run", "--model-args", "k=4", "--batch-size=2", "--output-dir", "o", "--no-resume"]


def test_underscore_alias_reaches_the_command(capsys):
    outputs = []
    for argv in (["--model_args", "k=2,e=2"], ["--model-args", "k=2,e=2"], []):
        assert main(["models", *argv, "--format", "json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0] == outputs[1] != outputs[2]


@pytest.mark.parametrize("flag, hint", [("--log_samples", "always writes the per-sample answers"),
                                        ("--gen_kwargs", "--protocol")])
def test_lmms_eval_flags_without_counterpart_say_what_to_use(flag, hint, capsys):
    assert main(["run", flag, "x=1"]) == 2
    err = capsys.readouterr().err
    assert f"{flag} is an lmms-eval flag" in err and hint in err
    with pytest.raises(StfBenchError, match=hint):
        normalize_flags(["run", flag], _run_parser())


class _ClosedPipe:
    """A stdout whose reader has gone away (`stf-bench models | head`)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise ValueError("no file descriptor")


def test_closed_stdout_ends_quietly(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdout", _ClosedPipe())
    assert main(["models", "--format", "json"]) == 141
    monkeypatch.undo()
    assert capsys.readouterr().err == ""
