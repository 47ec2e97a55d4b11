"""`prumerge+`: LLaVA-PruMerge+ (Shang et al., 2024): outliers of CLS attention (IQR), spatially uniform additions,
each kept token merged with its most similar neighbours by key, plus one token summarising the pruned ones.

Follows the authors' reference code, 42Shawn/LLaVA-PruMerge, `llava/model/multimodal_encoder/clip_encoder.py`
(`CLIPVisionTower.token_prune_merge_advanced_plus` with `if_adaptive=True`, what its `forward` runs, and
`outlier_dectection`), at commit 097c04116a58465e4bcb58cec44a94018a68ff1a. Facts carried over, code our own:

- attention: queries and keys of CLIP's last block (`layers[23]` of 24) on the penultimate output that LLaVA reads,
  full width (heads concatenated, as the k_proj/q_proj outputs its hooks catch), one softmax over
  `q k^T / sqrt(C)`; the CLS row to the patches ranks them;
- outliers: patches whose CLS attention is above Q3 + 1.5 IQR (linear percentiles), ranked by attention;
  ratio = outliers / N;
- uniform additions: positions 0, s, 2s, ... below N - 1 (the reference's `arange(0, 575, s)`) with
  s = int(int(1 / ratio) / 3), those not already outliers, ascending, after the outliers;
- merging: each kept token plus the sum of its 32 most similar other tokens (cosine of the unit keys), each weighted
  by its CLS attention (unnormalised, as in the reference); then one extra token, the CLS-attention-weighted sum
  of all tokens not kept. Output: kept tokens in that order, then the extra token.

The reference's count is adaptive (outliers + uniform + 1 per image); our processor needs one count per model, so
the LLM is fed exactly `tokens` (docs/methods.md): the reference's selection, in its order, truncated
to `tokens - 1` or, when shorter, continued with the next patches by CLS attention. The count the reference would
have fed for each image is recorded in `counts` (`count_summary()` gives mean and range).
Deviations where the reference fails: no outlier (it divides by zero) takes s as for one outlier; s = 0 (it
calls arange with step 0, more than a third of patches outliers) takes s = 1. The IQR is per image (the reference
pools the batch; it runs with batch 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stf_bench.errors import StfBenchError
from stf_bench.methods.base import Param, TokenMethod, VisionContext
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    import torch

NEIGHBOURS = 32  # tokens merged into each kept one (the reference's `topk(cos_sim_matrix, k=int(32))`)


@register
class PruMergePlus(TokenMethod):
    """PruMerge+ selection and merging, fed to the LLM as a fixed `tokens` count; reference counts in `counts`."""

    name = "prumerge+"
    needs_attention = True
    attention_block = 1  # CLIP's last block on the penultimate output (the reference hooks layers[23])
    summary = "PruMerge+: IQR outliers of CLS attention + uniform patches, merged by key similarity (fixed count)"
    params = (Param("tokens", 144, int, "visual tokens fed to the LLM: the reference's selection fitted to "
                    "tokens - 1, plus its extra token", minimum=2),)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.counts: list[int] = []  # per image: the count the reference would have fed the LLM

    def check(self) -> None:
        """tokens - 1 kept patches must be among the N patches, leaving 32 neighbours to merge."""
        n = self.shape.grid ** 2
        if self.args["tokens"] > n + 1 or n - 1 < NEIGHBOURS:
            raise StfBenchError(f"prumerge+: tokens={self.args['tokens']} does not fit {n} patches (tokens - 1 "
                                f"kept plus one extra token; {NEIGHBOURS} neighbours each); valid: 2..{n + 1}")

    def tokens_out(self, tokens_in: int) -> int:
        """The fixed `tokens`."""
        return self.args["tokens"]

    def reduce(self, features: torch.Tensor, ctx: VisionContext) -> torch.Tensor:
        """(B, N, C) patch features -> (B, tokens, C): merged kept tokens in the reference's order, then the extra."""
        import torch
        import torch.nn.functional as F

        batch, n, width = features.shape
        keys = ctx.keys.transpose(1, 2).reshape(batch, n + 1, -1)  # (B, 1+N, C): heads concatenated, as k_proj
        cls_query = ctx.queries[:, :, :1].transpose(1, 2).reshape(batch, 1, -1)
        cls_attn = torch.softmax(torch.matmul(cls_query, keys.transpose(1, 2)) * width ** -0.5, dim=-1)[:, 0, 1:]  # (B, N)
        priority, reference_counts = _priority(cls_attn)
        if not features.is_meta:
            self.counts.extend(reference_counts.tolist())
        kept = priority.topk(self.args["tokens"] - 1, dim=1).indices  # (B, K) in the reference's order
        unit = F.normalize(keys[:, 1:], p=2, dim=-1)
        similarity = torch.bmm(_take(unit, kept), unit.transpose(1, 2))  # (B, K, N)
        similarity = similarity.scatter(2, kept.unsqueeze(-1), float("-inf"))  # a token is not its own neighbour
        neighbours = similarity.topk(NEIGHBOURS, dim=2).indices  # (B, K, 32)
        flat = neighbours.reshape(batch, -1)
        weights = torch.gather(cls_attn, 1, flat).unsqueeze(-1).to(features.dtype)
        merged = torch.mul(_take(features, flat), weights).reshape(batch, -1, NEIGHBOURS, width).sum(dim=2)
        pruned = torch.ones(batch, n, dtype=features.dtype, device=features.device).scatter(1, kept, 0)
        extra = torch.bmm((cls_attn.to(features.dtype) * pruned).unsqueeze(1), features)  # (B, 1, C)
        return torch.cat([_take(features, kept) + merged, extra], dim=1)

    def run_summary(self) -> dict:
        """The reference's adaptive counts over the images of a run (what `run` records)."""
        return {"reference_token_counts": self.count_summary()}

    def count_summary(self) -> dict:
        """Images seen and the mean, min and max of the count the reference would have fed (empty: images 0)."""
        if not self.counts:
            return {"images": 0, "tokens_fed": self.args["tokens"]}
        return {"images": len(self.counts), "mean": sum(self.counts) / len(self.counts), "min": min(self.counts),
                "max": max(self.counts), "tokens_fed": self.args["tokens"]}


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[b, index[b]] for each b: (B, N, C), (B, K) -> (B, K, C)."""
    import torch

    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _priority(cls_attn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A score whose descending order is the reference's selection order (outliers by attention, then uniform
    patches by position), then the other patches by attention; and the reference's count per image (B,).

    Static shapes only (no data-dependent sizes), so that it runs on `meta` tensors for FLOPs counting.
    """
    import torch

    n = cls_attn.shape[1]
    attn, single = cls_attn.double(), cls_attn.float()  # the reference's IQR test runs in float32
    q1, q3 = torch.quantile(single, torch.tensor([0.25, 0.75], device=attn.device), dim=1)
    outlier = single > (q3 + 1.5 * (q3 - q1)).unsqueeze(1)  # (B, N)
    ratio = outlier.sum(dim=1).clamp(min=1).double() / n  # no outlier: as for one (the reference divides by zero)
    step = torch.floor(torch.floor(1.0 / ratio) / 3).clamp(min=1).long()  # int(int(1 / ratio) / 3)
    position = torch.arange(n, device=attn.device)
    uniform = (position < n - 1) & (position.unsqueeze(0) % step.unsqueeze(1) == 0) & ~outlier
    priority = torch.where(outlier, 4 + attn, torch.where(uniform, 2 + (n - position) / (n + 1), attn))
    return priority, outlier.sum(dim=1) + uniform.sum(dim=1) + 1
