"""Greedy decoding of a batch of prompts for the model family, each row with its own length and stop rule.

Why not `model.generate()`: on prompts of different lengths it left-pads and masks, so every prefill layer attends
through an explicit mask (no causal kernel, and a bool-to-float mask conversion per layer), every decode step
copies the whole KV cache to append one token, and rows that are done keep being computed until the longest one
ends. Here the prefill is right-padded and purely causal (padding sits after each prompt, where no real token can
see it), the KV cache has room reserved for the answers, and a finished row leaves the batch. The tokens are those
of `generate(do_sample=False)`, up to float rounding; sampling and beam search stay with `generate()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from transformers.cache_utils import Cache, DynamicLayer

# Generation-config fields that make decoding more than an argmax: when one is set, use generate() instead.
NOT_PLAIN_GREEDY = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0,
                    "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None,
                    "forced_bos_token_id": None, "forced_eos_token_id": None, "min_new_tokens": None,
                    "min_length": 0, "sequence_bias": None, "exponential_decay_length_penalty": None,
                    "watermarking_config": None}


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

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self.keys, self.values = self._keys[:, :, :self.length], self._values[:, :, :self.length]


def plain_greedy(generation_config) -> bool:
    """True when the model's generation config adds nothing to greedy decoding but stop tokens."""
    return all(getattr(generation_config, name, default) in (default, None) for name, default in
               NOT_PLAIN_GREEDY.items())


def eos_ids(model, tokenizer) -> set[int]:
    """Every token that ends a row: the generation config's eos id(s) and the tokenizer's."""
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = list(ids) if isinstance(ids, (list, tuple)) else [ids]
    return {int(i) for i in [*ids, tokenizer.eos_token_id] if i is not None}


@torch.inference_mode()
def greedy_generate(model, prompts: list[list[int]], max_new_tokens: list[int], *, eos_token_ids: Iterable[int],
                    stop: Callable[[int, list[int]], bool] | None = None, pad_token_id: int = 0,
                    **image_inputs) -> list[list[int]]:
    """Generated ids per prompt (without the eos); row i ends at an eos, at max_new_tokens[i] or when stop(i, ids).

    `prompts` are unpadded token ids with the image placeholders already expanded; `image_inputs` is what the
    model's forward takes for the images (`pixel_values=` or `mm_encoder_outputs={"image": visual tokens}`).
    """
    eos = set(eos_token_ids)
    device = model.lm_head.weight.device
    n = len(prompts)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    width = int(lengths.max())
    if pad_token_id == model.config.image_token_id:
        pad_token_id = 0  # a pad must never count as an image placeholder
    ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, :len(prompt)] = torch.tensor(prompt, dtype=torch.long)
    room = max(max_new_tokens)
    cache = Cache(layers=[ReservedLayer(room) for _ in range(model.config.text_config.num_hidden_layers)])

    # Prefill, right-padded: causal attention alone keeps every real token blind to the padding after it.
    hidden = model.model(input_ids=ids.to(device), past_key_values=cache, use_cache=True,
                         **image_inputs).last_hidden_state  # (n, width, H)
    next_ids = model.lm_head(hidden[torch.arange(n, device=device), lengths - 1]).argmax(-1)  # (n,)

    # Decode: new tokens go to slots width, width + 1, ...; the padding slots stay masked out.
    dtype = hidden.dtype
    slots = torch.arange(width + room, device=device)
    mask = torch.where(slots[None, :] < lengths[:, None], 0.0, torch.finfo(dtype).min).to(dtype)[:, None, None, :]
    positions = lengths.clone()  # (n,) position id of each row's next token
    rows = list(range(n))  # original index of each row still in the batch
    out: list[list[int]] = [[] for _ in range(n)]
    embed = model.get_input_embeddings()
    for step in range(room):
        keep = []
        for b, (row, token) in enumerate(zip(rows, next_ids.tolist())):
            if token in eos:
                continue
            out[row].append(token)
            if len(out[row]) < max_new_tokens[row] and not (stop and stop(row, out[row])):
                keep.append(b)
        if not keep:
            break
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask, positions, next_ids = mask[index], positions[index], next_ids[index]
            rows = [rows[b] for b in keep]
        mask[:, :, :, width + step] = 0.0
        hidden = model.model.language_model(
            inputs_embeds=embed(next_ids[:, None]), attention_mask=mask[:, :, :, :width + step + 1],
            position_ids=positions[:, None], past_key_values=cache, use_cache=True,
        ).last_hidden_state  # (rows, 1, H)
        next_ids = model.lm_head(hidden[:, -1]).argmax(-1)
        positions += 1
    return out
