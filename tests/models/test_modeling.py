"""The model and processor on tiny presets: placeholders, batching, generation."""

import pytest
import torch
from PIL import Image

from stf_bench import load_model
from stf_bench.errors import StfBenchError

TINY = ["llava-tiny", "stf-tiny", "mbtf-tiny", "stf-only-tiny", "avgpool-tiny", "tokenconcat-tiny", "qformer-tiny",
        "stf-llama3.1-tiny"]
EXPECTED_TOKENS = {"llava-tiny": 576, "mbtf-tiny": 576}


def _image(colour=(200, 30, 30), size=(320, 200)):
    return Image.new("RGB", size, colour)


@pytest.mark.parametrize("name", TINY)
def test_processor_inserts_exactly_the_variants_token_count(name):
    model, processor = load_model(name)
    n = EXPECTED_TOKENS.get(name, 144)
    assert model.num_visual_tokens == n
    inputs = processor(images=[_image()], text=["USER: <image>\nWhat colour? ASSISTANT:"])
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == n
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape[1] == inputs["input_ids"].shape[1]
    assert out.image_hidden_states.shape == (1, n, model.config.text_config.hidden_size)


def test_generate_on_cpu_produces_tokens():
    model, processor = load_model("stf-tiny")
    processor.tokenizer.padding_side = "left"
    inputs = processor(images=[_image(), _image((0, 0, 255), (100, 300))],
                       text=["USER: <image>\nWhat colour? ASSISTANT:", "USER: <image>\nWhat is it? Be brief. ASSISTANT:"])
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new = out[:, inputs["input_ids"].shape[1]:]
    assert new.shape == (2, 8)
    assert all(isinstance(t, str) for t in processor.batch_decode(new, skip_special_tokens=True))


def test_batched_and_single_visual_tokens_agree(tiny_model):
    model, processor = tiny_model("stf-tiny")
    pixels = processor.preprocess_images([_image(), _image((10, 200, 10), (50, 90))])
    with torch.no_grad():
        both = model.visual_tokens(pixels)
        one = model.visual_tokens(pixels[1:])
    assert torch.allclose(both[1:], one, atol=1e-6)


def test_square_padding_uses_the_clip_mean_colour(tiny_model):
    _, processor = tiny_model("llava-tiny")
    pixels = processor.preprocess_images([Image.new("RGB", (336, 100), (255, 255, 255))])
    corner = pixels[0, :, 0, 0]  # padded region, normalised mean colour ~ 0
    assert corner.abs().max() < 0.02
    assert pixels[0, :, 168, 168].min() > 1.0  # the white image itself


def test_level_table_pixels_equal_the_image_processors_own():
    """clip_pixels (8-bit pixels looked up in a per-level table) gives the very floats of the processor's float
    passes, on noise (every level of every channel), odd sizes and upscaled or downscaled images."""
    import numpy as np

    from stf_bench.models.processing import clip_pixels

    _, processor = load_model("llava-tiny")
    ip = processor.image_processor
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in
              [(336, 336), (160, 160), (97, 250), (700, 411)]] + [_image((0, 255, 17), (5, 9))]
    expected = ip(images, return_tensors="pt")["pixel_values"]
    got = clip_pixels(ip, images, workers=1)
    assert got.dtype == expected.dtype == torch.float32 and got.shape == expected.shape == (5, 3, 336, 336)
    assert torch.equal(got, expected)
    for workers in (2, 3, 8):  # split over threads (8 > 5 images): the same floats in the same order
        assert torch.equal(clip_pixels(ip, images, workers=workers), expected)
    ip.do_normalize = False  # no table for this processor: its own path, unchanged
    try:
        assert torch.equal(clip_pixels(ip, images[:2]), ip(images[:2], return_tensors="pt")["pixel_values"])
    finally:
        ip.do_normalize = True
    ip.do_center_crop = False  # uncropped: one non-square size works, mixed sizes fail as the processor's own path
    try:
        wide = [_image((9, 99, 199), (100, 50)), _image((200, 3, 40), (100, 50))]
        assert torch.equal(clip_pixels(ip, wide), ip(wide, return_tensors="pt")["pixel_values"])
        for workers in (1, 2):  # one odd size in each thread's chunk: still the processor's own error
            with pytest.raises(ValueError, match="pixel_values"):
                clip_pixels(ip, [wide[0], _image(size=(50, 100))], workers=workers)
    finally:
        ip.do_center_crop = True


def test_placeholder_mismatch_is_a_clear_error(tiny_model):
    model, processor = tiny_model("stf-tiny")
    ids = processor.tokenizer(["USER: <image>\nHi ASSISTANT:"], return_tensors="pt")["input_ids"]  # 1 placeholder
    with pytest.raises(StfBenchError, match="144"):
        model(input_ids=ids, pixel_values=processor.preprocess_images([_image()]))
    with pytest.raises(ValueError, match="1 '<image>' tags for 2 images"):
        processor(images=[_image(), _image()], text=["<image> one"])


@pytest.mark.parametrize("name", ["llava-tiny", "stf-tiny"])
def test_vision_features_stop_at_the_deepest_block_read(name):
    """Equal to the full tower's hidden states, without running the blocks above the deepest one read."""
    model, processor = load_model(name)
    pixels = processor.preprocess_images([_image(), _image((10, 200, 10), (50, 90))])
    tower = model.model.vision_tower
    ran = []
    hooks = [block.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, block in
             enumerate(tower.encoder.layers)]
    with torch.no_grad():
        fast = model.vision_features(pixels)
        deepest = max(i % 25 for i in model.config.feature_layers)
        assert ran == list(range(deepest))
        full = tower(pixels, output_hidden_states=True).hidden_states
    for hook in hooks:
        hook.remove()
    expected = torch.cat([full[i][:, 1:] for i in model.config.feature_layers], dim=-1)
    assert deepest < 24  # LLaVA reads the penultimate block, the released MBTF stops below the top too
    assert torch.equal(fast, expected)


@pytest.mark.parametrize("name", ["llava-tiny", "stf-tiny"])
def test_token_ids_equal_the_tokenised_expanded_prompts(name, tiny_model):
    _, processor = tiny_model(name)
    prompts = ["USER: <image>\nWhat colour? ASSISTANT:", "<image>\n<image> two images, one prompt", "no image at all",
               "A chat. USER: <image>\n图中有什么? ASSISTANT:"]
    # the byte-level tokenizer has no dummy prefix and no merges: per-chunk ids equal the whole expanded prompt's
    n = processor.num_visual_tokens
    expected = processor.tokenizer([p.replace("<image>", "<image>" * n) for p in prompts])["input_ids"]
    assert processor.token_ids(prompts) == expected
    assert sum(t == processor.image_token_id for t in processor.token_ids(prompts)[1]) == 2 * processor.num_visual_tokens


def test_vision_context_holds_clips_own_attention_of_the_block_read():
    """What a method that `needs_attention` reads equals CLIP's own output_attentions / hidden_states there."""
    from stf_bench.methods import VisionContext

    model, _ = load_model("llava-tiny", attn_implementation="eager")
    pixels = torch.randn(2, 3, 336, 336, generator=torch.Generator().manual_seed(0))
    context = VisionContext(grid=24)
    with torch.no_grad():
        features = model.model.vision_features(pixels, context)
        own = model.model.vision_tower(pixels, output_attentions=True, output_hidden_states=True)
    assert torch.allclose(context.attentions, own.attentions[-2], atol=1e-6)  # the penultimate block's
    assert torch.allclose(context.hidden, own.hidden_states[-2], atol=1e-5)
    assert torch.equal(features, context.hidden[:, 1:]) and context.keys.shape == (2, 2, 577, 16)


def test_a_vision_hook_on_a_method_that_does_not_act_in_the_llm_is_refused(monkeypatch):
    """Only an in-LLM stage can remove the padding placeholders a per-image count leaves: a vision method declaring
    a hook is refused when the model is built, naming the reason."""
    from stf_bench.methods import TokenMethod, registry

    class HookedVision(TokenMethod):
        name = "hooked-vision"
        vision_hook = 1

    monkeypatch.setitem(registry._REGISTRY, "hooked-vision", HookedVision)
    with pytest.raises(StfBenchError, match="declares a vision hook: it must act in the LLM too"):
        load_model("llava-tiny", method="hooked-vision")
