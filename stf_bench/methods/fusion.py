"""MBTF, STF and MBTF+STF as in the released code: their shared arguments and checks (the module they build,
`FusionProjector`, is in `layers.py`).

- MBTF (`mbtf`): per token, Linear(M*C, 4C) - GELU - Linear(4C, C) over M concatenated ViT blocks.
- STF (`stf`): `window_fuse` k x k windows (channel-major), split each k*k*C vector into E tokens, then
  Linear(k*k*C/E, hidden) - GELU - Linear(hidden, H); hidden = 16C by default (the released k=2, E=1 width).
- Without STF (MBTF-only), the LLaVA MLP (`linear_1`/`linear_2`) maps C -> H on all 576 tokens.
"""

from __future__ import annotations

from stf_bench.errors import StfBenchError
from stf_bench.methods.base import Param, divisors, linear_params, mlp_params

MBTF_PARAMS = (
    Param("mbtf_blocks", 8, int, "ViT blocks fused (M), evenly spaced from the top one", "mbtf_blocks", minimum=1),
    Param("mbtf_top_layer", -2, int, "the top block read (-2: the penultimate, as released; 24: the paper's "
          "wording)", "mbtf_top_layer"),
)
STF_PARAMS = (
    Param("k", 2, int, "STF window side; must divide the patch grid", "stf_k", minimum=1),
    Param("e", 1, int, "tokens per window (E); must divide k^2", "stf_e", minimum=1),
    Param("stf_hidden", None, int, "STF hidden width (default 16C, the released width)", "stf_hidden", minimum=1),
)


def mbtf_layers(mbtf_blocks: int, vision_layers: int = 24, top: int = -2) -> list[int]:
    """Hidden-state indices MBTF concatenates, in the released order: the top block first, then evenly spaced
    blocks going down (rounded where L/M is not whole). M = 8 of 24 gives [-2, 21, 18, 15, 12, 9, 6, 3], the
    released code's order (docs/facts.md section 1); `top=24` gives the paper's wording ({3, ..., 24}).
    """
    step = vision_layers / mbtf_blocks
    return [top] + [int(vision_layers - step * i + 0.5) for i in range(1, mbtf_blocks)]


def check_mbtf(args: dict, vision_layers: int) -> None:
    """M must be a number of vision blocks."""
    if not 1 <= args["mbtf_blocks"] <= vision_layers:
        raise StfBenchError(f"mbtf_blocks={args['mbtf_blocks']} is not a number of vision blocks; "
                            f"valid: 1..{vision_layers}")


def check_stf(args: dict, grid: int) -> None:
    """k must divide the grid, E must divide k^2."""
    k, e = args["k"], args["e"]
    if k not in divisors(grid):
        raise StfBenchError(f"k={k} does not divide the {grid}x{grid} patch grid; valid k: {divisors(grid)}")
    if e not in divisors(k * k):
        raise StfBenchError(f"e={e} does not divide k^2={k * k}; valid e for k={k}: {divisors(k * k)}")


def stf_tokens(args: dict, grid: int) -> int:
    """(G/k)^2 windows, E tokens each."""
    return (grid // args["k"]) ** 2 * args["e"]


def fusion_params(c: int, h: int, *, mbtf_blocks: int | None, k: int | None, e: int = 1,
                  stf_hidden: int | None = None) -> int:
    """Parameters of `layers.FusionProjector` with these arguments (the same widths, counted)."""
    mbtf = mlp_params(mbtf_blocks * c, 4 * c, c) if mbtf_blocks else 0
    if k is None:
        return mbtf + linear_params(c, h) + linear_params(h, h)
    return mbtf + mlp_params(k * k * c // e, stf_hidden or 16 * c, h)
