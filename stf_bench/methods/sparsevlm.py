"""`sparsevlm`: SparseVLM v1 (Zhang et al., 2024): text-guided pruning of visual tokens inside the LLM, with recycling.

Follows the authors' code, Gumpest/SparseVLMs at commit 91fb6d9857a089a39c660527519c76ab0a259349 (facts carried
over, code our own; `llava/model/language_model/modelling_sparse_llama.py`, `LlamaDynamicvitModel.forward`,
`score.py`, `utils.py`):

- raters (its Section 3.2.2): on the LLM's input embeddings, the text tokens after the image whose mean (over visual
  tokens) softmax relevance `softmax_text(visual . text^T)` is above the mean over text tokens;
- at each pruning layer (`pruning_loc = [2, 6, 15, 19]`, 0-based, of the 32-layer Vicuna-7B) the layer runs on the
  whole current sequence; its attention weights (averaged over heads) from the raters to the current visual tokens
  form a matrix R (raters x visual); `rank(R)` (`torch.linalg.matrix_rank`, float32) sets how many stay:
  `min(int(rank * scale + bias), visual - 1)`, the top ones by R's mean over raters, in their order
  (`attn_postprocess_rank`); when the rank equals the visual count nothing is pruned at that layer;
- recycling (its Section 3.3): of the pruned visual tokens (the layer's outputs), the top `int(0.3 * pruned) + 1`
  by the same score are clustered (DPC-kNN, `cluster_and_merge`) into `int(that / 10) + 1` averaged tokens placed
  after the kept ones; they count as visual tokens at later layers;
- the pruning layer's own KV cache keeps its whole input; later layers run on the shorter sequence with positions
  renumbered 0, 1, ...; decoding continues from the pruned cache, each layer numbering the new token after its own
  cache (the reference's `position_ids = past_key_value.get_usable_length(...)` in `LlamaDynamicvitSdpaAttention`);
- settings (`scripts/v1_5/eval/*.sh`, README): (scale, bias) 192 tokens -> (13.5, 0), 128 -> (9, 6),
  64 -> (0.8, 0) (`PRESETS`). The token count is adaptive (it follows the rank); the published 64/128/192 are the
  reference's printed "equal token number": visual tokens averaged over the 32 layers (a pruning layer counted
  after its pruning) and over images. `run_summary` records those measured counts with the run.

Deviations (docs/methods.md): the rater relevance and the attention weights are computed in float32 (the reference
uses the model's dtype, fp16); the clustering's tie-breaking noise (`torch.rand * 1e-6`, unseeded there) comes
from a generator seeded with `seed` for each prompt, so a run is reproducible; batched prompts are pruned row by row
(the reference runs one prompt at a time); an LLM with fewer layers than the schedule needs (the tiny presets)
prunes at `floor(layer * L / 32)`, duplicates merged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from stf_bench import compat
from stf_bench.errors import StfBenchError
from stf_bench.methods.base import DecodePlan, LlmMethod, Param
from stf_bench.methods.fastv import causal_mask, decode_mask
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)
_WARNED: set[str] = set()

PUBLISHED_DEPTH = 32  # the schedule's layers are those of the 32-layer Vicuna-7B
RECYCLE = 0.3  # fraction of the pruned tokens recycled (+1)
CLUSTERS = 10  # recycled tokens per merged token (int(n / 10) + 1 clusters)
# The published LLaVA-1.5 rows, by mean visual tokens: the arguments each ran with (the reference's defaults else).
PRESETS = {64: {"scale": 0.8, "bias": 0.0, "layers": "2-6-15-19", "tokens": 64, "seed": 0},
           128: {"scale": 9.0, "bias": 6.0, "layers": "2-6-15-19", "tokens": 128, "seed": 0},
           192: {"scale": 13.5, "bias": 0.0, "layers": "2-6-15-19", "tokens": 192, "seed": 0}}


def select_raters(embeds: torch.Tensor, v_start: int, v_num: int, text_end: int | None = None) -> torch.Tensor:
    """Rater indices, relative to the first text token after the image: `embeds` (T, H) one prompt's LLM input,
    visual tokens at v_start..v_start+v_num, text after them up to `text_end` (default: the end)."""
    import torch

    visual = embeds[v_start:v_start + v_num].float()
    text = embeds[v_start + v_num:text_end].float()
    relevance = (visual @ text.T).softmax(dim=1).mean(dim=0)  # (T_text,)
    return torch.nonzero(relevance > relevance.mean())[:, 0]


def cluster_merge(x: torch.Tensor, clusters: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, C) -> (clusters, C): DPC-kNN clustering (local density over the `clusters` nearest, distance to a denser
    token, centres by their product), each token averaged into its nearest centre; centres in score order.
    `generator` draws the reference's 1e-6 tie-breaking noise on the densities."""
    import torch

    n, c = x.shape
    dist = (x[:, None] - x[None]).norm(dim=-1, p=2) / (c ** 0.5)
    nearest = dist.topk(clusters, dim=-1, largest=False).values
    density = (-(nearest ** 2).mean(dim=-1)).exp()
    density = density + torch.rand(density.shape, generator=generator, device=x.device, dtype=x.dtype) * 1e-6
    denser = (density[None, :] > density[:, None]).to(x.dtype)
    parent_dist = (dist * denser + dist.max() * (1 - denser)).min(dim=-1).values
    centres = (parent_dist * density).topk(clusters).indices
    assign = dist[centres].argmin(dim=0)  # (N,) nearest centre
    assign[centres] = torch.arange(clusters, device=x.device)
    ones = torch.ones(n, 1, dtype=x.dtype, device=x.device)
    counts = torch.zeros(clusters, 1, dtype=x.dtype, device=x.device).index_add_(0, assign, ones) + 1e-6
    weight = ones / counts[assign]  # the reference's order of operations (x * (1 / count)), bit for bit
    return torch.zeros(clusters, c, dtype=x.dtype, device=x.device).index_add_(0, assign, x * weight)


def prune_step(relation: torch.Tensor, out: torch.Tensor, v_start: int, scale: float, bias: float,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One pruning layer for one prompt: `relation` (raters, V) the layer's head-averaged attention from the raters
    to the V current visual tokens, `out` (T, C) the layer's output, visual tokens at v_start..v_start+V.
    Returns the new sequence (T', C) (text before, kept visual in order, recycled, text after), the kept visual
    indices (ascending, of the V) and the number of recycled tokens."""
    import torch

    v = relation.shape[1]
    rank = int(torch.linalg.matrix_rank(relation.float()))
    score = relation.mean(dim=0)  # (V,)
    if v - rank == 0:
        return out, torch.arange(v, device=out.device), 0
    keep = score.topk(min(int(rank * scale + bias), v - 1)).indices
    chosen = torch.zeros(v, dtype=torch.bool, device=out.device)
    chosen[keep] = True
    kept, pruned = torch.nonzero(chosen)[:, 0], torch.nonzero(~chosen)[:, 0]
    recycled = pruned[score[pruned].topk(int(len(pruned) * RECYCLE) + 1).indices]
    clusters = int(len(recycled) / CLUSTERS) + 1
    merged = cluster_merge(out[v_start + recycled], clusters, generator)
    sequence = torch.cat([out[:v_start], out[v_start + kept], merged, out[v_start + v:]])
    return sequence, kept, clusters


def rows_attention(layer: nn.Module, hidden: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor],
                   rows: torch.Tensor) -> torch.Tensor:
    """(R, T): the causal attention weights of `layer` from the positions `rows` to every position, averaged over
    heads, as the layer computes them on its input `hidden` (1, T, H) (eager softmax in float32)."""
    import torch

    from stf_bench.models.generation import apply_rotary

    attn = layer.self_attn
    x = layer.input_layernorm(hidden)
    t = x.shape[1]
    q = attn.q_proj(x[:, rows]).view(1, len(rows), -1, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(x).view(1, t, -1, attn.head_dim).transpose(1, 2)
    cos, sin = rotary
    q, k = apply_rotary(q, cos[:, rows], sin[:, rows]), apply_rotary(k, cos, sin)
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    scores = (q @ k.transpose(-1, -2)).float() * attn.scaling  # (1, heads, R, T)
    future = torch.arange(t, device=x.device)[None, :] > rows[:, None]
    return scores.masked_fill(future, torch.finfo(torch.float32).min).softmax(-1).mean(1)[0]


class _Recorder:
    """A stand-in KV cache for one prompt's prefill: keeps each layer's keys and values as the layer stores them."""

    def __init__(self) -> None:
        self.layers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        self.layers[layer_idx] = (keys, values)
        return keys, values


@register
class SparseVLM(LlmMethod):
    """Prune visual tokens at a few LLM layers by the question's attention, with rank-adaptive counts (SparseVLM)."""

    name = "sparsevlm"
    summary = "SparseVLM v1: question-rated, rank-adaptive pruning at LLM layers 2/6/15/19 with recycling"
    text_conditioned = True
    needs_attention = True
    prunes_kv_cache = True
    plans_decode = True  # greedy answers decode through generation.pruned_greedy_generate (`decode_plan`)
    presets = PRESETS  # the published settings by visual-token budget (Table 4 picks the 128 one)
    params = (Param("scale", 13.5, float, "tokens kept per rank of the raters' attention (published: 13.5, 9, 0.8)",
                    minimum=0.0),
              Param("bias", 0.0, float, "tokens kept besides (published: 0, 6, 0)"),
              Param("layers", "2-6-15-19", str, "0-based LLM layers after which tokens are pruned, '-'-separated"),
              Param("tokens", 192, int, "the setting's published mean visual count (64, 128, 192): the FLOPs "
                                        "schedule until a run measures its own", minimum=1),
              Param("seed", 0, int, "seed of the clustering's tie-breaking noise"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # per prefilled prompt: the visual tokens each layer sees, then those left after the last layer
        self.counts: list[list[int]] = []

    def check(self) -> None:
        """`layers` must parse and fit the LLM (shallower than the published one: scaled to its depth)."""
        self.prune_layers()

    def prune_layers(self) -> list[int]:
        """The 0-based layers that prune, for this LLM."""
        text, depth = self.args["layers"], self.shape.llm_layers
        try:
            layers = sorted({int(p) for p in text.split("-") if p.strip()})
        except ValueError:
            layers = []
        if not layers or layers[0] < 0:
            raise StfBenchError(f"sparsevlm: layers={text!r} is not a '-'-separated list of 0-based layers "
                                f"(e.g. 2-6-15-19)")
        if layers[-1] < depth:
            return layers
        if depth < PUBLISHED_DEPTH and layers[-1] < PUBLISHED_DEPTH:
            scaled = sorted({layer * depth // PUBLISHED_DEPTH for layer in layers})
            if text not in _WARNED:
                _WARNED.add(text)
                log.warning("sparsevlm: this LLM has %d layers; layers %s (of a %d-layer LLM) prune at %s", depth,
                            text, PUBLISHED_DEPTH, scaled)
            return scaled
        raise StfBenchError(f"sparsevlm: layers={text!r} names layer {layers[-1]}, but this LLM has {depth} layers; "
                            f"valid: layers in 0..{depth - 1}")

    def token_schedule(self, tokens_in: int) -> list[int]:
        """Measured (the mean per layer over the prompts seen) once prompts have run; before, nominal: the full count
        up to the first pruning layer, then even counts making the mean over layers the setting's `tokens`."""
        depth = self.shape.llm_layers
        if self.counts:
            return [round(sum(c[i] for c in self.counts) / len(self.counts)) for i in range(depth)]
        first = self.prune_layers()[0] + 1
        rest = max(0, self.args["tokens"] * depth - tokens_in * first)
        after = depth - first
        share = [min(tokens_in, rest // after + (1 if i < rest % after else 0)) for i in range(after)] if after else []
        return [tokens_in] * first + share

    def run_summary(self) -> dict:
        """The adaptive counts over the prompts of a run (what `run` records)."""
        if not self.counts:
            return {"sparsevlm_counts": {"prefills": 0}}
        depth = self.shape.llm_layers
        per_layer = [sum(c[i] for c in self.counts) / len(self.counts) for i in range(depth)]
        layers = self.prune_layers()
        # the reference's "equal token number": a pruning layer counted after its pruning
        after = [[c[i + 1] if i in layers else c[i] for i in range(depth)] for c in self.counts]
        return {"sparsevlm_counts": {
            "prefills": len(self.counts), "mean_per_layer": per_layer, "mean": sum(per_layer) / depth,
            "reference_equal_tokens": sum(sum(a) / depth for a in after) / len(after)}}

    def forward_llm(self, llm: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                    image_mask: torch.Tensor | None, visual_per_row: int, rank_at: int = -1) -> torch.Tensor:
        """The backbone's last hidden state on `embeds` (B, T, H) with the pruning (rows of different lengths are
        left-padded). Raters are chosen among the text up to position `rank_at` (default the last; the prompt's
        last token recomputes what the cached kind decided at its prefill, as FastV's `rank_at`)."""
        return self._prefill(llm, embeds, attention_mask, image_mask, visual_per_row, None, rank_at)

    def forward_llm_cached(self, llm: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                           image_mask: torch.Tensor | None, visual_per_row: int, cache) -> torch.Tensor:
        """Prefill (empty `cache`): as `forward_llm`, each layer caching what it saw. Decoding: the new tokens
        through every layer against its pruned cache, numbered after that layer's own cached tokens."""
        import torch

        past = cache.get_seq_length()  # layer 0 never prunes: the padded prompt plus the tokens generated
        if past == 0:
            return self._prefill(llm, embeds, attention_mask, image_mask, visual_per_row, cache, -1)
        prompt, valids, lengths = cache.stf_sparsevlm
        b, q, _ = embeds.shape
        full = torch.ones(b, past + q, dtype=torch.bool, device=embeds.device) if attention_mask is None \
            else attention_mask.bool()
        generated, new = full[:, prompt:past], full[:, past:]
        offset = generated.long().sum(-1, keepdim=True) + new.long().cumsum(-1) - 1  # (B, q)
        hidden = embeds
        for i, layer in enumerate(llm.layers[:llm.config.num_hidden_layers]):
            positions = (lengths[i][:, None] + offset).clamp(min=0)
            mask = decode_mask(torch.cat([valids[i], generated], dim=1), new, embeds.dtype)
            hidden = layer(hidden, attention_mask=mask, position_ids=positions,
                           position_embeddings=llm.rotary_emb(hidden, position_ids=positions), use_cache=True,
                           **compat.cache_kw(cache))
        return llm.norm(hidden)

    def decode_plan(self, cache, attention_mask: torch.Tensor | None) -> DecodePlan:
        """What `forward_llm_cached` decodes with after its prefill: each layer sees the real tokens it cached
        (left-padded row by row) and numbers a new token after them."""
        _, valids, lengths = cache.stf_sparsevlm
        return DecodePlan(list(valids), list(lengths))

    def _prefill(self, llm: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                 image_mask: torch.Tensor | None, visual_per_row: int, cache, rank_at: int) -> torch.Tensor:
        """Each row alone (its padding removed), pruned; outputs left-padded to one length; with `cache`, each
        layer's keys and values left-padded likewise and what decoding needs kept on the cache."""
        import torch

        if embeds.is_meta:  # FLOPs counting: shapes only, the schedule's counts stand for the data-dependent ones
            return self._by_schedule(llm, embeds, visual_per_row)
        b, t, width = embeds.shape
        valid = torch.ones(b, t, dtype=torch.bool, device=embeds.device) if attention_mask is None \
            else attention_mask[:, :t].bool()
        rows, records = [], []
        for r in range(b):
            where = torch.nonzero(valid[r])[:, 0]
            image = None if image_mask is None else image_mask[r, where]
            limit = int(valid[r, :rank_at % t + 1].sum())  # the row's tokens up to rank_at
            recorder = _Recorder() if cache is not None else None
            rows.append(self._row(llm, embeds[r, where][None], image, visual_per_row, recorder, limit))
            records.append(recorder)
        length = max(h.shape[1] for h in rows)
        out = embeds.new_zeros(b, length, width)
        for r, h in enumerate(rows):
            out[r, length - h.shape[1]:] = h[0]
        if cache is not None:
            valids, lengths = [], []
            for i in range(llm.config.num_hidden_layers):
                pairs = [rec.layers[i] for rec in records]
                n = [k.shape[2] for k, _ in pairs]
                size = max(n)
                keys = pairs[0][0].new_zeros(b, pairs[0][0].shape[1], size, pairs[0][0].shape[3])
                values = pairs[0][1].new_zeros(b, pairs[0][1].shape[1], size, pairs[0][1].shape[3])
                for r, (k, v) in enumerate(pairs):
                    keys[r, :, size - n[r]:], values[r, :, size - n[r]:] = k[0], v[0]
                cache.update(keys, values, i)
                lengths.append(torch.tensor(n, device=embeds.device))
                valids.append(torch.arange(size, device=embeds.device)[None] >= (size - lengths[-1])[:, None])
            cache.stf_sparsevlm = (t, valids, lengths)
        return out

    def _by_schedule(self, llm: nn.Module, embeds: torch.Tensor, visual: int) -> torch.Tensor:
        """The layers over `token_schedule(visual)` visual tokens each (for `meta` tensors, where the rank and the
        kept indices cannot be computed): before each layer the sequence is cut to its count; the rating and the
        clustering are not run, so their own work is not counted."""
        import torch

        hidden, seen = embeds, visual
        for layer, count in zip(llm.layers[:llm.config.num_hidden_layers], self.token_schedule(visual)):
            hidden, seen = hidden[:, :hidden.shape[1] - max(0, seen - count)], min(seen, count)
            positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
            mask = causal_mask(torch.ones_like(positions, dtype=torch.bool), hidden.dtype)
            hidden = layer(hidden, attention_mask=mask, position_ids=positions,
                           position_embeddings=llm.rotary_emb(hidden, position_ids=positions), use_cache=False)
        return llm.norm(hidden)

    def _row(self, llm: nn.Module, hidden: torch.Tensor, image: torch.Tensor | None, visual: int,
             recorder: _Recorder | None, limit: int | None) -> torch.Tensor:
        """One unpadded prompt (1, T, H) through the layers with the pruning; (1, T', H) after the final norm."""
        import torch

        layers = llm.layers[:llm.config.num_hidden_layers]
        found = torch.nonzero(image)[:, 0] if image is not None else None
        prunes = found is not None and len(found) == visual > 0
        if found is not None and len(found) and not prunes or prunes and int(found[-1] - found[0]) + 1 != visual:
            raise StfBenchError("sparsevlm prunes one image per prompt (its visual tokens in one run); this prompt "
                                "has another layout")
        v_start = int(found[0]) if prunes else 0
        v_num = visual if prunes else 0
        if prunes:
            raters = select_raters(hidden[0], v_start, v_num, limit)
            generator = torch.Generator(device=hidden.device).manual_seed(self.args["seed"])
        prune_at = set(self.prune_layers()) if prunes else set()
        counts = []
        kw = {"use_cache": False} if recorder is None else {"use_cache": True, **compat.cache_kw(recorder)}
        for i, layer in enumerate(layers):
            counts.append(v_num)
            positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
            rotary = llm.rotary_emb(hidden, position_ids=positions)
            mask = causal_mask(torch.ones_like(positions, dtype=torch.bool), hidden.dtype)
            out = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary, **kw)
            if i in prune_at and v_num > 0 and len(raters):
                rows = raters + v_start + v_num
                relation = rows_attention(layer, hidden, rotary, rows)[:, v_start:v_start + v_num]
                sequence, kept, recycled = prune_step(relation, out[0], v_start, self.args["scale"],
                                                      self.args["bias"], generator)
                out, v_num = sequence[None], len(kept) + recycled
            hidden = out
        if prunes:
            self.counts.append(counts + [v_num])
        return llm.norm(hidden)
