"""Q-Former (the paper's Table 6): learnable queries cross-attending to the 576 vision tokens, then Linear(D, H).

Widths are ours (the paper gives none): D = C, `layers` post-norm BLIP-2-style layers, C/64 heads; 144 queries
match the 1.9 TFLOPs budget of Table 6.
"""

from __future__ import annotations

import torch
from torch import nn

from stf_bench.methods.base import Param, ProjectorMethod
from stf_bench.methods.layers import mlp
from stf_bench.methods.registry import register


class QFormerLayer(nn.Module):
    """Query self-attention, cross-attention to the vision tokens, FFN; each with a residual and LayerNorm."""

    def __init__(self, d: int, heads: int, d_vision: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.cross_attn = nn.MultiheadAttention(d, heads, kdim=d_vision, vdim=d_vision, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = mlp(d, 4 * d, d)
        self.norm3 = nn.LayerNorm(d)

    def forward(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self.norm1(q + self.self_attn(q, q, q, need_weights=False)[0])
        q = self.norm2(q + self.cross_attn(q, v, v, need_weights=False)[0])
        return self.norm3(q + self.ffn(q))


class QFormerProjector(nn.Module):
    """(B, N, C) vision tokens -> (B, queries, H)."""

    def __init__(self, c: int, h: int, queries: int = 144, layers: int = 2, heads: int | None = None):
        super().__init__()
        heads = heads or max(1, c // 64)
        self.queries = nn.Parameter(torch.zeros(1, queries, c))
        nn.init.normal_(self.queries, std=0.02)
        self.layers = nn.ModuleList(QFormerLayer(c, heads, c) for _ in range(layers))
        self.out = nn.Linear(c, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.queries.expand(x.shape[0], -1, -1).to(x.dtype)  # (B, queries, C)
        for layer in self.layers:
            q = layer(q, x)
        return self.out(q)


@register
class QFormer(ProjectorMethod):
    name = "qformer"
    summary = "learnable queries cross-attending to the vision tokens (Table 6)"
    aliases = ("q-former", "q_former")
    params = (Param("qformer_queries", 144, int, "learnable queries = visual tokens", "qformer_queries", minimum=1),
              Param("qformer_layers", 2, int, "Q-Former layers", "qformer_layers", minimum=1))

    def build(self) -> nn.Module:
        return QFormerProjector(self.shape.vision_width, self.shape.llm_width, queries=self.args["qformer_queries"],
                                layers=self.args["qformer_layers"])

    def tokens_out(self, tokens_in: int) -> int:
        return self.args["qformer_queries"]
