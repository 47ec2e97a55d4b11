"""Parameter-free token-grid operations and the MLP block the projectors share.

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


def divisors(n: int) -> list[int]:
    """The divisors of n, ascending (the valid STF k for a grid, the valid E for k^2)."""
    return [d for d in range(1, n + 1) if n % d == 0]
