"""Greedy decoding of a batch of prompts for the model family, each row with its own length and stop rule.

Why not `model.generate()`: on prompts of different lengths it left-pads and masks, so every prefill layer attends
through an explicit mask (no causal kernel, and a bool-to-float mask conversion per layer), every decode step
copies the whole KV cache to append one token, and rows that are done keep being computed until the longest one
ends. Here the prompt head up to the image (system prompt + image tokens, most of the prompt) is prefilled once
per distinct image in the batch, right-padded and purely causal (padding sits after each head, where no real token
can see it); the questions follow through a small explicit mask; the KV cache has room reserved for the answers;
and a finished row leaves the batch. The tokens are those of `generate(do_sample=False)`, up to float rounding;
sampling, beam search and generation configs that add logits processors stay with `generate()`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from stf_bench.compat import cache_classes, cache_kw

Cache, DynamicLayer = cache_classes()

# Generation-config fields that make decoding more than an argmax: when one is set, use generate() instead.
NOT_PLAIN_GREEDY = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0,
                    "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None,
                    "forced_bos_token_id": None, "forced_eos_token_id": None, "min_new_tokens": None,
                    "min_length": 0, "sequence_bias": None, "exponential_decay_length_penalty": None,
                    "watermarking_config": None}


DECODE_ROOM = 128  # answer tokens reserved in the KV cache at first


class ReservedLayer(DynamicLayer):
    """A KV-cache layer that writes new tokens into reserved room instead of re-concatenating the cache per step."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room  # tokens reserved after the prefill
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + key_states.shape[-2]
        if not self.is_initialized or end > self._keys.shape[-2]:
            self._grow(key_states, value_states, end + self.room)
        self._keys[:, :, self.length:end] = key_states  # (B, heads, tokens, head_dim)
        self._values[:, :, self.length:end] = value_states
        self.length = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, capacity: int) -> None:
        b, h, _, dk = key_states.shape
        keys = key_states.new_zeros(b, h, capacity, dk)
        values = value_states.new_zeros(b, h, capacity, value_states.shape[-1])
        if self.is_initialized:
            keys[:, :, :self.length] = self._keys[:, :, :self.length]
            values[:, :, :self.length] = self._values[:, :, :self.length]
        self.dtype, self.device = key_states.dtype, key_states.device
        self._keys, self._values = keys, values
        self.is_initialized = True

    def get_seq_length(self) -> int:
        return self.length

    def replace(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Hold exactly `keys`, `values` (B, heads, tokens, head_dim), e.g. the tokens a method kept after its
        prefill, with room after them as before; later updates append after these."""
        self.length = 0
        self.is_initialized = False
        self.update(keys, values)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self.keys, self.values = self._keys[:, :, :self.length], self._values[:, :, :self.length]


def reserved_cache(model, answer_tokens: int) -> Cache:
    """An empty KV cache of `ReservedLayer`s, one per LLM layer, with room for `answer_tokens` (at most
    `DECODE_ROOM`) after whatever the prefill stores: what `generate(past_key_values=...)` takes so that each decode
    step writes its token in place instead of re-concatenating every layer's cache (transformers' `DynamicLayer`).
    Each layer keeps its own length, so an in-LLM method may store fewer tokens in some layers (FastV)."""
    room = min(max(answer_tokens, 1), DECODE_ROOM)
    return Cache(layers=[ReservedLayer(room) for _ in range(model.config.text_config.num_hidden_layers)])


def replace_cached(cache_layer, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Make one KV-cache layer hold exactly `keys`, `values` (an in-LLM method pruning its cache after the
    prefill): a `ReservedLayer` rewrites its storage and length (assigning its `keys` alone would leave its next
    update writing after the unpruned length); any other layer takes the tensors."""
    if isinstance(cache_layer, ReservedLayer):
        cache_layer.replace(keys, values)
    else:
        cache_layer.keys, cache_layer.values = keys, values


def plain_greedy(generation_config) -> bool:
    """True when the model's generation config adds nothing to greedy decoding but stop tokens."""
    return all(getattr(generation_config, name, default) in (default, None) for name, default in
               NOT_PLAIN_GREEDY.items())


def eos_ids(model, tokenizer) -> set[int]:
    """Every token that ends a row: the generation config's eos id(s) and the tokenizer's."""
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = list(ids) if isinstance(ids, (list, tuple)) else [ids]
    return {int(i) for i in [*ids, tokenizer.eos_token_id] if i is not None}


def share_heads(prompts: list[list[int]], image_keys: list[tuple], image_token_id: int
                ) -> tuple[list[list[int]], list[list[int]], list[int], list[int]]:
    """Split each prompt after its last image placeholder into a head and a (non-empty) tail; rows whose heads and
    images are equal (several questions about one image) share one head. Returns (heads, tails, head of each row,
    the first row of each head), the input `greedy_generate` takes."""
    heads: list[list[int]] = []
    tails: list[list[int]] = []
    head_of_row: list[int] = []
    first_rows: list[int] = []
    seen: dict[tuple, int] = {}
    for row, (ids, keys) in enumerate(zip(prompts, image_keys)):
        images = [i for i, t in enumerate(ids) if t == image_token_id]
        cut = images[-1] + 1 if images else min(1, len(ids) - 1)  # no image: share the BOS at most
        if cut >= len(ids):
            raise ValueError(f"prompt {row} ends on an image placeholder; the answer needs a prompt token after it "
                             f"(the conversation template's 'ASSISTANT:')")
        if cut < 1:
            raise ValueError(f"prompt {row} has {len(ids)} token(s); it needs at least two (a head and a tail)")
        key = (tuple(ids[:cut]), tuple(keys))
        if key not in seen:
            seen[key] = len(heads)
            heads.append(list(ids[:cut]))
            first_rows.append(row)
        head_of_row.append(seen[key])
        tails.append(list(ids[cut:]))
    return heads, tails, head_of_row, first_rows


def _right_padded(rows: list[list[int]], pad: int) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(n, q, S) bool -> (n, 1, q, S) additive float mask: 0 where a query may look, the dtype's minimum elsewhere
    (what Llama's layers take as a ready 4D `attention_mask`; FastV's masks are built with it too)."""
    return torch.where(allowed, 0.0, torch.finfo(dtype).min).to(dtype)[:, None]


def _rms_norm(norm, x: torch.Tensor) -> torch.Tensor:
    """LlamaRMSNorm's arithmetic, op for op (so bit for bit), without its module call."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * h.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Llama's rotary `rotate_half`: (..., D) -> (-second half, first half) on the last dimension."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Llama's rotary embedding of x (B, heads, T, D) with cos/sin (B, T, D) (used by the in-LLM methods)."""
    return x * cos.unsqueeze(1) + rotate_half(x) * sin.unsqueeze(1)


def _lean_decodable(llm) -> bool:
    """Whether `_lean_layer` computes exactly what this backbone's layers do: Llama layers, SDPA attention, as many
    KV heads as query heads (grouped-query attention stays with the layers' own code)."""
    layers = getattr(llm, "layers", [])
    return (len(layers) > 0 and all(type(layer) is LlamaDecoderLayer for layer in layers)
            and llm.config._attn_implementation == "sdpa" and not llm.training
            and all(layer.self_attn.num_key_value_groups == 1 for layer in layers))


def _lean_layer(layer, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
                cache_layer) -> torch.Tensor:
    """One LlamaDecoderLayer on one token per row, the same ops in the same order as its forward (hence the same
    bits) minus about a dozen module calls and keyword plumbing, which on a small model cost as much as the maths."""
    attn, mlp = layer.self_attn, layer.mlp
    shape = (hidden.shape[0], 1, -1, attn.head_dim)  # hidden: (rows, 1, H)
    x = _rms_norm(layer.input_layernorm, hidden)
    q, k, v = (F.linear(x, proj.weight, proj.bias).view(shape).transpose(1, 2)  # (rows, heads, 1, head_dim)
               for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    k, v = cache_layer.update(k, v)  # (rows, heads, S, head_dim)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, scale=attn.scaling, is_causal=False)
    out = out.transpose(1, 2).contiguous().reshape(hidden.shape[0], 1, -1).contiguous()
    hidden = hidden + F.linear(out, attn.o_proj.weight, attn.o_proj.bias)
    x = _rms_norm(layer.post_attention_layernorm, hidden)
    gate = mlp.act_fn(F.linear(x, mlp.gate_proj.weight, mlp.gate_proj.bias))
    x = F.linear(gate * F.linear(x, mlp.up_proj.weight, mlp.up_proj.bias), mlp.down_proj.weight, mlp.down_proj.bias)
    return hidden + x


def _decode_step(llm, embeds: torch.Tensor, mask: torch.Tensor | list[torch.Tensor],
                 positions: torch.Tensor | list[torch.Tensor], cache: Cache, lean: bool) -> torch.Tensor:
    """The LLM backbone on one new token per row, as `LlamaModel.forward` computes it when handed a ready 4D mask;
    through `_lean_layer` where `lean` (what `_lean_decodable` says of `llm`), else through the layers' forward.
    `mask`: one (rows, 1, 1, S) mask for every layer, or a list of one per layer (an in-LLM method whose layers
    cache different tokens: FastV's pruned layers); `positions` likewise one (rows, 1) tensor or one per layer (a
    method whose layers number new tokens differently: SparseVLM, MustDrop). Layers given the same positions
    object share one rotary embedding."""
    per_layer = isinstance(mask, list) or isinstance(positions, list)
    if not all(hasattr(llm, name) for name in ("rotary_emb", "layers", "norm")):  # not Llama-shaped
        if per_layer:
            raise ValueError("per-layer decode masks or positions need a Llama-shaped backbone (rotary_emb, layers, "
                             "norm)")
        return llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, **cache_kw(cache),
                   use_cache=True).last_hidden_state
    hidden = embeds  # (rows, 1, H)
    layers = llm.layers[:llm.config.num_hidden_layers]
    masks = mask if isinstance(mask, list) else [mask] * len(layers)
    places = positions if isinstance(positions, list) else [positions] * len(layers)
    rotaries: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for p in places:
        if id(p) not in rotaries:
            rotaries[id(p)] = llm.rotary_emb(hidden, position_ids=p)
    if lean:
        lean_rotaries = {key: tuple(t.unsqueeze(1) for t in rotary) for key, rotary in rotaries.items()}
        for layer, cache_layer, layer_mask, p in zip(layers, cache.layers, masks, places):
            cos, sin = lean_rotaries[id(p)]  # (rows, 1, 1, head_dim): broadcast over heads
            hidden = _lean_layer(layer, hidden, cos, sin, layer_mask, cache_layer)
        return _rms_norm(llm.norm, hidden)
    for layer, layer_mask, p in zip(layers, masks, places):
        hidden = layer(hidden, attention_mask=layer_mask, position_embeddings=rotaries[id(p)], position_ids=p,
                       **cache_kw(cache), use_cache=True)
    return llm.norm(hidden)


def decode_step(llm, embeds: torch.Tensor, masks: list[torch.Tensor], positions: torch.Tensor | list[torch.Tensor],
                cache: Cache) -> torch.Tensor:
    """One decode step of new tokens `embeds` (rows, q, H) at `positions` (rows, q) (or one such tensor per layer)
    through a Llama backbone whose layer i attends to its cached keys with `masks[i]` (rows, 1, q, S_i); the normed
    last hidden state (rows, q, H). One token per row on a backbone `_lean_decodable` accepts takes the lean layers
    (the same bits as the layers' own forward, without their per-call overhead); anything else the layers'
    forward. For in-LLM methods that decode from their pruned KV cache (FastV's `forward_llm_cached`)."""
    lean = embeds.shape[1] == 1 and _lean_decodable(llm) and len(cache.layers) >= len(masks)
    return _decode_step(llm, embeds, masks, positions, cache, lean)


def _rows_going(rows: list[int], next_ids: torch.Tensor, out: list[list[int]], max_new_tokens: list[int],
                eos: set[int], stop: Callable[[list[int], list[list[int]]], list[bool]] | None) -> list[int]:
    """Append each row's new token to `out` (an eos is not kept) and return the batch places of the rows that go
    on: not at an eos, under their max_new_tokens, not ended by `stop` (asked once for the whole batch)."""
    keep = []
    for b, (row, token) in enumerate(zip(rows, next_ids.tolist())):
        if token not in eos:
            out[row].append(token)
            if len(out[row]) < max_new_tokens[row]:
                keep.append(b)
    if stop and keep:  # one call per step for the whole batch: per-row calls cost more than the step on a GPU
        ended = stop([rows[b] for b in keep], [out[rows[b]] for b in keep])
        keep = [b for b, end in zip(keep, ended) if not end]
    return keep


def _decode_greedily(model, cache: Cache, next_ids: torch.Tensor, masks: list[torch.Tensor], starts: list[int],
                     positions: list[torch.Tensor], layer_of: list[tuple[int, int]] | None,
                     max_new_tokens: list[int], eos: set[int],
                     stop: Callable[[list[int], list[list[int]]], list[bool]] | None, lean: bool) -> list[list[int]]:
    """The greedy decode loop both `greedy_generate` and `pruned_greedy_generate` run, after their prefill chose
    `next_ids` (n,), the first new token of each row.

    `masks`: additive (n, 1, 1, W) masks, each masking out every slot from `starts[i]` on (slot starts[i] + step is
    opened at each step); `positions`: (n,) position ids of each row's next token. `layer_of[l]` names the mask and
    the positions LLM layer l uses (None: one mask and one positions tensor for every layer). A row leaves the batch
    at an eos, at its max_new_tokens or when `stop` says so (`_rows_going`); the cache loses its row then too."""
    device, embed, llm = next_ids.device, model.get_input_embeddings(), model.model.language_model
    n = next_ids.shape[0]
    rows = list(range(n))  # original index of each row still in the batch
    out: list[list[int]] = [[] for _ in range(n)]
    for step in range(max(max_new_tokens)):
        keep = _rows_going(rows, next_ids, out, max_new_tokens, eos, stop)
        if not keep:
            break
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            masks, positions, next_ids = [m[index] for m in masks], [p[index] for p in positions], next_ids[index]
            rows = [rows[b] for b in keep]
        seen = []
        for m, start in zip(masks, starts):
            m[:, :, :, start + step] = 0.0
            seen.append(m[:, :, :, :start + step + 1])
        places = [p[:, None] for p in positions]
        if layer_of is None:
            hidden = _decode_step(llm, embed(next_ids[:, None]), seen[0], places[0], cache, lean)  # (rows, 1, H)
        else:
            hidden = _decode_step(llm, embed(next_ids[:, None]), [seen[m] for m, _ in layer_of],
                                  [places[p] for _, p in layer_of], cache, lean)
        next_ids = model.lm_head(hidden[:, -1]).argmax(-1)
        for p in positions:
            p += 1
    return out


def heads_to_prefill(head_keys: list[Hashable], head_cache: dict | None) -> list[int]:
    """Indices of the heads that `greedy_generate` prefills (and needs the images of): those not in `head_cache`."""
    return [i for i, key in enumerate(head_keys) if head_cache is None or key not in head_cache]


def _prefill_with_known_heads(model, heads: list[list[int]], todo: list[int],
                              known: dict[int, list[tuple[torch.Tensor, torch.Tensor]]], cache: Cache,
                              pad_token_id: int, image_inputs: dict) -> None:
    """Fill `cache` with every head's keys/values, right-padded to the longest head: heads[i] for i in `known` from
    known[i] (per layer, (1, kv_heads, len, head_dim)), heads[todo] from one prefill over them alone."""
    device = model.lm_head.weight.device
    fresh = Cache(layers=[DynamicLayer() for _ in cache.layers])
    if todo:
        model.model(input_ids=_right_padded([heads[i] for i in todo], pad_token_id).to(device),
                    **cache_kw(fresh), use_cache=True, **image_inputs)
    width = max(len(h) for h in heads)
    some = next(iter(known.values()))
    for n, layer in enumerate(cache.layers):
        keys = some[n][0].new_zeros(len(heads), some[n][0].shape[1], width, some[n][0].shape[3])
        values = keys.new_zeros(len(heads), some[n][1].shape[1], width, some[n][1].shape[3])
        if todo:
            got = fresh.layers[n]
            keys[todo, :, :got.keys.shape[2]], values[todo, :, :got.values.shape[2]] = got.keys, got.values
        for i, kv in known.items():
            keys[i, :, :kv[n][0].shape[2]], values[i, :, :kv[n][1].shape[2]] = kv[n][0][0], kv[n][1][0]
        layer.update(keys, values)


@torch.inference_mode()
def greedy_generate(model, heads: list[list[int]], tails: list[list[int]], head_of_row: list[int],
                    max_new_tokens: list[int], *, eos_token_ids: Iterable[int],
                    stop: Callable[[list[int], list[list[int]]], list[bool]] | None = None, pad_token_id: int = 0,
                    head_keys: list[Hashable] | None = None, head_cache: dict | None = None,
                    **image_inputs) -> list[list[int]]:
    """Generated ids per row (without the eos); row i ends at an eos, at max_new_tokens[i] or when stop says so.

    `stop(rows, ids)` is asked once per step about the rows still going (their indices and generated ids so far)
    and returns one bool per row: True ends that row.

    Row i's prompt is heads[head_of_row[i]] + tails[i] (ids, image placeholders expanded, all of them in the head;
    `share_heads` builds these). Each head is prefilled once however many rows start with it, so several questions
    about one image pay for its ~600 prompt tokens once. `image_inputs` is what the model's forward takes for the
    images of `heads`, in order (`pixel_values=` or `mm_encoder_outputs={"image": visual tokens}`).

    Across batches: with `head_keys` (one hashable per head, naming its ids and images) and a `head_cache` dict,
    heads whose key is in the cache are not prefilled again, and `image_inputs` covers only the other heads (those
    `heads_to_prefill` names). On return the cache holds the prefilled keys/values of the last row's head alone:
    the next batch in request order often starts with more questions about that image.
    """
    paths = getattr(model.config, "fast_paths", None)
    if paths is not None and not paths.shared_prefill:
        raise ValueError("this model's methods read the question or act inside the LLM (config.fast_paths); "
                         "greedy_generate's shared prefill would answer wrongly: use model.generate()")
    eos = set(eos_token_ids)
    device = model.lm_head.weight.device
    if pad_token_id == model.config.image_token_id:
        pad_token_id = 0  # a pad must never count as an image placeholder
    if not all(tails):
        raise ValueError("every row needs at least one prompt token after its head")
    n = len(tails)
    head_len = torch.tensor([len(h) for h in heads], device=device)[torch.tensor(head_of_row, device=device)]
    tail_len = torch.tensor([len(t) for t in tails], device=device)
    width_head, width_tail = max(len(h) for h in heads), int(tail_len.max())
    longest = width_head + width_tail + max(max_new_tokens)
    # Room for the tails and the first answer tokens; a layer grows by as much again when it runs out, so a large
    # max_new_tokens (1024 in some lmms-eval tasks) reserves nothing that short answers never use.
    room = width_tail + min(max(max_new_tokens), DECODE_ROOM)
    cache = Cache(layers=[ReservedLayer(room) for _ in range(model.config.text_config.num_hidden_layers)])

    # 1. Heads, right-padded: causal attention alone keeps every real token blind to the padding after it.
    todo = heads_to_prefill(head_keys, head_cache) if head_keys is not None else list(range(len(heads)))
    if len(todo) == len(heads):
        model.model(input_ids=_right_padded(heads, pad_token_id).to(device), **cache_kw(cache), use_cache=True,
                    **image_inputs)
    else:
        todo_set = set(todo)
        known = {i: head_cache[key] for i, key in enumerate(head_keys) if i not in todo_set}
        _prefill_with_known_heads(model, heads, todo, known, cache, pad_token_id, image_inputs)
    if head_cache is not None and head_keys is not None:  # keep the last row's head for the next batch
        last = head_of_row[-1]
        kv = [(layer.keys[last:last + 1, :, :len(heads[last])].clone(),
               layer.values[last:last + 1, :, :len(heads[last])].clone()) for layer in cache.layers]
        head_cache.clear()
        head_cache[head_keys[last]] = kv
    cache.batch_select_indices(torch.tensor(head_of_row, device=device))  # one copy of its head's keys per row

    # 2. Tails, right-padded into slots width_head, ...: each sees its own head and its own earlier tail tokens.
    slots = torch.arange(longest, device=device)  # (S,) every slot the cache can come to hold
    in_head = slots[None, :] < head_len[:, None]  # (n, S)
    tail_pos = slots - width_head  # (S,) position of a slot inside the tail block
    seen = in_head[:, None, :] | ((tail_pos[None, None, :] >= 0)
                                  & (tail_pos[None, None, :] <= torch.arange(width_tail, device=device)[None, :, None])
                                  & (tail_pos[None, None, :] < tail_len[:, None, None]))  # (n, tail, S)
    dtype = model.lm_head.weight.dtype
    positions = head_len[:, None] + torch.arange(width_tail, device=device)[None, :]  # (n, tail)
    embed = model.get_input_embeddings()
    hidden = model.model.language_model(
        inputs_embeds=embed(_right_padded(tails, pad_token_id).to(device)),
        attention_mask=additive_mask(seen[:, :, :width_head + width_tail], dtype), position_ids=positions,
        **cache_kw(cache), use_cache=True,
    ).last_hidden_state  # (n, tail, H)
    next_ids = model.lm_head(hidden[torch.arange(n, device=device), tail_len - 1]).argmax(-1)  # (n,)

    # 3. Decode: new tokens go to slots width_head + width_tail, + 1, ...; padding slots stay masked out.
    mask = additive_mask(seen[torch.arange(n, device=device), tail_len - 1][:, None, :], dtype)  # (n, 1, 1, S)
    lean = _lean_decodable(model.model.language_model) and (paths is None or paths.lean_decode)
    return _decode_greedily(model, cache, next_ids, [mask], [width_head + width_tail], [head_len + tail_len], None,
                            max_new_tokens, eos, stop, lean)


@torch.inference_mode()
def pruned_greedy_generate(model, inputs: dict, max_new_tokens: list[int], *, eos_token_ids: Iterable[int],
                           stop: Callable[[list[int], list[list[int]]], list[bool]] | None = None
                           ) -> list[list[int]]:
    """Generated ids per row (without the eos) for a model whose in-LLM method prunes its KV cache and plans its
    decoding (`LlmMethod.plans_decode`): the method's prefill once on `inputs` (what the model's forward takes:
    left-padded `input_ids`, `attention_mask`, the images, the question's ids), then `_decode_greedily`, the base
    model's loop, on the masks and positions of the method's `decode_plan` (the lean layers where the backbone
    allows). Stops as `greedy_generate` does. The tokens are those of `generate(do_sample=False, use_cache=True)`
    on the same cache, whose per-step `generate` and `LlavaForConditionalGeneration` work this loop does without;
    and finished rows leave the batch."""
    method = model.model.token_method
    if method is None or not getattr(method, "plans_decode", False):
        raise ValueError("pruned_greedy_generate needs an in-LLM method that plans its decoding (plans_decode)")
    room = max(max_new_tokens)
    cache = reserved_cache(model, room)
    hidden = model.model(**inputs, past_key_values=cache, use_cache=True).last_hidden_state  # (n, T', H)
    next_ids = model.lm_head(hidden[:, -1]).argmax(-1)  # left-padded: every row's last token is last
    plan = method.decode_plan(cache, inputs.get("attention_mask"))
    dtype = model.lm_head.weight.dtype
    masks, starts, positions, layer_of = [], [], [], []
    mask_of: dict[int, int] = {}  # id of a past_valid tensor -> its mask (layers sharing it share the mask)
    place_of: dict[int, int] = {}
    for valid, place in zip(plan.past_valid, plan.positions):
        if id(valid) not in mask_of:  # the cached keys, then room for the answer (masked until written)
            mask_of[id(valid)] = len(masks)
            masks.append(additive_mask(torch.cat([valid, valid.new_zeros(valid.shape[0], room)], dim=1)[:, None],
                                       dtype))
            starts.append(valid.shape[1])
        if id(place) not in place_of:
            place_of[id(place)] = len(positions)
            positions.append(place.clone())
        layer_of.append((mask_of[id(valid)], place_of[id(place)]))
    lean = _lean_decodable(model.model.language_model)
    return _decode_greedily(model, cache, next_ids, masks, starts, positions, layer_of, max_new_tokens,
                            set(eos_token_ids), stop, lean)
