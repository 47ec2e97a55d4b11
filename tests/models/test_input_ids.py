"""The ids stf-bench feeds the model equal LLaVA-1.5's official ones, for every checkpoint format.

The expected ids (tests/data/llama/official_ids.json) were made once with LLaVA's own `tokenizer_image_token`
(haotian-liu/LLaVA @ c121f04) and transformers 4.37.2's slow LlamaTokenizer on the real LLaMA/Vicuna
`tokenizer.model` (tests/data/llama; how: tests/data/llama/make_official_ids.py): the llava-protocol prompt of every
sample row of all ten benchmarks, adversarial strings and loglikelihood strings. Each `<image>` is compared as one
position (-200). Checkpoints are tiny in width but carry the real 32,000-piece vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("sentencepiece")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from liuhaotian_ckpt import TEXT, VISION, write_liuhaotian_checkpoint, write_tiny_clip  # noqa: E402

from stf_bench import load_model  # noqa: E402
from stf_bench.models.conversation import vicuna_v1  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "llama"
TOKENIZER_MODEL = DATA / "tokenizer.model"
OFFICIAL = json.loads((DATA / "official_ids.json").read_text())
CASES = OFFICIAL["cases"]
IMAGE = OFFICIAL["meta"]["image"]  # -200, LLaVA's IMAGE_TOKEN_INDEX
BENCHMARKS = {"gqa", "scienceqa_img", "textvqa_val", "pope", "mmbench_en_dev", "mmbench_cn_dev", "vqav2_val",
              "vizwiz_vqa_val", "ocrbench", "chartqa"}
_ADDED = {"__type": "AddedToken", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}


def _padded_rows(processor, prompts: list[str]) -> list[list[int]]:
    """`text_inputs`' padded batch with the padding cut away."""
    padded = processor.text_inputs(prompts)
    return [ids[mask.bool()].tolist() for ids, mask in zip(padded["input_ids"], padded["attention_mask"])]


def _collapse(ids: list[int], image_id: int, n: int) -> list[int]:
    out, i = [], 0
    while i < len(ids):
        if ids[i] == image_id:
            assert ids[i:i + n] == [image_id] * n, f"an image at {i} has fewer than {n} placeholders"
            out.append(IMAGE)
            i += n
        else:
            out.append(ids[i])
            i += 1
    return out


def _assert_official(processor, setting: str) -> None:
    """Every prompt's ids (`token_ids`, what the greedy path feeds; each image's placeholders collapsed to one
    -200) equal LLaVA's; the padded batch (`text_inputs`: generate() and loglikelihood) holds the same rows."""
    prompts = [c["prompt"] for c in CASES]
    rows = processor.token_ids(prompts)
    fed = [_collapse(r, processor.image_token_id, processor.num_visual_tokens) for r in rows]
    wrong = [(c["name"], c["prompt"][-50:], ids, c["ids"][setting]) for c, ids in zip(CASES, fed)
             if ids != c["ids"][setting]]
    assert not wrong, f"{len(wrong)} of {len(CASES)} prompts differ from LLaVA's ids, e.g. {wrong[:3]}"
    assert _padded_rows(processor, prompts) == rows


def test_the_data_covers_every_benchmark_and_the_vocabulary_is_metas():
    assert hashlib.sha256(TOKENIZER_MODEL.read_bytes()).hexdigest() == OFFICIAL["meta"]["tokenizer_model_sha256"]
    assert {c["name"].split("/")[0] for c in CASES} == BENCHMARKS | {"adversarial", "loglikelihood"}
    gqa = next(c for c in CASES if c["name"] == "gqa/0")
    i = gqa["ids"]["legacy_false"].index(IMAGE)
    assert gqa["ids"]["legacy_false"][i - 1:i + 3] == [29871, IMAGE, 29871, 13]  # "▁" <image> "▁" "\n"
    # the settings differ only where a special token sits in the text (legacy: no dummy "▁" after it)
    differ = {c["prompt"] for c in CASES if c["ids"]["legacy_false"] != c["ids"]["legacy_true"]}
    assert differ and all("</s>" in p for p in differ)
    assert all(c["ids"]["legacy_unset"] == c["ids"]["legacy_true"] for c in CASES)  # 4.37.2's default


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "clip-vit-large-patch14-336")[0]


@pytest.mark.parametrize("model_type", ["llava", "llava_llama"])
@pytest.mark.parametrize(("legacy", "setting"), [(False, "legacy_false"), (None, "legacy_unset")])
def test_original_llava_checkpoint(tmp_path, clip, model_type, legacy, setting):
    """liuhaotian/llava-v1.5-7b (`llava`) and LLaVA-STF (`llava_llama`): only `tokenizer.model`."""
    ckpt, _, _ = write_liuhaotian_checkpoint(tmp_path / "ckpt", tokenizer_model=TOKENIZER_MODEL,
                                             model_type=model_type, legacy=legacy)
    _, processor = load_model(ckpt, vision_tower=str(clip))
    _assert_official(processor, setting)


@pytest.fixture(scope="module")
def original(tmp_path_factory, clip):
    ckpt, _, _ = write_liuhaotian_checkpoint(tmp_path_factory.mktemp("orig") / "ckpt", tokenizer_model=TOKENIZER_MODEL)
    return load_model(ckpt, vision_tower=str(clip))


def test_stf_llava_checkpoint_saved_by_save_pretrained(tmp_path, original):
    model, processor = original
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "stf_llava"
    _, reloaded = load_model(tmp_path)
    _assert_official(reloaded, "legacy_false")


def _llava_hf_tokenizer_files(folder: Path) -> None:
    """llava-hf/llava-1.5-7b-hf's tokenizer files: tokenizer.json (with <image> 32000 and <pad> 32001),
    tokenizer.model, tokenizer_config.json with `legacy: false`."""
    from transformers import AutoTokenizer

    src = folder / "_src"
    src.mkdir()
    (src / "tokenizer.model").write_bytes(TOKENIZER_MODEL.read_bytes())
    (src / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "legacy": False}))
    tok = AutoTokenizer.from_pretrained(src)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tok.add_special_tokens({"pad_token": "<pad>"})
    assert tok.convert_tokens_to_ids(["<image>", "<pad>"]) == [32000, 32001]
    tok.save_pretrained(folder)
    (folder / "tokenizer.model").write_bytes(TOKENIZER_MODEL.read_bytes())
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "legacy": False}))


def test_transformers_format_checkpoint(tmp_path):
    """llava-hf/llava-1.5-7b-hf's layout: LlavaForConditionalGeneration, vocab 32064, `<image>` 32000."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(0)
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(**VISION), text_config=LlamaConfig(**{**TEXT, "vocab_size": 32064}),
                      image_token_index=32000, pad_token_id=32001)
    LlavaForConditionalGeneration(cfg).save_pretrained(tmp_path)
    _llava_hf_tokenizer_files(tmp_path)
    assert {"tokenizer.json", "tokenizer.model"} <= {p.name for p in tmp_path.iterdir()}
    _, processor = load_model(tmp_path)
    assert processor.image_token_id == 32000
    _assert_official(processor, "legacy_false")


def test_full_size_presets_on_meta_use_the_cached_vocabulary(tmp_path, monkeypatch):
    """`llava-1.5-7b` and `stf-7b` built on `meta` read the tokenizer of their hub repo from the local cache."""
    import huggingface_hub.constants

    files = {"llava-hf/llava-1.5-7b-hf": "", "visresearch/LLaVA-STF": "full-parameter-finetune"}
    for repo, sub in files.items():
        snapshot = tmp_path / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
        folder = snapshot / sub
        folder.mkdir(parents=True)
        if sub:  # the LLaVA-STF release: original-LLaVA layout, tokenizer.model only
            (folder / "tokenizer.model").write_bytes(TOKENIZER_MODEL.read_bytes())
            (folder / "tokenizer_config.json").write_text(json.dumps({
                "tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True,
                "bos_token": {**_ADDED, "content": "<s>"}, "eos_token": {**_ADDED, "content": "</s>"},
                "unk_token": {**_ADDED, "content": "<unk>"}}))
        else:
            _llava_hf_tokenizer_files(folder)
        (snapshot.parents[1] / "refs").mkdir()
        (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    for name in ("llava-1.5-7b", "stf-7b"):
        model, processor = load_model(name, random_weights=True, device="meta")
        assert processor.image_token_id == model.config.image_token_index == 32000
        _assert_official(processor, "legacy_false")


def test_a_cached_tokenizer_that_cannot_be_read_is_an_error_not_the_byte_level_stand_in(tmp_path, monkeypatch):
    """A corrupt `tokenizer.model` in the hub cache of a full-size preset is named, with the fix; it never falls
    back silently to the byte-level tokenizer (whose ids are not the model's)."""
    import huggingface_hub.constants

    from stf_bench.errors import StfBenchError

    repo = "visresearch/LLaVA-STF"
    snapshot = tmp_path / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    folder = snapshot / "full-parameter-finetune"
    folder.mkdir(parents=True)
    (folder / "tokenizer.model").write_bytes(TOKENIZER_MODEL.read_bytes()[:1000])  # truncated
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "legacy": False}))
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(StfBenchError, match=r"cached tokenizer of visresearch/LLaVA-STF.*hf download"):
        load_model("stf-7b", random_weights=True, device="meta")


def test_adapter_feeds_the_official_ids_on_every_path(tmp_path, clip, monkeypatch):
    """The lmms-eval adapter on an original-LLaVA checkpoint: the greedy batched path, `generate()` (sampling)
    and loglikelihood all give the model the official ids."""
    from lmms_eval.api.instance import Instance
    from PIL import Image

    import stf_bench.adapter.lmms_model as adapter_mod

    ckpt, _, _ = write_liuhaotian_checkpoint(tmp_path / "ckpt", tokenizer_model=TOKENIZER_MODEL,
                                             model_type="llava_llama")
    lm = adapter_mod.StfBenchLmms(pretrained=str(ckpt), device="cpu", dtype="float32", batch_size=3,
                                  vision_tower=str(clip))
    lm.show_progress = False
    proc = lm.processor
    cases = [c for c in CASES if c["name"] in ("gqa/0", "mmbench_cn_dev/0", "pope/5")]
    contexts = [_context(c["prompt"]) for c in cases]
    image = Image.new("RGB", (40, 30), (200, 30, 30))
    lm.task_dict = {"t": {"test": [{"image": image}] * 3}}

    def visual(doc):
        return [doc["image"]]

    fed: list[list[int]] = []

    def record(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:  # a prefill, not a decode step
            mask = kwargs.get("attention_mask")
            fed.extend(row[m.bool()].tolist() if mask is not None else row.tolist()
                       for row, m in zip(ids, mask if mask is not None else ids))

    lm.model.register_forward_pre_hook(record, with_kwargs=True)

    def requests(gen: dict) -> list:
        return [Instance("generate_until", (ctx, {"max_new_tokens": 2, **gen}, visual, i, "t", "test"), idx=0,
                         metadata={"task": "t", "doc_id": i, "repeats": 1}) for i, ctx in enumerate(contexts)]

    greedy: list = []
    real_greedy = adapter_mod.greedy_generate

    def recording_greedy(model, heads, tails, head_of_row, *args, **kwargs):
        greedy.extend(heads[h] + tail for h, tail in zip(head_of_row, tails))
        return real_greedy(model, heads, tails, head_of_row, *args, **kwargs)

    monkeypatch.setattr(adapter_mod, "greedy_generate", recording_greedy)
    lm.generate_until(requests({"temperature": 0}))
    n = proc.num_visual_tokens
    assert [_collapse(r, proc.image_token_id, n) for r in greedy] == [c["ids"]["legacy_false"] for c in cases]

    lm.generate_until(requests({"do_sample": True, "temperature": 1.0}))  # generate()'s left-padded batch
    assert sorted(_collapse(r, proc.image_token_id, n) for r in fed) == sorted(c["ids"]["legacy_false"] for c in cases)

    fed.clear()
    ll = [c for c in CASES if c["name"].startswith("loglikelihood/")]
    lm.loglikelihood([Instance("loglikelihood", (c["context"], c["continuation"], visual, 0, "t", "test"), idx=0,
                               metadata={"task": "t", "doc_id": 0, "repeats": 1}) for c in ll])
    assert sorted(_collapse(r, proc.image_token_id, n) for r in fed) == sorted(c["ids"]["legacy_false"] for c in ll)


def _context(prompt: str) -> str:
    """The task's text inside a full vicuna_v1 prompt (what lmms-eval hands the adapter)."""
    head, tail = vicuna_v1("\0", 1).split("\0")
    assert prompt.startswith(head) and prompt.endswith(tail)
    return prompt[len(head):-len(tail)]


@pytest.mark.parametrize(("legacy", "setting"), [(False, "legacy_false"), (True, "legacy_true")])
def test_slow_llama_tokenizer_alone_gives_the_official_ids(legacy, setting):
    from stf_bench.models.input_ids import SlowLlamaTokenizer, image_prompt_ids

    tok = SlowLlamaTokenizer(TOKENIZER_MODEL.read_bytes(), legacy=legacy)
    ours = [image_prompt_ids(c["prompt"], tok, tok.bos_token_id) for c in CASES]
    assert ours == [c["ids"][setting] for c in CASES]
    again = SlowLlamaTokenizer.from_settings(tok.model, json.loads(json.dumps(tok.settings())))  # as saved
    assert [again(c["prompt"]) for c in CASES[-30:]] == [tok(c["prompt"]) for c in CASES[-30:]]


def test_image_prompt_ids_without_bos_and_expansion():
    """`tokenizer_image_token`'s two branches: with a BOS-less tokenizer nothing is dropped; `expand_images` puts
    `num_visual_tokens` placeholders where each image was."""
    from stf_bench.models.input_ids import IMAGE_INDEX, expand_images, image_prompt_ids

    def encode(text):
        return [ord(ch) for ch in text]

    assert image_prompt_ids("ab<image>c<image>", encode, bos_token_id=None) == [97, 98, IMAGE_INDEX, 99, IMAGE_INDEX]
    assert image_prompt_ids("a<image>b", lambda t: [1, *encode(t)], bos_token_id=1) == [1, 97, IMAGE_INDEX, 98]
    assert expand_images([1, IMAGE_INDEX, 5, IMAGE_INDEX], 9, 3) == [1, 9, 9, 9, 5, 9, 9, 9]


def test_added_tokens_of_the_config_keep_their_ids(tmp_path):
    """llava-hf's `added_tokens_decoder` (`<pad>` 32001) typed in the text: one token with its id, as the slow
    tokenizer splits it out ([1, 263, 32001, 29890] is what transformers 4.37.2's slow LlamaTokenizer gave for this
    config, in the scratch environment of tests/data/llama/make_official_ids.py)."""
    from stf_bench.models.input_ids import SlowLlamaTokenizer

    _llava_hf_tokenizer_files(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"] = {"32001": {**_ADDED, "content": "<pad>", "special": True}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = SlowLlamaTokenizer.from_directory(tmp_path)
    assert tok is not None and not tok.legacy
    assert tok("a<pad>b") == [1, 263, 32001, 29890]
    assert SlowLlamaTokenizer.from_directory(tmp_path / "_src" / "missing") is None
