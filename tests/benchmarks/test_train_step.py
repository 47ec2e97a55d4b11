"""benchmarks/train_step.py: the model-state memory estimate, the choice of DeepSpeed, and (issue 25, Must show 6)
one training step of full-size presets through `stf-bench train`'s Trainer, on the CPU with one layer each."""

from __future__ import annotations

import math

import pytest


def test_model_state_estimate_follows_the_zero_paper(load_benchmark):
    """ZeRO paper (arXiv:1910.02054, Figure 1): 7.5B trained parameters, 64 GPUs -> 16 x 7.5e9 / 64 = 1.875 GB with
    ZeRO-3, 2 x 7.5e9 + 14 x 7.5e9 / 64 = 16.6 GB with ZeRO-2; frozen parameters hold 16-bit weights only."""
    bytes_ = load_benchmark("train_step").model_state_bytes
    psi = 7_500_000_000
    assert bytes_(psi, psi, "zero3", gpus=64) == 16 * psi // 64
    assert bytes_(psi, psi, "zero2", gpus=64) == 2 * psi + 14 * psi // 64
    assert bytes_(psi, psi, "amp") == 16 * psi and bytes_(psi, psi, "bf16") == 8 * psi
    assert bytes_(10, 4, "zero3") == 16 * 4 + 2 * 6 and bytes_(10, 4, "bf16") == 8 * 4 + 2 * 6
    with pytest.raises(ValueError):
        bytes_(10, 4, "zero4")


def test_deepspeed_only_where_importable_and_fitting(load_benchmark, monkeypatch):
    train_step = load_benchmark("train_step")
    gib = 2**30
    monkeypatch.setattr(train_step.importlib.util, "find_spec", lambda name: None)
    mode, why = train_step.choose_mode(True, "auto", 80 * gib, 10 * gib)
    assert mode == "bf16" and why.endswith("not DeepSpeed: DeepSpeed is not installed")
    monkeypatch.setattr(train_step.importlib.util, "find_spec", lambda name: object())
    assert train_step.choose_mode(True, "auto", 80 * gib, 10 * gib)[0] == "zero3"
    mode, why = train_step.choose_mode(True, "auto", 80 * gib, 112 * gib)
    assert mode == "bf16" and "needs ~112 GiB of model states, more than the device's 80 GiB" in why
    assert train_step.choose_mode(False, "auto", None, 0)[0] == "fp32"
    assert train_step.choose_mode(False, "auto", None, 0, pure_bf16=True)[0] == "bf16"


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
@pytest.mark.parametrize("model", ["stf-7b", "llava-1.5-7b"])
def test_full_size_preset_trains_one_step_with_one_layer(model, stage, load_benchmark, monkeypatch):
    """Full widths and vocabulary, one LLM and one vision layer, bfloat16 weights (~0.5B parameters: about 4 GB with
    AdamW), one row: `stf-bench train`'s Trainer takes one optimizer step and trains what the stage trains."""
    load_benchmark("gpu_bench").cut_presets(1, 1, setitem=monkeypatch.setitem)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train_step = load_benchmark("train_step")
    total, trainable = train_step.parameter_counts(model, stage)
    figures = train_step.time_model(model, stage=stage, per_device=1, global_batch=1, steps=1, warmup=0, mode="bf16",
                                    device="cpu")
    assert figures["steps_timed"] == 1 and math.isfinite(figures["train_loss"]) and figures["train_loss"] > 0
    assert (figures["parameters"], figures["trainable_parameters"]) == (total, trainable)
    assert figures["weights_dtype"] == "bfloat16"
    assert figures["visual_tokens"] == (144 if model == "stf-7b" else 576)
    embeddings = 32000 * 4096  # the full vocabulary and width, input and output embeddings
    assert (trainable > 2 * embeddings) == (stage == "finetune")
