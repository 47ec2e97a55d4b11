"""`stf-bench flops`: JSON shape, conventions, paper tables, formats, errors and the results store."""

from __future__ import annotations

import json
import re

import pytest

from stf_bench.cli import main


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["flops", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_paper_json(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(capsys, "--model", "stf-7b", "--model-args", "k=4,e=8", "--format", "json", "--no-store")
    assert code == 0
    report = json.loads(out)
    assert report["model"] == "stf-7b (k=4,e=8)" and report["convention"] == "paper"
    assert report["visual_tokens"] == 288 and round(report["tflops"], 1) == 3.8
    assert report["components"] == {"llm": report["tflops"]} and report["attention"] == "eager"
    assert report["details"]["k"] == 4 and report["details"]["e"] == 8


def test_prefill_json_has_components_summing_to_the_total(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(capsys, "--model", "stf-7b", "--convention", "prefill", "--format", "json", "--no-store")
    assert code == 0
    report = json.loads(out)
    assert list(report["components"]) == ["vision_tower", "mbtf", "stf", "llm", "lm_head"]
    assert report["tflops"] == pytest.approx(sum(report["components"].values()))
    assert report["text_tokens"] > 20 and report["visual_tokens"] == 144
    assert report["tflops"] > 1.876 and "prompts_source" in report and "USER: <image>" in report["details"]["prompt"]


def test_table_json_and_text(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(capsys, "--table", "3", "--format", "json", "--no-store")
    assert code == 0
    rows = json.loads(out)["rows"]
    assert [r["method"] for r in rows] == ["LLaVA-1.5 (baseline, full tuning)", "MBTF", "STF", "MBTF + STF"]
    assert [r["published_tflops"] for r in rows] == [7.6, 7.6, 1.9, 1.9]
    assert [round(r["computed"]["tflops"], 1) for r in rows] == [7.6, 7.6, 1.9, 1.9]
    code, out, _ = run_cli(capsys, "--table", "2", "--no-store")
    assert "no preset" in out and out.count(" yes") == 4  # LLaVA-1.5, PruMerge+ (144 tokens), AvgPool, STC
    (fastv,) = [line for line in out.splitlines() if line.startswith("FastV ")]
    assert fastv.split()[-4:] == ["2.236", "2.2", "1.9", "NO"]  # k=2, r=0.75 is not the paper's 1.9


@pytest.mark.parametrize("fmt,needle", [("md", "| vision_tower |"), ("latex", r"vision\_tower &"),
                                        ("table", "vision_tower")])
def test_formats(capsys: pytest.CaptureFixture, fmt: str, needle: str) -> None:
    code, out, _ = run_cli(capsys, "--model", "stf-tiny", "--convention", "prefill", "--format", fmt, "--no-store")
    assert code == 0 and needle in out and "prefill convention" in out


@pytest.mark.parametrize("argv,message", [
    (["--model", "stf-70b"], "unknown model preset 'stf-70b'"),
    (["--model", "stf-7b", "--model-args", "e=3"], "e=3 does not divide"),
    ([], "--model"),
    (["--table", "5", "--model", "stf-7b"], "--table"),
])
def test_bad_input(capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    code, out, err = run_cli(capsys, *argv, "--no-store")
    assert code == 2 and out == "" and message in err


def test_result_is_recorded_in_the_store(capsys: pytest.CaptureFixture, tmp_path) -> None:
    db = tmp_path / "store.sqlite"
    assert run_cli(capsys, "--model", "llava-1.5-7b", "--db", str(db))[0] == 0
    from stf_bench.store.db import open_store

    with open_store(db) as store:
        (row,) = store.flops()
    assert row["model"] == "llava-1.5-7b" and row["convention"] == "paper" and row["visual_tokens"] == 576


def test_a_tiny_preset_is_shown_in_a_unit_that_fits(capsys: pytest.CaptureFixture) -> None:
    """stf-tiny's paper-convention count is some MFLOPs: never printed as 0.0000 TFLOPs; the unit is always named."""
    code, out, _ = run_cli(capsys, "--model", "stf-tiny", "--no-store")
    assert code == 0 and "0.0000" not in out
    (header,) = [line for line in out.splitlines() if line.lstrip().startswith("component")]
    unit = header.split()[-1]
    assert unit in ("GFLOPs", "MFLOPs", "kFLOPs")
    code, out, _ = run_cli(capsys, "--model", "stf-7b", "--no-store")
    assert code == 0 and "TFLOPs" in out and "1.8760" in out  # full-size presets stay in the paper's unit


def test_prefill_text_tokens_are_not_confused_with_the_vocabulary(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(capsys, "--model", "stf-tiny", "--convention", "prefill", "--no-store")
    (line,) = [line for line in out.splitlines() if "text tokens:" in line]
    assert code == 0 and "vocabulary of" in line and not re.search(r"\d tokens", line.split("(", 1)[1])
