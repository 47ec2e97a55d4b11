"""`random-drop`: keep a fixed-seed random subset of `keep` visual tokens (the "random" baseline of pruning studies).

A training-free method acting on the vision tokens (`acts_on = "vision"`): it reads neither the question nor
attention, so every fast generation path of stf-bench stays on. The subset depends only on (seed, token count),
is the same for every image, and keeps the tokens in their original order.
"""

from __future__ import annotations

import torch

from stf_bench.errors import StfBenchError
from stf_bench.methods import Param, TokenMethod, VisionContext

__all__ = ["RandomDrop", "kept_indices"]


def kept_indices(n: int, keep: int, seed: int) -> torch.Tensor:
    """The `keep` of `n` token positions kept, ascending; fixed by `seed` (a generator of its own, the global RNG
    untouched)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:keep].sort().values


class RandomDrop(TokenMethod):
    name = "random-drop"
    summary = "keep a fixed-seed random subset of `keep` visual tokens"
    params = (Param("keep", 64, int, "visual tokens kept", minimum=1),
              Param("seed", 0, int, "seed of the subset"))

    def check(self) -> None:
        n = self.shape.grid ** 2
        if self.args["keep"] > n:
            raise StfBenchError(f"random-drop: keep={self.args['keep']} is more than the {n} vision tokens; "
                                f"valid: 1..{n}")

    def tokens_out(self, tokens_in: int) -> int:
        return min(self.args["keep"], tokens_in)

    def reduce(self, features: torch.Tensor, ctx: VisionContext) -> torch.Tensor:
        index = kept_indices(features.shape[1], self.args["keep"], self.args["seed"])
        return features[:, index.to(features.device)]  # (B, N, C) -> (B, keep, C)
