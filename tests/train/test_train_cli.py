"""`stf-bench train` end to end on tiny presets: stage 1 changes only the projector, stage 2 the LLM and the
projector and never the vision tower, and `stf-bench run` evaluates the result; bad input exits 2 with one line."""

from __future__ import annotations

import argparse
import importlib.util
import json

import pytest
import torch

from stf_bench.cli import main
from stf_bench.models import load_model
from stf_bench.train import outputs, samples
from stf_bench.train.cli import add_arguments

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


@pytest.mark.slow
def test_unfreeze_vision_tower_trains_it_at_its_own_lr_and_the_report_calls_it_tuned(tmp_path):
    """`--unfreeze-vision-tower` (LLaVA-NeXT's unfreeze_mm_vision_tower; the paper's Table 13): stage 2 changes the
    vision tower too, the record says so, and the report's attributes mark the checkpoint `vision_tuned`, the
    attribute Table 13's 'tuning vision encoder' row matches (baselines/tables.yaml)."""
    from stf_bench.report.attributes import run_attributes

    initial = _state(load_model("llava-tiny", seed=42)[0])
    out = tmp_path / "tuned"
    assert main(["train", "--stage", "finetune", "--model", "llava-tiny", "--output-dir", str(out),
                 "--unfreeze-vision-tower", "--vision-tower-lr", "1e-3", *QUICK]) == 0
    after = _state(load_model(out)[0])
    changed, _ = _changed(initial, after, "model.vision_tower.")
    assert changed  # the tower trained (frozen, it never changes: test_pretrain_then_finetune_then_run)
    record = json.loads((out / "training.json").read_text())
    assert record["recipe"]["unfreeze_vision_tower"] and record["recipe"]["vision_tower_lr"] == 1e-3
    assert run_attributes(str(out), training=record)["vision_tuned"] is True
    plain = {**record, "recipe": {**record["recipe"], "unfreeze_vision_tower": False}}
    assert run_attributes(str(out), training=plain)["vision_tuned"] is False


@pytest.mark.slow
def test_image_size_224_trains_and_evaluates_and_joins_table_11(tmp_path, capsys):
    """`--model-args image_size=224` (the paper's Table 11): both stages train a tiny STF at 224 px (a 16 x 16 grid,
    64 visual tokens after STF), `stf-bench run` evaluates the checkpoint at 224 px, and its attributes put it in
    Table 11 (`accepts: image_size 224 or 336`, baselines/tables.yaml)."""
    from stf_bench.report.attributes import matches, run_attributes

    pre, out = tmp_path / "pre", tmp_path / "ft"
    size = ["--model", "stf-tiny", "--model-args", "image_size=224"]
    assert main(["train", "--stage", "pretrain", *size, "--output-dir", str(pre), *QUICK]) == 0
    assert main(["train", "--stage", "finetune", *size, "--projector", str(pre), "--output-dir", str(out),
                 *QUICK]) == 0
    model, processor = load_model(out)
    assert model.config.vision_config.image_size == 224 and model.config.num_visual_tokens == 64
    assert main(["run", "--model", str(out), "--tasks", "pope", "--limit", "2", "--no-progress", "--no-store",
                 "--output-dir", str(tmp_path / "eval")]) == 0
    capsys.readouterr()
    record = json.loads((out / "training.json").read_text())
    attrs = run_attributes(str(out), model_config=model.config.to_dict(), training=record)
    assert attrs["image_size"] == 224 and matches(attrs, {"image_size": [224, 336]})
    assert "image_size=225: use a positive multiple of the patch size 14" in _error(
        capsys, ["train", "--stage", "pretrain", "--model", "stf-tiny", "--model-args", "image_size=225",
                 "--output-dir", str(tmp_path / "bad")])


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
    assert "--unfreeze-vision-tower needs --stage finetune" in _error(
        capsys, ["train", "--stage", "pretrain", "--unfreeze-vision-tower", "--output-dir", str(out)])
    assert "add --unfreeze-vision-tower or drop it" in _error(
        capsys, ["train", "--stage", "finetune", "--vision-tower-lr", "1e-4", "--output-dir", str(out)])
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
    assert len(lines) == samples.N_IMAGES and set(lines[0]) == {"id", "input_ids", "labels"}  # a caption per image
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
                          ("--deepspeed", "zero2, zero3"), ("--init", "base (default)")]:
        assert flag in text and default in text, flag
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    recipe = next(g for g in parser._action_groups if g.title.startswith("recipe"))
    assert len(recipe._group_actions) >= 20
    for action in recipe._group_actions:  # every recipe flag says its default
        assert "default" in action.help, action.option_strings


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


def _rows(tmp_path, stage: str, n: int, text_only: int = 0) -> list[str]:
    """`--data-path` / `--image-folder` flags for the first n image rows (+ text-only rows) of a training sample set."""
    from stf_bench.train.samples import build_train_samples

    images, pretrain, finetune = build_train_samples()
    pool = pretrain if stage == "pretrain" else finetune
    rows = [r for r in pool if "image" in r][:n] + [r for r in pool if "image" not in r][:text_only]
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    for row in rows:
        if "image" in row:
            (folder / row["image"]).write_bytes(images[row["image"]])
    path = tmp_path / f"{stage}.json"
    path.write_text(json.dumps(rows))
    return ["--data-path", str(path), "--image-folder", str(folder)]


def _losses(out) -> list[float]:
    return [e["loss"] for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]


@pytest.mark.slow
def test_deepspeed_zero2_and_zero3_in_one_process_train_as_the_plain_run(tmp_path, capsys, monkeypatch):
    """One process, no launcher, CPU (fp32, bf16 off): `--deepspeed zero2` and `zero3` log the plain Trainer's losses
    and write its weights: stage 1's mm_projector.bin gathered whole under ZeRO-3, stage 2's checkpoint read by
    load_model. Tolerance 1e-5 relative on losses and 1e-6 absolute on weights: the same fp32 forward and AdamW
    arithmetic, only DeepSpeed's flattened buffers and reductions may round differently; a recipe difference (e.g.
    DeepSpeed 0.19's default gradient clipping at 1.0 against these gradient norms of ~4) moves the second loss by
    far more. Under ZeRO-3 the model is built partitioned (deepspeed.zero.Init: every parameter split before the
    Trainer exists, the stage-1 projector written into it gathered), and its stage-2 checkpoint equals that of a
    ZeRO-3 run whose model is built whole (DeepSpeed splitting it when the engine starts, as before zero.Init)."""
    from transformers.modeling_utils import set_zero3_state

    from stf_bench.train import trainer as trainer_module

    at_trainer = {}  # run name -> (every parameter split, whole elements) when build_trainer makes the StageTrainer
    real_init = trainer_module.StageTrainer.__init__

    def recording_init(self, *a, model, **kw):
        params = list(model.parameters())
        at_trainer[current] = (all(hasattr(p, "ds_id") and p.numel() == 0 for p in params),
                               sum(trainer_module.numel(p) for p in params))
        real_init(self, *a, model=model, **kw)

    monkeypatch.setattr(trainer_module.StageTrainer, "__init__", recording_init)
    run = ["train", "--model", "llava-tiny", "--max-steps", "2", "--global-batch-size", "2", "--warmup-ratio", "0",
           "--save-steps", "100"]
    pretrain = [*run, "--stage", "pretrain", *_rows(tmp_path, "pretrain", 4)]
    for name in ("plain", "zero2", "zero3"):
        ds = [] if name == "plain" else ["--deepspeed", name]
        current = f"pre-{name}"
        assert main([*pretrain, "--output-dir", str(tmp_path / f"pre-{name}"), *ds]) == 0
        err = capsys.readouterr().err
        how = "no ZeRO" if name == "plain" else f"ZeRO-{name[-1]}"
        assert f"estimated memory per process ({how}, 1 process)" in err
        assert ("model built split over 1 process(es) by ZeRO-3's zero.Init" in err) == (name == "zero3")
    plain = _losses(tmp_path / "pre-plain")
    assert len(plain) == 2
    weights = torch.load(tmp_path / "pre-plain" / "mm_projector.bin", weights_only=True)
    for name in ("zero2", "zero3"):
        assert _losses(tmp_path / f"pre-{name}") == pytest.approx(plain, rel=1e-5), name
        theirs = torch.load(tmp_path / f"pre-{name}" / "mm_projector.bin", weights_only=True)
        assert theirs.keys() == weights.keys()
        for key in weights:
            assert theirs[key].shape == weights[key].shape, (name, key)  # ZeRO-3: gathered, not its empty slice
            assert torch.allclose(theirs[key], weights[key], rtol=0, atol=1e-6), (name, key)

    finetune = [*run, "--stage", "finetune", "--projector", str(tmp_path / "pre-plain"), *_rows(tmp_path, "finetune", 4)]
    for name in ("plain", "zero3", "zero3-whole"):
        ds = [] if name == "plain" else ["--deepspeed", "zero3"]
        current = f"ft-{name}"
        if name == "zero3-whole":  # the build as before zero.Init: whole in the process, split by the engine
            # (set_zero3_state alone: transformers' own zero.Init in the towers' from_config stays off too)
            monkeypatch.setattr(trainer_module, "partitioned_build", lambda enabled: set_zero3_state())
        assert main([*finetune, "--output-dir", str(tmp_path / f"ft-{name}"), *ds]) == 0
    total = at_trainer["pre-plain"][1]
    assert total > 0 and at_trainer["ft-plain"] == at_trainer["pre-zero2"] == at_trainer["ft-zero3-whole"] == (False, total)
    assert at_trainer["pre-zero3"] == at_trainer["ft-zero3"] == (True, total)
    plain_losses = _losses(tmp_path / "ft-plain")
    assert len(plain_losses) == 2
    assert _losses(tmp_path / "ft-zero3") == pytest.approx(plain_losses, rel=1e-5)
    assert _losses(tmp_path / "ft-zero3-whole") == pytest.approx(plain_losses, rel=1e-5)
    ours = _state(load_model(tmp_path / "ft-plain")[0])
    for other in ("ft-zero3", "ft-zero3-whole"):
        theirs = _state(load_model(tmp_path / other)[0])
        assert ours.keys() == theirs.keys()
        assert all(torch.allclose(ours[k], theirs[k], rtol=0, atol=1e-6) for k in ours), other
    whole, split = _state(load_model(tmp_path / "ft-zero3-whole")[0]), _state(load_model(tmp_path / "ft-zero3")[0])
    assert all(torch.allclose(whole[k], split[k], rtol=0, atol=1e-6) for k in whole)


@pytest.mark.slow
def test_two_processes_with_torchrun_and_deepspeed_zero3_complete(tmp_path):
    """2 processes, gloo on CPU, ZeRO-3, a micro-batch of image rows on one rank and text-only rows on the other (it
    hung before: the ranks made different collective calls); the first process writes a whole model."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "stf_bench.cli", "train",
         "--stage", "finetune", "--model", "llava-tiny", *_rows(tmp_path, "finetune", 6, text_only=2),
         "--output-dir", str(tmp_path / "out"), "--max-steps", "2", "--global-batch-size", "4",
         "--per-device-batch-size", "2", "--warmup-ratio", "0", "--deepspeed", "zero3"],
        env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "estimated memory per process (ZeRO-3, 2 processes)" in proc.stderr
    assert proc.stderr.count("stf-bench train: 2 steps") == 1
    assert "model built split over 2 process(es) by ZeRO-3's zero.Init" in proc.stderr
    assert len(_losses(tmp_path / "out")) == 2
    model, _ = load_model(tmp_path / "out")
    reference, _ = load_model("llava-tiny")
    assert {k: v.shape for k, v in _state(model).items()} == {k: v.shape for k, v in _state(reference).items()}


@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "unreachable"])
def test_a_full_size_preset_without_its_base_weights_offline_is_one_line(offline, tmp_path, capsys, monkeypatch):
    """stf-7b starts from Vicuna-7B-v1.5 and CLIP ViT-L/14-336: with neither cached and the hub out of reach, exit 2
    at once with the repos and the download command, nothing built or written."""
    import huggingface_hub.constants

    from stf_bench.models import loading

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    if offline == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(loading, "_hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(loading, "build_random", lambda *a, **k: pytest.fail("a model was built"))
    out = tmp_path / "out"
    line = _error(capsys, ["train", "--stage", "pretrain", "--model", "stf-7b", "--output-dir", str(out), *QUICK])
    assert "lmsys/vicuna-7b-v1.5 and openai/clip-vit-large-patch14-336" in line
    assert "`hf download lmsys/vicuna-7b-v1.5` and `hf download openai/clip-vit-large-patch14-336`" in line
    assert "--init random" in line
    assert not out.exists()
