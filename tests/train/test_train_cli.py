"""`stf-bench train` end to end on tiny presets: stage 1 changes only the projector, stage 2 the LLM and the
projector and never the vision tower, and `stf-bench run` evaluates the result; bad input exits 2 with one line."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from stf_bench.cli import main
from stf_bench.models import load_model
from stf_bench.train import outputs

QUICK = ["--max-steps", "1", "--global-batch-size", "2", "--warmup-ratio", "0", "--save-steps", "1"]


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before: dict, after: dict, prefix: str) -> tuple[list[str], list[str]]:
    keys = [k for k in before if k.startswith(prefix)]
    changed = [k for k in keys if not torch.equal(before[k], after[k])]
    return changed, [k for k in keys if k not in changed]


@pytest.mark.parametrize("preset", ["stf-tiny", "llava-tiny"])
def test_pretrain_then_finetune_then_run(preset, tmp_path, monkeypatch, capsys):
    initial = _state(load_model(preset, seed=42)[0])  # what train builds (seed = the recipe's)
    captured = {}
    real_save = outputs.save_projector

    def keep(model, out):
        captured["stage1"] = _state(model)
        return real_save(model, out)

    monkeypatch.setattr(outputs, "save_projector", keep)
    stage1, stage2 = tmp_path / "pretrain", tmp_path / "finetune"
    assert main(["train", "--stage", "pretrain", "--model", preset, "--output-dir", str(stage1), *QUICK]) == 0
    after1 = captured["stage1"]
    changed, kept = _changed(initial, after1, "model.multi_modal_projector.")
    assert changed and not kept  # every projector tensor trained
    assert all(torch.equal(initial[k], after1[k]) for k in initial if ".multi_modal_projector." not in k)
    stage1_file = torch.load(stage1 / "mm_projector.bin", weights_only=True)
    assert all(k.startswith(("model.mm_projector.", "model.mm_projector_crosslayer.")) for k in stage1_file)
    with_projector, _ = load_model(preset, seed=42, projector_weights=stage1 / "mm_projector.bin")
    loaded = _state(with_projector)
    assert all(torch.equal(loaded[k], after1[k]) for k in after1)  # the file holds exactly the trained projector

    assert main(["train", "--stage", "finetune", "--model", preset, "--projector", str(stage1),
                 "--output-dir", str(stage2), *QUICK]) == 0
    after2 = _state(load_model(stage2)[0])
    assert all(torch.equal(after1[k], after2[k]) for k in after1 if k.startswith("model.vision_tower."))
    changed, kept = _changed(after1, after2, "model.multi_modal_projector.")
    assert changed and not kept
    for prefix in ("model.language_model.", "lm_head."):
        changed, kept = _changed(after1, after2, prefix)
        assert changed and not kept, kept
    record = json.loads((stage2 / "training.json").read_text())
    assert record["steps"] == 1 and record["preset"] == preset and record["recipe"]["max_grad_norm"] == 0.0
    assert record["recipe"]["template"] == "v1" and record["recipe"]["image_aspect_ratio"] == "pad"
    capsys.readouterr()
    assert main(["run", "--model", str(stage2), "--tasks", "pope,gqa", "--limit", "8", "--no-progress",
                 "--output-dir", str(tmp_path / "eval")]) == 0
    assert "pope" in capsys.readouterr().out


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert "unknown or missing --stage 'stage3'" in _error(capsys, ["train", "--stage", "stage3", "--output-dir",
                                                                    str(out)])
    with monkeypatch.context() as m:  # the test install has DeepSpeed: hide it
        real = importlib.util.find_spec
        m.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "deepspeed" else real(n, *a))
        assert "--deepspeed needs DeepSpeed, which is not installed" in _error(
            capsys, ["train", "--stage", "pretrain", "--deepspeed", "zero2", "--output-dir", str(out)])
    bad = tmp_path / "ds.json"
    bad.write_text("{not json")
    assert "is not valid JSON" in _error(capsys, ["train", "--stage", "pretrain", "--deepspeed", str(bad),
                                                  "--output-dir", str(out)])
    assert "not a multiple of --per-device-batch-size" in _error(
        capsys, ["train", "--stage", "pretrain", "--global-batch-size", "3", "--per-device-batch-size", "2",
                 "--output-dir", str(out)])
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"id": "x", "conversations": [{"from": "human", "value": "q"},
                                                              {"from": "human", "value": "q"}]}]))
    assert "row 0 (id 'x'): roles do not alternate" in _error(
        capsys, ["train", "--stage", "finetune", "--data-path", str(rows), "--output-dir", str(out)])
    out.mkdir()
    (out / "training.json").write_text("{}")
    assert "already holds a training run; pass --resume" in _error(
        capsys, ["train", "--stage", "pretrain", "--output-dir", str(out)])
    assert not (out / "mm_projector.bin").exists()


def test_a_projector_that_does_not_fit_names_the_key_and_both_shapes(tmp_path, capsys):
    model, _ = load_model("stf-tiny")
    torch.save(outputs.projector_state(model), tmp_path / "mm_projector.bin")
    finetune = ["train", "--stage", "finetune", "--projector", str(tmp_path), "--output-dir", str(tmp_path / "out"),
                *QUICK]
    line = _error(capsys, [*finetune, "--model", "llava-tiny"])
    assert "mm_projector.bin: unexpected key model.mm_projector_crosslayer." in line
    line = _error(capsys, [*finetune, "--model", "stf-tiny", "--model-args", "e=4"])
    assert "mm_projector.bin: stf.0.weight has shape [" in line and "the model expects [" in line
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_dump_examples_writes_one_line_per_row_without_weights(tmp_path, capsys):
    dump = tmp_path / "rows.jsonl"
    assert main(["train", "--stage", "pretrain", "--dump-examples", str(dump)]) == 0
    lines = [json.loads(x) for x in dump.read_text().splitlines()]
    assert len(lines) == 96 and set(lines[0]) == {"id", "input_ids", "labels"}
    assert all(r["input_ids"][:2] == [1, -200] and r["labels"][:2] == [-100, -100] for r in lines)


def test_help_lists_every_recipe_flag_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in [("--learning-rate", "0.001 (pretrain) / 2e-05 (finetune)"),
                          ("--global-batch-size", "256 (pretrain) / 128 (finetune)"), ("--warmup-ratio", "0.03"),
                          ("--weight-decay", "default 0"), ("--max-grad-norm", "default 0"),
                          ("--lr-scheduler", "cosine"), ("--model-max-length", "2048"), ("--bf16", "auto"),
                          ("--template", "plain (pretrain) / v1 (finetune)"), ("--image-aspect-ratio", "crop"),
                          ("--group-by-modality", "on (finetune)"), ("--gradient-checkpointing", "default on"),
                          ("--deepspeed", "zero2, zero3")]:
        assert flag in text and default in text, flag


def test_resume_after_a_crash_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file

    from stf_bench.train.trainer import StageTrainer

    run = ["train", "--stage", "finetune", "--model", "llava-tiny", "--max-steps", "4", "--save-steps", "2",
           "--global-batch-size", "2", "--save-total-limit", "2"]
    assert main([*run, "--output-dir", str(tmp_path / "whole")]) == 0
    assert "finetuning without a stage-1 projector" in capsys.readouterr().err  # allowed, but said
    real_step, calls = StageTrainer.training_step, []

    def crash_at_third(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # after checkpoint-2 was written
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(StageTrainer, "training_step", crash_at_third)
    assert main([*run, "--output-dir", str(tmp_path / "cut")]) == 130
    assert "the same command with --resume continues" in capsys.readouterr().err
    assert (tmp_path / "cut" / "checkpoint-2").is_dir() and not (tmp_path / "cut" / "model.safetensors").exists()
    assert main([*run, "--output-dir", str(tmp_path / "cut")]) == 2  # a run is there: refused without --resume
    resumed_steps = []

    def count(self, *args, **kwargs):
        resumed_steps.append(1)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(StageTrainer, "training_step", count)
    assert main([*run, "--output-dir", str(tmp_path / "cut"), "--resume"]) == 0
    assert len(resumed_steps) == 2  # steps 3 and 4 only: it continued from checkpoint-2
    whole, resumed = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert json.loads((tmp_path / "cut" / "training.json").read_text())["steps"] == 4


@pytest.mark.slow
def test_two_processes_with_torchrun_train_and_the_first_alone_writes(tmp_path, free_port):
    import os
    import subprocess
    import sys

    from stf_bench.train.samples import build_train_samples

    images, _, finetune = build_train_samples()
    (tmp_path / "images").mkdir()
    rows = finetune[:6] + finetune[-2:]  # image rows and text-only rows
    for row in rows:
        if "image" in row:
            (tmp_path / "images" / row["image"]).write_bytes(images[row["image"]])
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port),
         "-m", "stf_bench.cli", "train",
         "--stage", "finetune", "--model", "llava-tiny", "--data-path", str(tmp_path / "rows.json"),
         "--image-folder", str(tmp_path / "images"), "--output-dir", str(tmp_path / "out"), "--max-steps", "2",
         "--global-batch-size", "4", "--per-device-batch-size", "2", "--warmup-ratio", "0"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 per device x 1 accumulation x 2 processes" in proc.stderr
    assert proc.stderr.count("stf-bench train: 2 steps") == 1
    assert json.loads((tmp_path / "out" / "training.json").read_text())["recipe"]["processes"] == 2
    load_model(tmp_path / "out")
