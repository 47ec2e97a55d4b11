"""Greedy decoding with right-padded prefill and shrinking batches equals generate() row by row."""

import pytest
import torch
from PIL import Image
from transformers import GenerationConfig

from stf_bench import load_model
from stf_bench.models.generation import (
    ReservedLayer,
    eos_ids,
    greedy_generate,
    heads_to_prefill,
    plain_greedy,
    share_heads,
)

PROMPTS = ["USER: <image>\nWhat colour? ASSISTANT:", "USER: <image>\nWhat is it? Answer in one word. ASSISTANT:",
           "USER: <image>\nHow many? ASSISTANT:"]
IMAGES = [Image.new("RGB", (320, 200), (200, 30, 30)), Image.new("RGB", (100, 300), (0, 0, 255)),
          Image.new("RGB", (64, 64), (20, 200, 20))]


@pytest.fixture(scope="module", params=["stf-tiny", "stf-llama3.1-tiny"])
def loaded(request):
    model, processor = load_model(request.param, dtype=torch.float32)
    return model.eval(), processor


def _solo(model, processor, i: int, max_new: int, eos: int) -> list[int]:
    """generate() on one prompt alone (no padding at all): the reference."""
    inputs = processor(images=[IMAGES[i]], text=[PROMPTS[i]])
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new, do_sample=False, eos_token_id=eos, pad_token_id=processor.tokenizer.pad_token_id)
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    return new[:new.index(eos)] if eos in new else new


def _ids(processor, prompts=PROMPTS) -> list[list[int]]:
    return processor.token_ids(prompts)


def _generate(model, processor, max_new, image_ids=(0, 1, 2), prompts=PROMPTS, cached=False, **kwargs):
    """greedy_generate over `prompts`, row i about IMAGES[image_ids[i]], heads shared where they can be."""
    ids = _ids(processor, prompts)
    heads, tails, head_of_row, first_rows = share_heads(ids, [[i] for i in image_ids],
                                                        model.config.image_token_id)
    pixels = processor.preprocess_images([IMAGES[image_ids[r]] for r in first_rows])
    images = ({"mm_encoder_outputs": {"image": model.visual_tokens(pixels)}} if cached else {"pixel_values": pixels})
    return greedy_generate(model, heads, tails, head_of_row, max_new, **images, **kwargs)


@pytest.mark.parametrize("cached", [False, True])
def test_each_row_equals_generate_on_that_prompt_alone(loaded, cached):
    model, processor = loaded
    max_new = [9, 4, 12]  # rows leave the batch at different steps
    plain_eos = processor.tokenizer.eos_token_id
    first = _solo(model, processor, 0, 12, eos=plain_eos)
    cut = next(i for i, t in enumerate(first) if i >= 2 and t not in first[:i])
    eos = first[cut]  # a token the model really emits: row 0 (at least) ends on it, after `cut` tokens
    got = _generate(model, processor, max_new, cached=cached, eos_token_ids={eos})
    assert got[0] == first[:cut]
    assert got == [_solo(model, processor, i, n, eos) for i, n in enumerate(max_new)]


def test_stop_rule_ends_a_row_and_keeps_the_others(loaded):
    model, processor = loaded
    seen = []

    def stop(rows: list[int], new: list[list[int]]) -> list[bool]:
        seen.append(list(rows))
        return [row == 1 and len(ids) == 2 for row, ids in zip(rows, new)]

    eos = {processor.tokenizer.eos_token_id}
    got = _generate(model, processor, [6, 6, 6], eos_token_ids=eos, stop=stop)
    assert [len(g) for g in got] == [6, 2, 6]
    assert got[0] == _solo(model, processor, 0, 6, eos=processor.tokenizer.eos_token_id)
    assert seen[:3] == [[0, 1, 2], [0, 1, 2], [0, 2]]  # once per step; a finished row is not asked again


def test_pad_id_that_is_the_image_token_is_replaced(loaded):
    model, processor = loaded
    image_pad = _generate(model, processor, [5, 5, 5], eos_token_ids=set(), pad_token_id=model.config.image_token_id)
    assert image_pad == _generate(model, processor, [5, 5, 5], eos_token_ids=set())


def test_questions_about_one_image_share_its_head_and_answer_as_if_alone(loaded):
    model, processor = loaded
    eos = processor.tokenizer.eos_token_id
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[2], PROMPTS[1]]
    image_ids = [0, 0, 0, 2, 1]  # three questions (one asked twice) about image 0, one each about 2 and 1
    heads, tails, head_of_row, first_rows = share_heads(_ids(processor, prompts), [[i] for i in image_ids],
                                                        model.config.image_token_id)
    assert head_of_row == [0, 0, 0, 1, 2] and first_rows == [0, 3, 4]
    assert all(h[-1] == model.config.image_token_id for h in heads)
    got = _generate(model, processor, [7, 3, 7, 5, 6], image_ids=image_ids, prompts=prompts, eos_token_ids={eos})
    assert got[0] == got[2]
    for row, (prompt, image) in enumerate(zip(prompts, image_ids)):
        inputs = processor(images=[IMAGES[image]], text=[prompt])
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=[7, 3, 7, 5, 6][row], do_sample=False, eos_token_id=eos)
        new = out[0, inputs["input_ids"].shape[1]:].tolist()
        assert got[row] == (new[:new.index(eos)] if eos in new else new)


def test_share_heads_without_images_shares_at_most_the_first_token():
    heads, tails, head_of_row, first_rows = share_heads([[1, 5, 6], [1, 7], [1, 5, 6]], [[], [], []], 99)
    assert heads == [[1]] and tails == [[5, 6], [7], [5, 6]] and head_of_row == [0, 0, 0] and first_rows == [0]
    with pytest.raises(ValueError, match="prompt 1 ends on an image placeholder"):
        share_heads([[1, 99, 5], [1, 99, 99]], [["a"], ["b"]], 99)
    with pytest.raises(ValueError, match="prompt 0 has 1 token"):
        share_heads([[1]], [[]], 99)


def test_reserved_layer_grows_past_its_room():
    layer = ReservedLayer(room=2)
    k = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    layer.update(k, -k)
    for step in range(4):  # the room is 2: the third step reallocates and keeps what was there
        keys, values = layer.update(k[:, :, :1] + step, -k[:, :, :1] - step)
    assert keys.shape == (2, 3, 8, 5) and layer.get_seq_length() == 8
    assert torch.equal(keys[:, :, :4], k) and torch.equal(keys[:, :, 7:], k[:, :, :1] + 3)
    assert torch.equal(values, -keys)
    layer.batch_select_indices(torch.tensor([1]))
    assert torch.equal(layer.keys[0, :, :4], k[1])


def test_plain_greedy_sees_what_changes_greedy_decoding():
    assert plain_greedy(GenerationConfig(eos_token_id=2))
    assert not plain_greedy(GenerationConfig(repetition_penalty=1.3))
    assert not plain_greedy(GenerationConfig(no_repeat_ngram_size=3))


def test_eos_ids_merge_the_generation_config_and_the_tokenizer(loaded):
    model, processor = loaded
    ids = eos_ids(model, processor.tokenizer)
    assert processor.tokenizer.eos_token_id in ids
    model.generation_config.eos_token_id = [7, 9]
    try:
        assert {7, 9} <= eos_ids(model, processor.tokenizer)
    finally:
        model.generation_config.eos_token_id = processor.tokenizer.eos_token_id


def test_long_answers_grow_the_cache_past_its_first_room(loaded, monkeypatch):
    from stf_bench.models import generation

    model, processor = loaded
    eos = {processor.tokenizer.eos_token_id}
    roomy = _generate(model, processor, [9, 4, 12], eos_token_ids=eos)
    monkeypatch.setattr(generation, "DECODE_ROOM", 2)  # every layer reallocates (keeping its contents) mid-answer
    assert _generate(model, processor, [9, 4, 12], eos_token_ids=eos) == roomy


def test_lean_decode_step_computes_the_layers_bits(loaded):
    """`_decode_step`'s lean Llama layer gives the very bits of the layers' own forward (Llama, SDPA, one KV head per
    query head); where it does not apply (grouped-query attention) the layers run as they are."""
    from transformers.cache_utils import Cache

    from stf_bench.models import generation

    model, _ = loaded
    llm = model.model.language_model
    cfg = llm.config
    assert generation._lean_decodable(llm) == (cfg.num_key_value_heads == cfg.num_attention_heads)
    if cfg.num_key_value_heads != cfg.num_attention_heads:
        return  # grouped-query attention: the layers' own forward (test_each_row_equals_generate_... covers it)
    torch.manual_seed(0)
    prefill, step = torch.randn(3, 6, cfg.hidden_size), torch.randn(3, 1, cfg.hidden_size)
    mask = torch.zeros(3, 1, 1, 7)
    mask[1, :, :, 2] = torch.finfo(torch.float32).min  # row 1 never sees slot 2 (a padding slot, say)

    def step_once(lean: bool) -> tuple[torch.Tensor, torch.Tensor]:
        cache = Cache(layers=[ReservedLayer(4) for _ in range(cfg.num_hidden_layers)])
        with torch.inference_mode():
            llm(inputs_embeds=prefill, past_key_values=cache, use_cache=True)
            hidden = generation._decode_step(llm, step, mask, torch.tensor([[6], [6], [5]]), cache, lean)
        return hidden, cache.layers[-1].keys

    (lean, lean_keys), (layers, layer_keys) = step_once(True), step_once(False)
    assert lean.shape == (3, 1, cfg.hidden_size) and layer_keys.shape[-2] == 7
    assert torch.equal(lean, layers) and torch.equal(lean_keys, layer_keys)


def test_a_head_carried_from_the_previous_batch_answers_as_if_prefilled_again(loaded):
    """Batch 1 ends on image 1; batch 2 asks about images 1 and 2: image 1's head comes from the cache (and its
    image is not passed at all), image 2's is prefilled; every row equals generate() on its prompt alone."""
    model, processor = loaded
    eos = {processor.tokenizer.eos_token_id}
    ids = _ids(processor)
    cache: dict = {}

    def batch(rows: list[int]) -> list[list[int]]:
        heads, tails, head_of_row, first_rows = share_heads([ids[r] for r in rows], [[r] for r in rows],
                                                            model.config.image_token_id)
        names = [(tuple(h), rows[r]) for h, r in zip(heads, first_rows)]
        todo = [rows[first_rows[h]] for h in heads_to_prefill(names, cache)]
        pixels = {"pixel_values": processor.preprocess_images([IMAGES[r] for r in todo])} if todo else {}
        return greedy_generate(model, heads, tails, head_of_row, [6] * len(rows), eos_token_ids=eos,
                               head_keys=names, head_cache=cache, **pixels)

    first = batch([0, 1])
    assert len(cache) == 1 and next(iter(cache))[1] == 1  # the last row's head, kept
    second = batch([1, 2])
    assert [*first, *second] == [_solo(model, processor, i, 6, min(eos)) for i in (0, 1, 1, 2)]
    assert next(iter(cache))[1] == 2
    assert batch([2]) == second[1:]  # every head known: no prefill at all
