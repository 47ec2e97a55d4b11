"""The vision-to-LLM projectors of the family: LLaVA-1.5's MLP, AvgPool, TokenConcat, Q-Former, MBTF, STF, MBTF+STF.

Every projector maps the selected ViT features `(B, G*G, C_in)` (G = 24 patch grid, C_in = C or M*C for MBTF) to
the LLM's input `(B, N, H)`. Submodule names follow the checkpoints they must load: `linear_1`/`linear_2` as in
llava-hf for the LLaVA MLP, `mbtf.{0,2}` / `stf.{0,2}` as the released STF code's `mm_projector_crosslayer` /
`mm_projector` Sequentials.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stf_bench.errors import StfBenchError

PROJECTOR_TYPES = ("mlp2x_gelu", "avgpool", "token_concat", "qformer", "mbtf", "stf", "mbtf+stf")


def window_fuse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Regroup k x k windows of a square token grid into one channel-major vector each (the released STF order).

    (B, G*G, C) -> (B, (G/k)^2, C*k*k); element `c*k*k + dy*k + dx` of window (i, j) is channel c of the token at
    (k*i + dy, k*j + dx), and windows are row-major. Parameter-free; k = 1 is the identity.
    """
    b, n, c = x.shape
    g = math.isqrt(n)
    x = x.view(b, g, g, c).unfold(1, k, k).unfold(2, k, k)  # (B, G/k, G/k, C, k, k)
    return x.contiguous().view(b, (g // k) ** 2, c * k * k)


def window_concat(x: torch.Tensor, k: int) -> torch.Tensor:
    """Plain concatenation of each k x k window, token-major: [tok(0,0) | tok(0,1) | ... ] (TokenConcat)."""
    b, n, c = x.shape
    g = math.isqrt(n)
    x = x.view(b, g // k, k, g // k, k, c).permute(0, 1, 3, 2, 4, 5)  # (B, G/k, G/k, k, k, C)
    return x.reshape(b, (g // k) ** 2, k * k * c)


def window_avgpool(x: torch.Tensor, k: int) -> torch.Tensor:
    """k x k average pooling with stride k over the token grid: (B, G*G, C) -> (B, (G/k)^2, C)."""
    b, n, c = x.shape
    g = math.isqrt(n)
    grid = x.transpose(1, 2).reshape(b, c, g, g)
    return nn.functional.avg_pool2d(grid, k, k).flatten(2).transpose(1, 2)


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    """Linear - GELU - Linear, indexed 0/1/2 like the released `mm_projector*` Sequentials."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


class LlavaMlpProjector(nn.Module):
    """LLaVA-1.5 `mlp2x_gelu`: Linear(C, H) - GELU - Linear(H, H) per token; 576 tokens in, 576 out."""

    def __init__(self, c: int, h: int):
        super().__init__()
        self.linear_1 = nn.Linear(c, h)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class AvgPoolProjector(LlavaMlpProjector):
    """2x2 average pooling, stride 2, then the LLaVA MLP: 144 tokens (Table 6, AvgPool)."""

    def __init__(self, c: int, h: int, k: int = 2):
        super().__init__(c, h)
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(window_avgpool(x, self.k))


class TokenConcatProjector(nn.Module):
    """Plain 2x2 token concatenation (token-major), then Linear(4C, H) - GELU - Linear(H, H): 144 tokens (Table 6)."""

    def __init__(self, c: int, h: int, k: int = 2):
        super().__init__()
        self.k = k
        self.linear_1 = nn.Linear(k * k * c, h)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(window_concat(x, self.k))))


class QFormerLayer(nn.Module):
    """One BLIP-2-style Q-Former layer: query self-attention, cross-attention to the vision tokens, FFN (post-norm)."""

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
    """Learnable queries cross-attending to the 576 vision tokens, then Linear(D, H): `queries` tokens out.

    Widths are ours (the paper gives none): D = C, `layers` layers, C/64 heads; 144 queries match the 1.9 TFLOPs
    budget of Table 6.
    """

    def __init__(self, c: int, h: int, queries: int = 144, layers: int = 2, heads: int | None = None):
        super().__init__()
        heads = heads or max(1, c // 64)
        self.queries = nn.Parameter(torch.zeros(1, queries, c))
        nn.init.normal_(self.queries, std=0.02)
        self.layers = nn.ModuleList(QFormerLayer(c, heads, c) for _ in range(layers))
        self.out = nn.Linear(c, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.queries.expand(x.shape[0], -1, -1).to(x.dtype)
        for layer in self.layers:
            q = layer(q, x)
        return self.out(q)


class FusionProjector(nn.Module):
    """MBTF and/or STF, as in the released code.

    - MBTF (`mbtf`): per token, Linear(M*C, 4C) - GELU - Linear(4C, C) over M concatenated ViT blocks.
    - STF (`stf`): `window_fuse` k x k windows (channel-major), split each k*k*C vector into E tokens, then
      Linear(k*k*C/E, hidden) - GELU - Linear(hidden, H); hidden = 16C by default (the released k=2, E=1 width).
    - Without STF (MBTF-only), the LLaVA MLP (`linear_1`/`linear_2`) maps C -> H on all 576 tokens.
    """

    def __init__(self, c: int, h: int, *, mbtf_blocks: int | None, k: int | None, e: int = 1, stf_hidden: int | None = None):
        super().__init__()
        self.k, self.e = k, e
        self.mbtf = mlp(mbtf_blocks * c, 4 * c, c) if mbtf_blocks else None
        if k is not None:
            d_in = k * k * c // e
            self.stf = mlp(d_in, stf_hidden or 16 * c, h)
        else:
            self.stf = None
            self.linear_1 = nn.Linear(c, h)
            self.act = nn.GELU()
            self.linear_2 = nn.Linear(h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbtf is not None:
            x = self.mbtf(x)  # (B, 576, M*C) -> (B, 576, C)
        if self.stf is None:
            return self.linear_2(self.act(self.linear_1(x)))  # (B, 576, H)
        fused = window_fuse(x, self.k)  # (B, (24/k)^2, k*k*C)
        b, n, d = fused.shape
        fused = fused.reshape(b, n * self.e, d // self.e)  # (B, (24/k)^2 * E, k*k*C/E)
        return self.stf(fused)  # (B, (24/k)^2 * E, H)


def num_visual_tokens(projector_type: str, grid: int, k: int, e: int, qformer_queries: int) -> int:
    """How many tokens the LLM sees for a projector setting (grid = patches per side, 24 for CLIP-L/336)."""
    if projector_type in ("mlp2x_gelu", "mbtf"):
        return grid * grid
    if projector_type == "qformer":
        return qformer_queries
    if projector_type in ("avgpool", "token_concat"):
        return (grid // 2) ** 2
    return (grid // k) ** 2 * e  # stf, mbtf+stf


def check_projector_args(projector_type: str, grid: int, k: int, e: int, mbtf_blocks: int, vision_layers: int) -> None:
    """Refuse an impossible setting with a message naming the value and the valid ones."""
    if projector_type not in PROJECTOR_TYPES:
        raise StfBenchError(f"unknown projector {projector_type!r}; valid: {', '.join(PROJECTOR_TYPES)}")
    if projector_type in ("stf", "mbtf+stf"):
        valid_k = [d for d in range(1, grid + 1) if grid % d == 0]
        if k not in valid_k:
            raise StfBenchError(f"k={k} does not divide the {grid}x{grid} patch grid; valid k: {valid_k}")
        valid_e = [d for d in range(1, k * k + 1) if (k * k) % d == 0]
        if e not in valid_e:
            raise StfBenchError(f"e={e} does not divide k^2={k * k}; valid e for k={k}: {valid_e}")
    if projector_type in ("mbtf", "mbtf+stf") and not 1 <= mbtf_blocks <= vision_layers:
        raise StfBenchError(f"mbtf_blocks={mbtf_blocks} is not a number of vision blocks; valid: 1..{vision_layers}")


def mbtf_layers(mbtf_blocks: int, vision_layers: int = 24, top: int = -2) -> list[int]:
    """Hidden-state indices MBTF concatenates, in the released order: the top block first, then evenly spaced
    blocks going down (rounded where L/M is not whole). M = 8 of 24 gives [-2, 21, 18, 15, 12, 9, 6, 3], the
    released code's order (docs/facts.md section 1); `top=24` gives the paper's wording ({3, ..., 24}).
    """
    step = vision_layers / mbtf_blocks
    return [top] + [int(vision_layers - step * i + 0.5) for i in range(1, mbtf_blocks)]


def build_projector(projector_type: str, c: int, h: int, *, k: int = 2, e: int = 1, mbtf_blocks: int = 8,
                    qformer_queries: int = 144, qformer_layers: int = 2, stf_hidden: int | None = None) -> nn.Module:
    """One projector by name; C = ViT width, H = LLM width."""
    if projector_type == "mlp2x_gelu":
        return LlavaMlpProjector(c, h)
    if projector_type == "avgpool":
        return AvgPoolProjector(c, h)
    if projector_type == "token_concat":
        return TokenConcatProjector(c, h)
    if projector_type == "qformer":
        return QFormerProjector(c, h, queries=qformer_queries, layers=qformer_layers)
    if projector_type == "mbtf":
        return FusionProjector(c, h, mbtf_blocks=mbtf_blocks, k=None)
    if projector_type == "stf":
        return FusionProjector(c, h, mbtf_blocks=None, k=k, e=e, stf_hidden=stf_hidden)
    if projector_type == "mbtf+stf":
        return FusionProjector(c, h, mbtf_blocks=mbtf_blocks, k=k, e=e, stf_hidden=stf_hidden)
    raise StfBenchError(f"unknown projector {projector_type!r}; valid: {', '.join(PROJECTOR_TYPES)}")
