"""Parameter-free token-grid operations, the MLP block the projectors share, and the torch modules they build.

The method declarations (`avgpool.py`, `stf.py`, ...) import this module only in `build()`, so that they load
without torch: the CLI checks model and method arguments before any heavy import.

Every projector maps the selected ViT features `(B, G*G, C_in)` (G = 24 patch grid, C_in = C or M*C for MBTF) to
the LLM's input `(B, N, H)`. Submodule names follow the checkpoints they must load: `linear_1`/`linear_2` as in
llava-hf for the LLaVA MLP, `mbtf.{0,2}` / `stf.{0,2}` as the released STF code's `mm_projector_crosslayer` /
`mm_projector` Sequentials.
"""

from __future__ import annotations

import math

import torch
from torch import nn


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
    """Per token: Linear(C, H) - GELU - Linear(H, H); names as llava-hf's `multi_modal_projector`."""

    def __init__(self, c: int, h: int):
        super().__init__()
        self.linear_1 = nn.Linear(c, h)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))  # (B, N, C) -> (B, N, H)


class AvgPoolProjector(LlavaMlpProjector):
    """k x k average pooling, stride k, then the LLaVA MLP."""

    def __init__(self, c: int, h: int, k: int):
        super().__init__(c, h)
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(window_avgpool(x, self.k))  # (B, G*G, C) -> (B, (G/k)^2, H)


class TokenConcatProjector(nn.Module):
    """window_concat(k), then Linear(k*k*C, H) - GELU - Linear(H, H)."""

    def __init__(self, c: int, h: int, k: int):
        super().__init__()
        self.k = k
        self.linear_1 = nn.Linear(k * k * c, h)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(window_concat(x, self.k))))  # (B, (G/k)^2, H)


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


class FusionProjector(nn.Module):
    """MBTF and/or STF; `mbtf_blocks=None` leaves MBTF out, `k=None` leaves STF out (then the LLaVA MLP maps)."""

    def __init__(self, c: int, h: int, *, mbtf_blocks: int | None, k: int | None, e: int = 1,
                 stf_hidden: int | None = None):
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
