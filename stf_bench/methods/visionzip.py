"""`visionzip`: VisionZip (Yang et al., 2024): dominant tokens by CLS attention, plus contextual tokens merged from the rest.

Follows the authors' reference code, dvlab-research/VisionZip, `visionzip/clip_encoder.py`
(`CLIPVisionTower_VisionZip.forward`), `visionzip/utils.py` (`CLIPAttention_forward`: the merge metric is the raw
keys averaged over heads) and `visionzip/main.py` (`visionzip(model, dominant, contextual)`), at commit
3151f6df4fca36a4cd1c985e5956e725b1f9ad02. Facts carried over, code our own:

- it reads the block whose output LLaVA reads (the penultimate: the reference's `attentions[-2]`,
  `hidden_states[-2]` and `layers[-2].metric`);
- dominant: the CLS token plus the `dominant - 1` patches with the largest CLS attention summed over heads
  (`visionzip()` passes `dominant - 1` on, so `dominant` counts CLS), in their original order, CLS first;
- contextual: of the remaining patches (original order), every `max(1, M // contextual)`-th is a target (the first
  `contextual` of them); every other remaining patch goes to its most similar target by cosine similarity of the
  head-averaged keys, and each contextual token is its target plus the mean of the patches assigned to it;
- output: dominant tokens then contextual tokens, `dominant + contextual` in all (64 = 54 + 10 by default, the
  reference's README setting).

Our additions (documented in docs/methods.md): `contextual=0` keeps dominant tokens only (the
reference divides by zero there), and `cls=False` counts patches only, without CLS; with `dominant=576,
contextual=0, cls=False` the output is exactly the base model's features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stf_bench.errors import StfBenchError
from stf_bench.methods.base import Param, TokenMethod, VisionContext
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    import torch

# (dominant, contextual) of the reference's published LLaVA-1.5 settings, by visual tokens kept; 144 is ours
# (Table 4's 75% reduction, the published 54:10 ratio rounded; docs/methods.md)
SETTINGS = {64: (54, 10), 128: (108, 20), 192: (162, 30), 144: (122, 22)}


@register
class VisionZip(TokenMethod):
    """Keep `dominant` tokens by CLS attention and merge the rest into `contextual` tokens (VisionZip)."""

    name = "visionzip"
    needs_attention = True
    # the published LLaVA-1.5 rows (SETTINGS without our 144-token choice, which no one published)
    presets = {n: {"dominant": d, "contextual": c, "cls": True} for n, (d, c) in SETTINGS.items() if n != 144}
    summary = "VisionZip: dominant tokens by CLS attention + contextual tokens merged by key similarity"
    params = (Param("dominant", 54, int, "dominant tokens kept by CLS attention (CLS included when cls=true)",
                    minimum=1),
              Param("contextual", 10, int, "contextual tokens merged from the rest", minimum=0),
              Param("cls", True, bool, "CLS is one of the dominant tokens, as in the reference"))

    def _patches(self) -> int:
        """Patches chosen by attention: `dominant` less CLS when it is kept."""
        return self.args["dominant"] - int(self.args["cls"])

    def check(self) -> None:
        """dominant + contextual must fit in the tokens there are (CLS + patches, or the patches alone)."""
        n = self.shape.grid ** 2
        total = n + int(self.args["cls"])
        dominant, contextual = self.args["dominant"], self.args["contextual"]
        if dominant > total or dominant + contextual > total:
            what = f"CLS + {n} patches" if self.args["cls"] else f"{n} patches (cls=false)"
            raise StfBenchError(f"visionzip: dominant={dominant} + contextual={contextual} is more than the {total} "
                                f"tokens there are ({what}); valid: dominant in [1, {total}], contextual in "
                                f"[0, {total} - dominant]")

    def tokens_out(self, tokens_in: int) -> int:
        """dominant + contextual, whatever the input count."""
        return self.args["dominant"] + self.args["contextual"]

    def reduce(self, features: torch.Tensor, ctx: VisionContext) -> torch.Tensor:
        """(B, N, C) patch features -> (B, dominant + contextual, C): [CLS], dominant patches, contextual tokens."""
        import torch

        batch, n, width = features.shape
        patches, contextual = self._patches(), self.args["contextual"]
        scores = ctx.attentions[:, :, 0, 1:].sum(dim=1)  # (B, N): CLS attention to each patch, summed over heads
        top = scores.topk(patches, dim=1).indices
        chosen = torch.zeros(batch, n, dtype=torch.int8, device=features.device).scatter(1, top, 1)
        order = torch.argsort(chosen, dim=1, stable=True)  # the rest ascending, then the chosen ascending
        rest, kept = order[:, :n - patches], order[:, n - patches:]
        parts = [ctx.hidden[:, :1].to(features.dtype)] if self.args["cls"] else []
        parts.append(_take(features, kept))
        if contextual:
            metric = _take(ctx.keys.mean(dim=1)[:, 1:], rest)  # (B, M, head_dim): keys averaged over heads
            parts.append(_contextual(_take(features, rest), metric / metric.norm(dim=-1, keepdim=True), contextual))
        return torch.cat(parts, dim=1)


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[b, index[b]] for each b: (B, N, C), (B, K) -> (B, K, C)."""
    import torch

    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _contextual(hidden: torch.Tensor, metric: torch.Tensor, contextual: int) -> torch.Tensor:
    """The reference's contextual tokens: (B, M, C) remaining tokens and their unit keys -> (B, contextual, C)."""
    import torch

    m = hidden.shape[1]
    step = max(1, m // contextual)
    targets = list(range(0, m, step))[:contextual]
    others = sorted(set(range(m)) - set(targets))
    target_index = torch.tensor(targets, device=hidden.device)
    other_index = torch.tensor(others, dtype=torch.long, device=hidden.device)
    similarity = torch.bmm(metric[:, other_index], metric[:, target_index].transpose(1, 2))  # (B, M - c, c)
    assign = torch.zeros(*similarity.shape, dtype=hidden.dtype, device=hidden.device)
    assign.scatter_(2, similarity.argmax(dim=2, keepdim=True), 1)
    counts = assign.sum(dim=1).clamp(min=1).unsqueeze(-1)  # (B, c, 1)
    merged = torch.bmm(assign.transpose(1, 2), hidden[:, other_index]) / counts
    return hidden[:, target_index] + merged
