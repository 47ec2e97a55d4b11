"""LLaVA-1.5's projector, `mlp2x_gelu`: Linear(C, H) - GELU - Linear(H, H) on each of the 576 tokens."""

from __future__ import annotations

import torch
from torch import nn

from stf_bench.methods.base import ProjectorMethod
from stf_bench.methods.registry import register


class LlavaMlpProjector(nn.Module):
    """Per token: Linear(C, H) - GELU - Linear(H, H); names as llava-hf's `multi_modal_projector`."""

    def __init__(self, c: int, h: int):
        super().__init__()
        self.linear_1 = nn.Linear(c, h)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))  # (B, N, C) -> (B, N, H)


# the original-LLaVA layout of this MLP (an nn.Sequential called mm_projector), in checkpoints and stage-1 files
ORIGINAL_MLP_KEYS = {"model.mm_projector.0.": "linear_1.", "model.mm_projector.2.": "linear_2."}


@register
class LlavaMlp(ProjectorMethod):
    name = "mlp2x_gelu"
    summary = "LLaVA-1.5's two-layer MLP, 576 tokens"
    aliases = ("mlp",)
    token_wise = True
    checkpoint_keys = {"original": ORIGINAL_MLP_KEYS, "transformers": {"multi_modal_projector.": ""}}

    def build(self) -> nn.Module:
        return LlavaMlpProjector(self.shape.vision_width, self.shape.llm_width)
