"""Q-Former (the paper's Table 6): learnable queries cross-attending to the 576 vision tokens, then Linear(D, H).

Widths are ours (the paper gives none): D = C, `layers` post-norm BLIP-2-style layers, C/64 heads; 144 queries
match the 1.9 TFLOPs budget of Table 6.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stf_bench.methods.base import Param, ProjectorMethod, linear_params, mlp_params
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    from torch import nn


@register
class QFormer(ProjectorMethod):
    name = "qformer"
    summary = "learnable queries cross-attending to the vision tokens (Table 6)"
    aliases = ("q-former", "q_former")
    params = (Param("qformer_queries", 144, int, "learnable queries = visual tokens", "qformer_queries", minimum=1),
              Param("qformer_layers", 2, int, "Q-Former layers", "qformer_layers", minimum=1))

    def build(self) -> nn.Module:
        from stf_bench.methods.layers import QFormerProjector

        return QFormerProjector(self.shape.vision_width, self.shape.llm_width, queries=self.args["qformer_queries"],
                                layers=self.args["qformer_layers"])

    def param_count(self) -> int:
        """Queries, then per layer two attentions (q/k/v/out projections, width C), three LayerNorms and the FFN."""
        c = self.shape.vision_width
        layer = 2 * (4 * c * c + 4 * c) + 3 * 2 * c + mlp_params(c, 4 * c, c)
        return (self.args["qformer_queries"] * c + self.args["qformer_layers"] * layer
                + linear_params(c, self.shape.llm_width))

    def tokens_out(self, tokens_in: int) -> int:
        return self.args["qformer_queries"]
