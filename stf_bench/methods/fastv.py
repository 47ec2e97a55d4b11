"""FastV: after LLM layer k, drop the fraction r of visual tokens that the last token attends to least.

Follows the reference implementation, pkunlp-icler/FastV at commit d1659729b5bf1be225e99ee15783deeea80f63b1,
`src/transformers/src/transformers/models/llama/modeling_llama.py` (its "inplace" token-drop version, and
`src/FastV/llava-hf/.../llama/modeling_llama.py` for the count `round(n * (1 - r))`):
- the ranking is the attention of layer k-1, averaged over heads, from the last prompt token to each visual token;
- the `round(n (1 - r))` best visual tokens are kept with every text token, in their original order and with their
  original position ids; layers k, k+1, ... run on that shorter sequence;
- defaults k=2, r=0.5 ("an image is worth 1/2 tokens after layer 2"); the paper's Table 2 row is one setting.
The reference's token-drop version keeps no KV cache across decode steps (each step is a fresh prefill that ranks
again with its own last token); so does this one (`uses_kv_cache = False`): answers are those of that version.
Batched prompts (left-padded) are ranked row by row; every row keeps the same number of visual tokens.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from stf_bench.errors import StfBenchError
from stf_bench.methods.base import LlmMethod, Param
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # warnings already given (the config rebuilds its method each time it is read)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Llama's rotary embedding of (B, heads, T, D) with cos/sin (B, T, D)."""
    import torch

    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def causal_mask(valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) bool of real tokens -> (B, 1, T, T) additive mask: each query sees the real tokens up to it (and
    itself, so that a padding row stays finite)."""
    import torch

    t = valid.shape[1]
    order = torch.arange(t, device=valid.device)
    allowed = (order[None, :, None] >= order[None, None, :]) & valid[:, None, :]
    allowed = allowed | torch.eye(t, dtype=torch.bool, device=valid.device)[None]
    return torch.where(allowed, 0.0, torch.finfo(dtype).min).to(dtype)[:, None]


def last_token_attention(layer: nn.Module, hidden: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor],
                         valid: torch.Tensor) -> torch.Tensor:
    """(B, T): the attention weights of `layer` from the last token to every token, averaged over heads, as the
    layer computes them on its input `hidden` (B, T, H) (eager softmax; grouped KV heads repeated)."""
    import torch

    attn = layer.self_attn
    x = layer.input_layernorm(hidden)
    b, t, _ = x.shape
    q = attn.q_proj(x[:, -1:]).view(b, 1, -1, attn.head_dim).transpose(1, 2)  # (B, heads, 1, D)
    k = attn.k_proj(x).view(b, t, -1, attn.head_dim).transpose(1, 2)  # (B, kv_heads, T, D)
    cos, sin = rotary
    q, k = _rotate(q, cos[:, -1:], sin[:, -1:]), _rotate(k, cos, sin)
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    scores = (q @ k.transpose(-1, -2)).float() * attn.scaling  # (B, heads, 1, T)
    scores = scores.masked_fill(~valid[:, None, None, :], torch.finfo(torch.float32).min)
    return scores.softmax(-1).mean(1)[:, 0]  # (B, T)


def keep_index(scores: torch.Tensor, image_mask: torch.Tensor, visual: int, keep: int) -> torch.Tensor:
    """(B, T - visual + keep) positions kept, ascending: every non-visual position and the `keep` of the `visual`
    visual positions of each row with the highest `scores` (B, T). No data-dependent shapes (runs on `meta`)."""
    ranked = scores.masked_fill(~image_mask, float("inf"))  # every text token is kept
    return ranked.topk(image_mask.shape[1] - visual + keep, dim=-1).indices.sort(-1).values


@register
class FastV(LlmMethod):
    name = "fastv"
    summary = "drop the least-attended visual tokens after LLM layer k (Chen et al., 2024)"
    text_conditioned = True
    needs_attention = True
    params = (Param("k", 2, int, "the layer after which tokens are dropped (the ranking is layer k-1's attention)",
                    minimum=1),
              Param("r", 0.5, float, "fraction of the visual tokens dropped", minimum=0.0, maximum=1.0))

    def check(self) -> None:
        """k must leave a layer after it to run on fewer tokens: at k >= the LLM's layers FastV drops nothing and
        would still be stored as a FastV run. r=0 (drops nothing, the base model's answers) runs as asked, named by
        its r, with one warning per process however often the config rebuilds its method."""
        layers = self.shape.llm_layers
        if self.args["k"] >= layers:
            raise StfBenchError(f"fastv: k={self.args['k']} leaves no layer to prune: this LLM has {layers} layers, "
                                f"so nothing would be dropped; valid: k in 1..{layers - 1}")
        if self.args["r"] == 0 and "r=0" not in _WARNED:
            _WARNED.add("r=0")
            log.warning("fastv: r=0 drops no visual token (the base model's answers, without a KV cache)")

    def kept(self, n: int) -> int:
        """Visual tokens kept of n (the reference's `round(n * (1 - r))`)."""
        return round(n * (1 - self.args["r"]))

    def token_schedule(self, tokens_in: int) -> list[int]:
        k = self.args["k"]
        return [tokens_in] * k + [self.kept(tokens_in)] * (self.shape.llm_layers - k)

    def forward_llm(self, llm: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                    image_mask: torch.Tensor | None, visual_per_row: int) -> torch.Tensor:
        """The backbone's last hidden state (B, T', H) on `embeds` (B, T, H), visual tokens dropped after layer k."""
        import torch

        b, t, _ = embeds.shape
        valid = torch.ones(b, t, dtype=torch.bool, device=embeds.device) if attention_mask is None \
            else attention_mask.bool()
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)  # as generate() numbers left-padded rows
        hidden = embeds
        rotary = llm.rotary_emb(hidden, position_ids=positions)
        mask = causal_mask(valid, hidden.dtype)
        keep = self.kept(visual_per_row)
        layer_input = hidden  # the input of the previous layer, whose attention ranks the tokens
        for i, layer in enumerate(llm.layers[:llm.config.num_hidden_layers]):
            if i == self.args["k"] and image_mask is not None and keep < visual_per_row:
                scores = last_token_attention(llm.layers[i - 1], layer_input, rotary, valid)  # (B, T)
                index = keep_index(scores, image_mask, visual_per_row, keep)  # (B, T')
                hidden = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
                positions, valid = positions.gather(1, index), valid.gather(1, index)
                rotary = llm.rotary_emb(hidden, position_ids=positions)
                mask = causal_mask(valid, hidden.dtype)
            layer_input = hidden
            hidden = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary,
                           use_cache=False)
        return llm.norm(hidden)
