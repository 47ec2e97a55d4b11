"""LLaVA-1.5's recipe as defaults, the computed accumulation, and the DeepSpeed configs."""

from __future__ import annotations

import argparse
import importlib.util
import json

import pytest

from stf_bench.errors import StfBenchError
from stf_bench.train.recipe import add_recipe_arguments, deepspeed_config, resolve_recipe


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage")
    add_recipe_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("stage, lr, batch, per_device, template, aspect, grouped", [
    ("pretrain", 1e-3, 256, 32, "plain", "crop", False),
    ("finetune", 2e-5, 128, 16, "v1", "pad", True),
])
def test_defaults_are_llava_1_5s(monkeypatch, stage, lr, batch, per_device, template, aspect, grouped):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    recipe = resolve_recipe(_args("--stage", stage))
    assert (recipe.learning_rate, recipe.global_batch_size, recipe.per_device_batch_size) == (lr, batch, per_device)
    assert (recipe.template, recipe.image_aspect_ratio, recipe.group_by_modality) == (template, aspect, grouped)
    assert (recipe.weight_decay, recipe.max_grad_norm, recipe.warmup_ratio, recipe.lr_scheduler) == \
        (0.0, 0.0, 0.03, "cosine")
    assert recipe.gradient_checkpointing and recipe.model_max_length == 2048 and recipe.optim == "adamw_torch"
    assert recipe.gradient_accumulation_steps == batch // per_device  # one process: 8 accumulation steps
    assert not recipe.bf16 and not recipe.tf32  # a CPU has neither (the suite runs on CPU)
    assert json.loads(json.dumps(recipe.to_json()))["stage"] == stage


def test_accumulation_counts_the_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "8")
    recipe = resolve_recipe(_args("--stage", "pretrain"))
    assert recipe.gradient_accumulation_steps == 1
    assert recipe.batch_line() == "global batch 256 = 32 per device x 1 accumulation x 8 processes"
    assert resolve_recipe(_args("--stage", "finetune", "--global-batch-size", "16")).per_device_batch_size == 2
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(StfBenchError, match="not a multiple"):
        resolve_recipe(_args("--stage", "pretrain"))


@pytest.mark.parametrize("name, stage", [("zero2", 2), ("zero3", 3)])
def test_named_deepspeed_configs_are_llavas_without_gradient_clipping(monkeypatch, name, stage):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "deepspeed" else real(n, *a))
    config = deepspeed_config(name)
    assert config["gradient_clipping"] == 0.0 and config["zero_optimization"]["stage"] == stage
    assert config["train_batch_size"] == "auto" and config["bf16"] == {"enabled": "auto"}
    assert (config["zero_optimization"].get("stage3_gather_16bit_weights_on_model_save") is True) == (stage == 3)
    config["zero_optimization"]["stage"] = 0
    assert deepspeed_config(name)["zero_optimization"]["stage"] == stage  # a copy each time


def test_own_learning_rates_of_the_projector_and_vision_tower(monkeypatch):
    """`--projector-lr` (LLaVA's mm_projector_lr) and `--vision-tower-lr` (LLaVA-NeXT's mm_vision_tower_lr, only with
    `--unfreeze-vision-tower`, only in stage 2) are recorded; impossible values are refused before any model."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    recipe = resolve_recipe(_args("--stage", "finetune", "--projector-lr", "3e-4", "--unfreeze-vision-tower",
                                  "--vision-tower-lr", "1e-5"))
    assert (recipe.projector_lr, recipe.unfreeze_vision_tower, recipe.vision_tower_lr) == (3e-4, True, 1e-5)
    plain = resolve_recipe(_args("--stage", "finetune"))
    assert (plain.projector_lr, plain.unfreeze_vision_tower, plain.vision_tower_lr) == (None, False, None)
    for argv, message in [(["--projector-lr", "0"], "--projector-lr 0.0 must be positive"),
                          (["--unfreeze-vision-tower", "--vision-tower-lr", "-1"], "must be positive"),
                          (["--vision-tower-lr", "1e-5"], "add --unfreeze-vision-tower")]:
        with pytest.raises(StfBenchError, match=message):
            resolve_recipe(_args("--stage", "finetune", *argv))
    with pytest.raises(StfBenchError, match="needs --stage finetune"):
        resolve_recipe(_args("--stage", "pretrain", "--unfreeze-vision-tower"))
