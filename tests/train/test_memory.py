"""The model-state memory estimate `stf-bench train` prints: hand-counted parameters of llava-tiny, the bytes per
parameter of each precision and ZeRO stage, and a plausible figure for stf-7b's full-size finetune."""

from __future__ import annotations

import pytest

from stf_bench.train.memory import GIB, estimate, parameter_counts

# llava-tiny counted by hand (stf_bench/models/presets.py: CLIP_TINY, VICUNA_TINY, mlp2x_gelu):
# vision: class 32 + patch conv 3*14*14*32 = 18816 + positions 577*32 = 18464 + pre/post norms 2*64
#         + 24 layers x (q, k, v, o 4*(32*32+32) = 4224 + norms 2*64 + fc1 32*64+64 + fc2 64*32+32 = 8544) = 242496
# LLM: embeddings 261*64 = 16704 + 2 layers x (4*64*64 + 3*64*128 + 2*64 = 41088) + norm 64 + lm_head 16704 = 115648
# projector: 32*64+64 + 64*64+64 = 6272
VISION, LLM, PROJECTOR = 242496, 115648, 6272
TOTAL = VISION + LLM + PROJECTOR


@pytest.mark.parametrize("stage, trained", [("pretrain", PROJECTOR), ("finetune", LLM + PROJECTOR)])
def test_parameter_counts_of_llava_tiny_are_the_hand_counted_ones(stage, trained):
    assert parameter_counts("llava-tiny", stage) == (TOTAL, trained)


def test_bytes_per_parameter_for_each_precision_and_zero_stage():
    frozen = TOTAL - PROJECTOR
    # DeepSpeed, bf16: 2 + 2 + 12 per trained parameter, 2 per frozen one; ZeRO-3 splits all of it over 2 processes
    z3 = estimate(TOTAL, PROJECTOR, zero_stage=3, processes=2, mixed_precision=True, deepspeed=True)
    assert (z3.trained_weights, z3.gradients, z3.optimizer_states, z3.frozen_weights) == (
        2 * PROJECTOR // 2, 2 * PROJECTOR // 2, 12 * PROJECTOR // 2, 2 * frozen // 2)
    # ZeRO-2: the 16-bit weights (trained and frozen) whole, gradients and optimizer states split
    z2 = estimate(TOTAL, PROJECTOR, zero_stage=2, processes=2, mixed_precision=True, deepspeed=True)
    assert (z2.trained_weights, z2.gradients, z2.optimizer_states, z2.frozen_weights) == (
        2 * PROJECTOR, PROJECTOR, 6 * PROJECTOR, 2 * frozen)
    z1 = estimate(TOTAL, PROJECTOR, zero_stage=1, processes=2, mixed_precision=True, deepspeed=True)
    assert (z1.gradients, z1.optimizer_states) == (2 * PROJECTOR, 6 * PROJECTOR)
    # fp32 (the CPU runs): 4 + 4 + 8 and 4 per frozen parameter, nothing split without ZeRO
    cpu = estimate(TOTAL, PROJECTOR, zero_stage=0, processes=2, mixed_precision=False, deepspeed=False)
    assert (cpu.trained_weights, cpu.gradients, cpu.optimizer_states, cpu.frozen_weights) == (
        4 * PROJECTOR, 4 * PROJECTOR, 8 * PROJECTOR, 4 * frozen)
    assert cpu.total == 16 * PROJECTOR + 4 * frozen
    # transformers' bf16 without DeepSpeed: autocast over fp32 weights, the same 4 + 4 + 8
    assert estimate(TOTAL, PROJECTOR, zero_stage=0, processes=1, mixed_precision=True, deepspeed=False) == cpu.__class__(
        4 * PROJECTOR, 4 * PROJECTOR, 8 * PROJECTOR, 4 * frozen, 0, 1)
    line = z3.line()
    assert "ZeRO-3, 2 processes" in line and "activations and buffers not included" in line and "MiB" in line
    with pytest.raises(ValueError):
        estimate(TOTAL, PROJECTOR, zero_stage=4, processes=1, mixed_precision=True, deepspeed=True)


def test_stf_7b_finetune_needs_eight_gpus_zero3_figure_is_plausible():
    """stf-7b: 7.21B parameters, 6.91B trained in stage 2 (Vicuna-7B + projector; CLIP-L frozen). ZeRO-3 over 8 GPUs
    with bf16: (16 x 6.91B + 2 x 0.30B) / 8 ~ 13 GiB per GPU; on one GPU ~104 GiB, more than an 80 GB card."""
    total, trained = parameter_counts("stf-7b", "finetune")
    assert 7.1e9 < total < 7.3e9 and 6.8e9 < trained < 7.0e9
    eight = estimate(total, trained, zero_stage=3, processes=8, mixed_precision=True, deepspeed=True)
    assert 12.5 < eight.total / GIB < 13.5
    one = estimate(total, trained, zero_stage=3, processes=1, mixed_precision=True, deepspeed=True)
    assert 100 < one.total / GIB < 108
    stage1 = estimate(*parameter_counts("stf-7b", "pretrain"), zero_stage=2, processes=8, mixed_precision=True,
                      deepspeed=True)
    assert 13 < stage1.total / GIB < 14  # 16-bit weights whole (~13.4 GiB); the projector's states are small
