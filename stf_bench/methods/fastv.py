"""FastV: after LLM layer k, drop the fraction r of visual tokens that the last token attends to least.

Follows the reference implementation, pkunlp-icler/FastV at commit d1659729b5bf1be225e99ee15783deeea80f63b1,
`src/transformers/src/transformers/models/llama/modeling_llama.py` (its "inplace" token-drop version, and
`src/FastV/llava-hf/.../llama/modeling_llama.py` for the count `round(n * (1 - r))`):
- the ranking is the attention of layer k-1, averaged over heads, from the last prompt token to each visual token;
- the `round(n (1 - r))` best visual tokens are kept with every text token, in their original order and with their
  original position ids; layers k, k+1, ... run on that shorter sequence;
- defaults k=2, r=0.5 ("an image is worth 1/2 tokens after layer 2"); the paper's Table 2 row is one setting.
The reference's token-drop version keeps no KV cache across decode steps (each step is a fresh prefill that ranks
again with its own last token); so does `forward_llm` (`uses_kv_cache = False`, what plain `generate()` runs).
The cached kind (`prunes_kv_cache`, `forward_llm_cached`) is the reference's KV-cache variant,
`src/FastV/llava-hf/transformers/src/transformers/models/llama/modeling_llama.py` `fastv_forward` with
`use_cache=True`: the prefill ranks once with the last prompt token and layers k, k+1, ... cache only the kept
tokens; decode steps attend to that pruned cache, kept tokens keep their original position ids and new tokens
continue the unpruned numbering (`attention_mask.cumsum(-1) - 1`, as its `prepare_inputs_for_generation`).
From the second new token on it may answer differently from the re-ranking version; `forward_llm(rank_at=...)`
recomputes it exactly (the ranking of the last prompt token, which later tokens cannot change).
Batched prompts (left-padded) are ranked row by row; every row keeps the same number of visual tokens.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from stf_bench import compat
from stf_bench.errors import StfBenchError
from stf_bench.methods.base import DecodePlan, LlmMethod, Param
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # warnings already given (the config rebuilds its method each time it is read)


def causal_mask(valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) bool of real tokens -> (B, 1, T, T) additive mask: each query sees the real tokens up to it (and
    itself, so that a padding row stays finite)."""
    import torch

    from stf_bench.models.generation import additive_mask

    t = valid.shape[1]
    order = torch.arange(t, device=valid.device)
    allowed = (order[None, :, None] >= order[None, None, :]) & valid[:, None, :]
    return additive_mask(allowed | torch.eye(t, dtype=torch.bool, device=valid.device)[None], dtype)


def decode_mask(past_valid: torch.Tensor, new_valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, P) bool of the cached keys that are real tokens, (B, q) of the new ones -> (B, 1, q, P + q) additive
    mask: each new token sees every real cached token, and the new ones up to itself."""
    import torch

    from stf_bench.models.generation import additive_mask

    b, past = past_valid.shape
    q = new_valid.shape[1]
    causal = torch.ones(q, q, dtype=torch.bool, device=new_valid.device).tril()
    new = (new_valid[:, None, :] & causal[None]) | torch.eye(q, dtype=torch.bool, device=new_valid.device)[None]
    return additive_mask(torch.cat([past_valid[:, None, :].expand(b, q, past), new], dim=-1), dtype)


def last_token_attention(layer: nn.Module, hidden: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor],
                         valid: torch.Tensor, at: int = -1) -> torch.Tensor:
    """(B, T): the attention weights of `layer` from the token at position `at` (default the last) to every token
    (causal: none after it), averaged over heads, as the layer computes them on its input `hidden` (B, T, H)
    (eager softmax; grouped KV heads repeated)."""
    import torch

    from stf_bench.models.generation import rotate_half

    attn = layer.self_attn
    x = layer.input_layernorm(hidden)
    b, t, _ = x.shape
    at = at % t
    valid = valid & (torch.arange(t, device=valid.device) <= at)
    q = attn.q_proj(x[:, at:at + 1]).view(b, 1, -1, attn.head_dim).transpose(1, 2)  # (B, heads, 1, D)
    k = attn.k_proj(x).view(b, t, -1, attn.head_dim).transpose(1, 2)  # (B, kv_heads, T, D)
    cos, sin = (t.unsqueeze(1) for t in rotary)  # (B, 1, T, D): broadcast over heads
    q = q * cos[:, :, at:at + 1] + rotate_half(q) * sin[:, :, at:at + 1]
    k = k * cos + rotate_half(k) * sin
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
    prunes_kv_cache = True
    plans_decode = True  # greedy answers decode through generation.pruned_greedy_generate (`decode_plan`)
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
            log.warning("fastv: r=0 drops no visual token (the base model's answers)")

    def kept(self, n: int) -> int:
        """Visual tokens kept of n (the reference's `round(n * (1 - r))`)."""
        return round(n * (1 - self.args["r"]))

    def token_schedule(self, tokens_in: int) -> list[int]:
        k = self.args["k"]
        return [tokens_in] * k + [self.kept(tokens_in)] * (self.shape.llm_layers - k)

    def forward_llm(self, llm: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                    image_mask: torch.Tensor | None, visual_per_row: int, rank_at: int = -1) -> torch.Tensor:
        """The backbone's last hidden state (B, T', H) on `embeds` (B, T, H), visual tokens dropped after layer k,
        ranked by the attention of the token at `rank_at` (default the last: the re-ranking version)."""
        valid = self._valid(embeds, attention_mask)
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)  # as generate() numbers left-padded rows
        return self._prefill(llm, embeds, valid, positions, image_mask, visual_per_row, None, rank_at)[0]

    def forward_llm_cached(self, llm: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                           image_mask: torch.Tensor | None, visual_per_row: int, cache) -> torch.Tensor:
        """Prefill (empty `cache`): as `forward_llm`, layers k, ... caching only the kept tokens. Decoding: the new
        tokens `embeds` (B, q, H) through every layer against the cache, layers k, ... seeing only what was kept."""
        import torch

        from stf_bench.models.generation import decode_step

        past = cache.get_seq_length()  # layer 0 is never pruned: the unpruned length so far
        valid = self._valid(embeds, attention_mask, past)
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        if past == 0:
            hidden, index = self._prefill(llm, embeds, valid, positions, image_mask, visual_per_row, cache, -1)
            cache.stf_fastv_kept = (embeds.shape[1], index)  # prompt length, (B, T') kept positions or None
            return hidden
        prompt, index = cache.stf_fastv_kept
        new_valid, new_positions = valid[:, past:], positions[:, past:]
        full = decode_mask(valid[:, :past], new_valid, embeds.dtype)
        pruned = full if index is None else decode_mask(
            torch.cat([valid[:, :prompt].gather(1, index), valid[:, prompt:past]], dim=1), new_valid, embeds.dtype)
        layers = llm.config.num_hidden_layers
        return decode_step(llm, embeds, [full if i < self.args["k"] else pruned for i in range(layers)],
                           new_positions, cache)

    def decode_plan(self, cache, attention_mask: torch.Tensor | None) -> DecodePlan:
        """What `forward_llm_cached` decodes with after its prefill: layers 0..k-1 see every real prompt token,
        layers k, ... the kept ones; a new token's position continues the unpruned numbering (the number of real
        prompt tokens, then one more per new token)."""
        import torch

        prompt, index = cache.stf_fastv_kept
        b = cache.layers[0].keys.shape[0]
        valid = torch.ones(b, prompt, dtype=torch.bool, device=cache.layers[0].keys.device) \
            if attention_mask is None else attention_mask[:, :prompt].bool()
        pruned = valid if index is None else valid.gather(1, index)
        positions = valid.long().sum(-1)
        k = self.args["k"]
        layers = len(cache.layers)
        return DecodePlan([valid if i < k else pruned for i in range(layers)], [positions] * layers)

    @staticmethod
    def _valid(embeds: torch.Tensor, attention_mask: torch.Tensor | None, past: int = 0) -> torch.Tensor:
        """(B, past + T) bool of the real tokens."""
        import torch

        b, t, _ = embeds.shape
        if attention_mask is None:
            return torch.ones(b, past + t, dtype=torch.bool, device=embeds.device)
        return attention_mask.bool()

    def _prefill(self, llm: nn.Module, embeds: torch.Tensor, valid: torch.Tensor, positions: torch.Tensor,
                 image_mask: torch.Tensor | None, visual_per_row: int, cache, rank_at: int
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The layers on the whole sequence with the drop after layer k (filling `cache` when given): the last
        hidden state and the (B, T') positions kept (None when nothing is dropped)."""
        hidden = embeds
        rotary = llm.rotary_emb(hidden, position_ids=positions)
        mask = causal_mask(valid, hidden.dtype)
        keep = self.kept(visual_per_row)
        cache_kw = {"use_cache": False} if cache is None else {"use_cache": True, **compat.cache_kw(cache)}
        index = None
        layer_input = hidden  # the input of the previous layer, whose attention ranks the tokens
        for i, layer in enumerate(llm.layers[:llm.config.num_hidden_layers]):
            if i == self.args["k"] and image_mask is not None and keep < visual_per_row:
                scores = last_token_attention(llm.layers[i - 1], layer_input, rotary, valid, rank_at)  # (B, T)
                index = keep_index(scores, image_mask, visual_per_row, keep)  # (B, T')
                hidden = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
                positions, valid = positions.gather(1, index), valid.gather(1, index)
                rotary = llm.rotary_emb(hidden, position_ids=positions)
                mask = causal_mask(valid, hidden.dtype)
            layer_input = hidden
            hidden = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary,
                           **cache_kw)
        return llm.norm(hidden), index
