"""`mustdrop`: MustDrop (Liu et al., 2024): merge similar windows inside CLIP, protect the tokens CLS attends to most,
drop visual tokens the question ignores inside the LLM and decode from the pruned KV cache.

Follows the authors' code, liuting20/MustDrop at commit 909afa5 (facts carried over, code our own):

- inside CLIP (`llava/model/multimodal_encoder/clip_encoder.py`, `CLIPVisionModelAcc.custom_forward`, `idx == 0`;
  `local_merge.py`, `conditional_pooling` and `merge_wavg`): after CLIP's first block, the 24 x 24 patch grid is cut
  into 3 x 3 windows (64); a window's score is the mean cosine similarity of its 9 tokens over the 72 ordered pairs
  of distinct tokens; the r windows scoring at least 0.8 are merged, each into one token, the mean of its 9
  tokens, placed (CLS first) in descending score order, followed by the tokens of the other windows in ascending
  order; the later blocks run on the 1 + 576 - 8 r tokens, so the count differs per image;
- at CLIP's output (`idx == 23`): the key set, the ceil(0.08 n) tokens with the largest CLS attention of CLIP's
  last block (mean over heads) on the penultimate output that LLaVA reads, is protected from every later drop;
- inside the LLM (`llava/model/language_model/modelling_sparse_llama.py`, `LlamaDynamicvitModel.forward` and
  `dual_attention_filter`): after layers 2, 6, 10 and 14 of the prefill, from that layer's attention weights (mean
  over heads) of every token after the image to the visual tokens, a visual token is dropped when its summed
  attention is below `global_thr` times the total and its largest attention is below `individual_thr`, unless it
  is in the key set; the later layers run on the shorter sequence with positions numbered again from 0; the KV cache
  of every layer from the first pruning layer on keeps only the finally kept tokens, and a new token's position is
  the length of that layer's cache (the full prompt's length in the layers before the first pruning layer);
- settings (`README.md`, `scripts/v1_5/eval/textvqa_{64,128,192}.sh`): (global_thr, individual_thr) = (0.001,
  0.001) for 192 tokens, (0.0012, 0.001) for 128, (0.011, 0.01) for 64 (`PRESETS`); the count is the authors'
  "equal token number", the visual tokens averaged over the 32 layers of a run, so it is a mean, not a bound.

Nothing is random: ties go to torch's `topk` and `unique`, as in the reference. Deviations (docs/methods.md): the
window merge counts r per image (the reference takes the batch's smallest r; it evaluates with batch 1, where the
two agree); a batch is filtered row by row (the reference reads row 0's attention for the whole batch); a key set
of one token stays a list (the reference's `squeeze()` makes it 0-d, and its next `cat` fails); pruning layers past
the LLM's last are left out (the reference hard-codes 32 layers); the filter's attention weights are computed in
float32 (the reference's eager softmax runs in the model's dtype).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from stf_bench import compat
from stf_bench.errors import StfBenchError
from stf_bench.methods.base import DecodePlan, LlmMethod, Param, VisionContext
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)
_WARNED: set[str] = set()

# The published LLaVA-1.5 settings, by the mean visual tokens they give (the README's TextVQA scripts).
PRESETS = {192: {"global_thr": 0.001, "individual_thr": 0.001},
           128: {"global_thr": 0.0012, "individual_thr": 0.001},
           64: {"global_thr": 0.011, "individual_thr": 0.01}}


def window_merge(hidden: torch.Tensor, grid: int, window: int, threshold: float) -> torch.Tensor:
    """One image's CLIP hidden states (1 + G*G, C), CLS first -> (1 + G*G - (w*w - 1) r, C): the reference's
    `conditional_pooling` + `merge_wavg` with r = the windows whose mean pairwise cosine similarity >= threshold."""
    import torch
    import torch.nn.functional as F

    cls, feat = hidden[:1], hidden[1:]
    side, size = grid // window, window * window
    windows = torch.arange(grid * grid, device=hidden.device).view(side, window, side, window)
    windows = windows.permute(0, 2, 1, 3).reshape(side * side, size)  # token indices, row-major in each window
    tokens = feat[windows]  # (W, w*w, C)
    sims = F.cosine_similarity(tokens[:, :, None, :], tokens[:, None, :, :], dim=-1)  # (W, w*w, w*w)
    sims = sims * (1 - torch.eye(size, device=hidden.device))
    score = sims.sum(-1).sum(-1) / (size * (size - 1))
    r = int((score >= threshold).sum())
    chosen = windows[score.topk(r).indices]  # (r, w*w), best window first
    merged = torch.zeros(side * side, dtype=torch.bool, device=hidden.device)
    merged[score.topk(r).indices] = True
    rest = windows[~merged].reshape(-1).sort().values
    src, dst = chosen[:, :-1].reshape(-1), chosen[:, -1]  # each window merges into its last (bottom-right) token
    group = torch.arange(r, device=hidden.device).repeat_interleave(size - 1)[:, None].expand(-1, feat.shape[1])
    sums = feat[dst].scatter_reduce(0, group, feat[src], reduce="sum")
    return torch.cat([cls, sums / size, feat[rest]])


def key_set(attention: torch.Tensor, keep_rate: float) -> torch.Tensor:
    """(heads, 1 + n, 1 + n) attention weights of CLIP's last block on one image -> the ceil(keep_rate n) patch
    indices (0-based, CLS excluded) with the largest CLS attention averaged over heads, best first."""
    cls = attention[:, 0, 1:].mean(0)
    return cls.topk(math.ceil(keep_rate * cls.shape[0])).indices


def dual_attention_keep(attention: torch.Tensor, keys: torch.Tensor, global_thr: float, individual_thr: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's `dual_attention_filter` and key-set union for one row: `attention` (heads, text, n) from
    the tokens after the image to its n visual tokens, `keys` the protected visual indices -> (kept visual indices,
    ascending; the protected ones' places among them)."""
    import torch

    mean = attention.mean(0)  # (text, n)
    total = mean.sum(0)
    dropped = (total < total.sum(0) * global_thr) & (mean.max(0)[0] < individual_thr)
    kept = torch.arange(mean.shape[1], device=attention.device)[~dropped]
    kept = torch.unique(torch.cat([kept, keys]))
    return kept, torch.nonzero(torch.isin(kept, keys))[:, 0]


def _row_attention(layer: nn.Module, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   valid: torch.Tensor, start: int) -> torch.Tensor:
    """(heads, T - start, T): attention weights of `layer` on one row's input `hidden` (T, H), queries from `start`
    on, causal over the real tokens `valid` (T,), float32 softmax (grouped KV heads repeated)."""
    import torch

    from stf_bench.models.generation import apply_rotary

    attn = layer.self_attn
    x = layer.input_layernorm(hidden)[None]
    t = x.shape[1]
    q = attn.q_proj(x[:, start:]).view(1, t - start, -1, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(x).view(1, t, -1, attn.head_dim).transpose(1, 2)
    q, k = apply_rotary(q, cos[None, start:], sin[None, start:]), apply_rotary(k, cos[None], sin[None])
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    scores = (q @ k.transpose(-1, -2)).float()[0] * attn.scaling  # (heads, T - start, T)
    order = torch.arange(t, device=hidden.device)
    allowed = (order[start:, None] >= order[None, :]) & valid[None, :]
    return scores.masked_fill(~allowed[None], torch.finfo(torch.float32).min).softmax(-1)


def _left_pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Index rows of different lengths -> (B, T') indices left-padded with 0, and (B, T') bool of the real ones."""
    import torch

    width = max(len(r) for r in rows)
    index = torch.zeros(len(rows), width, dtype=torch.long, device=rows[0].device)
    valid = torch.zeros(len(rows), width, dtype=torch.bool, device=rows[0].device)
    for b, r in enumerate(rows):
        index[b, width - len(r):], valid[b, width - len(r):] = r, True
    return index, valid


@register
class MustDrop(LlmMethod):
    """MustDrop's three stages: CLIP window merging, the CLS key set, the LLM's dual-attention filter with a pruned
    KV cache (see the module docstring)."""

    name = "mustdrop"
    summary = "MustDrop: merge similar CLIP windows, protect CLS-attended tokens, drop tokens the question ignores"
    text_conditioned = True
    needs_attention = True
    attention_block = 1  # CLIP's last block on the penultimate output (the reference's idx == 23)
    vision_hook = 1  # after CLIP's first block (the reference's idx == 0)
    varying_tokens = True
    prunes_kv_cache = True
    plans_decode = True  # greedy answers decode through generation.pruned_greedy_generate (`decode_plan`)
    uses_kv_cache = True
    presets = PRESETS  # the published settings by visual-token budget (Table 4 picks the 128 one)
    params = (Param("global_thr", 0.0012, float, "drop a token whose summed attention from the question is below "
                    "this share of the total (published: 0.001 / 0.0012 / 0.011 for 192 / 128 / 64 tokens)",
                    minimum=0.0, maximum=1.0),
              Param("individual_thr", 0.001, float, "... and whose largest attention is below this (published: "
                    "0.001 / 0.001 / 0.01)", minimum=0.0, maximum=1.0),
              Param("merge_threshold", 0.8, float, "merge a CLIP window whose mean cosine similarity is at least "
                    "this", minimum=-1.0, maximum=1.01),
              Param("window", 3, int, "CLIP window side", minimum=1),
              Param("keep_rate", 0.08, float, "share of the tokens protected by CLS attention", minimum=0.0,
                    maximum=1.0),
              Param("first_layer", 2, int, "first LLM layer after which tokens are dropped", minimum=0),
              Param("every", 4, int, "LLM layers between two drops", minimum=1),
              Param("stages", 4, int, "number of drops", minimum=0))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schedules: list[list[int]] = []  # per image seen: visual tokens entering each LLM layer

    def check(self) -> None:
        """The window must tile the patch grid; pruning layers past the LLM's last are left out (one warning)."""
        grid, window = self.shape.grid, self.args["window"]
        if grid % window:
            valid = [d for d in range(1, grid + 1) if grid % d == 0]
            raise StfBenchError(f"mustdrop: window={window} does not tile the {grid} x {grid} patch grid; valid: "
                                f"{valid}")
        wanted = [self.args["first_layer"] + self.args["every"] * s for s in range(self.args["stages"])]
        if len(self.pruning_layers()) < len(wanted) and "layers" not in _WARNED:
            _WARNED.add("layers")
            log.warning("mustdrop: this LLM has %d layers; pruning after layers %s only (asked: %s)",
                        self.shape.llm_layers, self.pruning_layers(), wanted)

    def pruning_layers(self) -> list[int]:
        """The LLM layers after which visual tokens are dropped (2, 6, 10, 14 by default), within the LLM."""
        layers = [self.args["first_layer"] + self.args["every"] * s for s in range(self.args["stages"])]
        return [i for i in layers if i < self.shape.llm_layers]

    # ------------------------------------------------------------------ vision tower
    def hook_vision(self, hidden: torch.Tensor, ctx: VisionContext) -> list[torch.Tensor]:
        """After CLIP's first block: each image's similar windows merged (`window_merge`)."""
        return [window_merge(row, self.shape.grid, self.args["window"], self.args["merge_threshold"])[None]
                for row in hidden]

    def vision_output(self, ctx: VisionContext) -> None:
        """The key set of each image, from CLIP's last block on the output LLaVA reads."""
        ctx.notes = [key_set(att[0].float(), self.args["keep_rate"]) for att in ctx.attentions]

    # ------------------------------------------------------------------ schedule
    def token_schedule(self, tokens_in: int) -> list[int]:
        """The mean (rounded) over the images seen of the visual tokens entering each layer; before any image, the
        bound: `tokens_in` at every layer (the count depends on the image and the question)."""
        if not self.schedules:
            return [tokens_in] * self.shape.llm_layers
        return [round(sum(s[i] for s in self.schedules) / len(self.schedules)) for i in range(self.shape.llm_layers)]

    def observed_schedules(self) -> list[list[int]]:
        """Each image's schedule so far (its counts entering each LLM layer)."""
        return self.schedules

    def run_summary(self) -> dict | None:
        """Per-image visual tokens entering the LLM, their mean, and the mean over layers (the authors' count)."""
        if not self.schedules:
            return None
        first = [s[0] for s in self.schedules]
        layers = [sum(s) / len(s) for s in self.schedules]
        return {"images": len(self.schedules), "visual_tokens_per_image": first,
                "mean_visual_tokens": sum(first) / len(first),
                "mean_tokens_over_layers": sum(layers) / len(layers),
                "mean_schedule": [sum(s[i] for s in self.schedules) / len(self.schedules)
                                  for i in range(self.shape.llm_layers)]}

    # ------------------------------------------------------------------ LLM
    def forward_llm(self, llm: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                    image_mask: torch.Tensor | None, visual_per_row: int, vision: VisionContext | None = None,
                    prompt_length: int | None = None) -> torch.Tensor:
        """Without a cache: the prefill on the first `prompt_length` tokens (default all: every token after the image
        is then question; counted in `schedules`), and the rest decoded against what it kept, in one pass;
        (B, T', H)."""
        import torch
        from transformers import DynamicCache

        t = embeds.shape[1]
        prompt = t if prompt_length is None else prompt_length
        mask = attention_mask if attention_mask is not None else torch.ones(embeds.shape[:2], dtype=torch.long,
                                                                              device=embeds.device)
        cache = DynamicCache()
        head = self.forward_llm_cached(llm, embeds[:, :prompt], mask[:, :prompt], None if image_mask is None else
                                       image_mask[:, :prompt], visual_per_row, cache, vision=vision,
                                       record=prompt_length is None)
        if prompt == t:
            return head
        tail = self.forward_llm_cached(llm, embeds[:, prompt:], mask, None, visual_per_row, cache)
        return torch.cat([head, tail], dim=1)

    def forward_llm_cached(self, llm: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                           image_mask: torch.Tensor | None, visual_per_row: int, cache: Any,
                           vision: VisionContext | None = None, record: bool = True) -> torch.Tensor:
        """Prefill (empty `cache`): the image's padding placeholders removed, the layers with the drops, the cache
        then pruned to the finally kept tokens. Decoding: the new tokens against that cache."""
        import torch

        state = getattr(cache, "stf_mustdrop", None)
        seen = 0 if state is None else state["seen"]  # positions so far: the prompt's (unpruned) and the new ones
        if attention_mask is None:  # every token real (transformers passes none when nothing is padded)
            attention_mask = torch.ones(embeds.shape[0], seen + embeds.shape[1], dtype=torch.long,
                                        device=embeds.device)
        if state is None:
            hidden, state = self._prefill(llm, embeds, attention_mask.bool(), image_mask, vision, cache, record)
            cache.stf_mustdrop = state
            return hidden
        hidden = self._decode(llm, embeds, attention_mask.bool(), cache, state)
        state["seen"] += embeds.shape[1]
        return hidden

    def decode_plan(self, cache: Any, attention_mask: torch.Tensor | None) -> DecodePlan:
        """What `forward_llm_cached` decodes with after its prefill: each layer sees the real tokens it kept, and a
        new token's position is that layer's count of them (the reference's cache length)."""
        layer_valid = cache.stf_mustdrop["layer_valid"]
        counts = {id(v): v.long().sum(-1) for v in layer_valid}  # layers of one stage share their count
        return DecodePlan(list(layer_valid), [counts[id(v)] for v in layer_valid])

    def _prefill(self, llm: nn.Module, embeds: torch.Tensor, valid: torch.Tensor, image_mask: torch.Tensor | None,
                 vision: VisionContext | None, cache: Any, record: bool) -> tuple[torch.Tensor, dict]:
        import torch

        from stf_bench.methods.fastv import causal_mask
        from stf_bench.models.generation import replace_cached

        b, t, _ = embeds.shape
        image = image_mask if image_mask is not None else torch.zeros(b, t, dtype=torch.bool, device=embeds.device)
        # Which visual tokens are real: each row's image gives counts[i] tokens, the rest of its placeholders pad.
        rows, keys, image_rows = [], [], 0
        for r in range(b):
            real = valid[r] & ~image[r]
            if image[r].any():
                if vision is None:
                    raise StfBenchError("mustdrop: the prefill needs what its vision stage found (vision=...)")
                places = torch.nonzero(image[r])[:, 0]
                real[places[:vision.counts[image_rows]]] = True
                keys.append(vision.notes[image_rows].to(embeds.device))
                image_rows += 1
            else:
                keys.append(None)
            rows.append(torch.nonzero(real)[:, 0])
        index, valid = _left_pad(rows)  # positions of the input kept, per row
        visual = image.gather(1, index) & valid
        hidden = embeds.gather(1, index[..., None].expand(-1, -1, embeds.shape[-1]))
        prune_at = self.pruning_layers() if image.any() else []
        layers = llm.layers[:llm.config.num_hidden_layers]
        stage_valid, locals_ = [], []  # per stage: (B, T_s) real tokens; the (B, T_s+1) index into stage s
        counts = [[int(visual[r].sum())] for r in range(b)]
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        rotary = llm.rotary_emb(hidden, position_ids=positions)
        mask = causal_mask(valid, hidden.dtype)
        stage_valid.append(valid)
        stage_of = []
        for i, layer in enumerate(layers):
            stage_of.append(len(locals_))
            layer_input = hidden
            hidden = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary,
                           use_cache=True, **compat.cache_kw(cache))
            if i not in prune_at:
                continue
            cos, sin = rotary
            kept_rows = []
            for r in range(b):
                places = torch.nonzero(visual[r])[:, 0]
                if len(places) == 0:
                    kept_rows.append(torch.nonzero(valid[r])[:, 0])
                    continue
                start = int(places[-1]) + 1  # the question: every token after the image
                attention = _row_attention(layer, layer_input[r], cos[r], sin[r], valid[r], start)
                kept, keys[r] = dual_attention_keep(attention[:, :, places], keys[r], self.args["global_thr"],
                                                    self.args["individual_thr"])
                other = torch.nonzero(valid[r] & ~visual[r])[:, 0]
                kept_rows.append(torch.cat([other, places[kept]]).sort().values)
                counts[r].append(len(kept))
            local, valid = _left_pad(kept_rows)
            locals_.append(local)
            hidden = hidden.gather(1, local[..., None].expand(-1, -1, hidden.shape[-1]))
            visual = visual.gather(1, local) & valid
            index = index.gather(1, local)
            positions = (valid.long().cumsum(-1) - 1).clamp(min=0)  # numbered again from 0, as the reference
            rotary = llm.rotary_emb(hidden, position_ids=positions)
            mask = causal_mask(valid, hidden.dtype)
            stage_valid.append(valid)
        # The cache of every layer from the first pruning layer on keeps only the finally kept tokens.
        final = [None] * (len(locals_) + 1)  # per stage: the final tokens' places in that stage's sequence
        if locals_:
            final[-1] = None
            composed = locals_[-1]
            final[len(locals_) - 1] = composed
            for s in range(len(locals_) - 2, -1, -1):
                composed = locals_[s].gather(1, composed)
                final[s] = composed
        layer_valid = []
        for i in range(len(layers)):
            s = stage_of[i]
            if prune_at and i >= prune_at[0] and final[s] is not None:
                entry = _cache_layer(cache, i)
                select = final[s][:, None, :, None]
                replace_cached(entry, entry.keys.gather(2, select.expand(-1, entry.keys.shape[1], -1,
                                                                         entry.keys.shape[3])),
                               entry.values.gather(2, select.expand(-1, entry.values.shape[1], -1,
                                                                    entry.values.shape[3])))
                layer_valid.append(stage_valid[-1])
            else:
                layer_valid.append(stage_valid[s])
        if record:
            for r in range(b):
                if image[r].any():
                    self.schedules.append(self._schedule(counts[r], prune_at))
        state = {"prompt": t, "seen": t, "layer_valid": layer_valid}
        return llm.norm(hidden), state

    def _schedule(self, counts: list[int], prune_at: list[int]) -> list[int]:
        """Visual tokens entering each layer, from the counts before and after each drop."""
        schedule, stage = [], 0
        for i in range(self.shape.llm_layers):
            schedule.append(counts[stage])
            if stage < len(prune_at) and i == prune_at[stage]:
                stage += 1
        return schedule

    def _decode(self, llm: nn.Module, embeds: torch.Tensor, valid: torch.Tensor, cache: Any, state: dict
                ) -> torch.Tensor:
        import torch

        from stf_bench.methods.fastv import decode_mask

        q = embeds.shape[1]
        done = valid[:, state["prompt"]:valid.shape[1] - q]  # new tokens already in the cache
        new = valid[:, valid.shape[1] - q:]
        steps = torch.cat([done, new], dim=1).long().cumsum(-1)[:, -q:] - 1  # each new token's place after the prompt
        hidden = embeds
        rotaries: dict[int, tuple] = {}
        for i, layer in enumerate(llm.layers[:llm.config.num_hidden_layers]):
            past = state["layer_valid"][i]
            base = past.sum(-1, keepdim=True)  # the reference: a new token's position is its layer's cache length
            key = id(past)
            if key not in rotaries:
                positions = base + steps.clamp(min=0)
                rotaries[key] = (positions, llm.rotary_emb(embeds, position_ids=positions),
                                 decode_mask(torch.cat([past, done], dim=1), new, embeds.dtype))
            positions, rotary, mask = rotaries[key]
            hidden = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary,
                           use_cache=True, **compat.cache_kw(cache))
        return llm.norm(hidden)


def _cache_layer(cache: Any, i: int) -> Any:
    """The i-th layer of a transformers `Cache` (its `keys` and `values`: (B, kv_heads, T, head_dim))."""
    return cache.layers[i]
