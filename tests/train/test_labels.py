"""LLaVA's preprocess_plain / preprocess_v1 rules on adversarial rows: with the tiny presets' byte-level tokenizer,
and with the real Vicuna vocabulary against LLaVA's own `preprocess()` output.

Byte-level: expected ids are written out by hand from the byte tokenizer's layout (BOS 1, </s> 2, <unk> 0, byte
b -> b + 4, image -200), so that they do not depend on the code under test. Vicuna: the expected JSONL in
tests/data/train was made once by LLaVA's own code (make_official_labels.py there says how)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from stf_bench.models import load_model
from stf_bench.models.conversation import SYSTEM
from stf_bench.train.labels import IGNORE, IMAGE_INDEX, Tokenization, build_example, tokenization, v1_prompt


def b(text: str) -> list[int]:
    """The byte tokenizer's ids of `text` (no BOS)."""
    return [x + 4 for x in text.encode("utf-8")]


IMG = IMAGE_INDEX


@pytest.fixture(scope="module")
def tok() -> Tokenization:
    """The tiny preset's: its processor's `prompt_ids` on the byte-level tokenizer (no `tokenizer.model`)."""
    return tokenization(load_model("stf-tiny", device="meta")[1], model_max_length=2048)


def row(*turns: tuple[str, str], image: bool = True, rid: str = "r") -> dict:
    out = {"id": rid, "conversations": [{"from": f, "value": v} for f, v in turns]}
    if image:
        out["image"] = "x.png"
    return out


def trained(labels: list[int]) -> list[int]:
    return [x for x in labels if x != IGNORE]


def test_tiny_preset_encodes_each_chunk_and_joins_them_with_one_image_index(tok):
    assert tok.encode("ab") == [1, *b("ab")]
    assert tok.encode("<image>") == [1, IMG]
    assert tok.encode("a<image>b") == [1, *b("a"), IMG, *b("b")]
    assert tok.encode("<image>\n<image>") == [1, IMG, *b("\n"), IMG]
    assert tok.pad_id == 0 and tok.legacy is True


def test_plain_discards_the_instruction_and_trains_caption_and_newline(tok):
    ex = build_example(row(("human", "Describe it.\n<image>"), ("gpt", "A red circle.")), "plain", tok)
    assert ex.input_ids == [1, IMG, *b("A red circle.\n")]
    assert ex.labels == [IGNORE, IGNORE, *b("A red circle.\n")]
    assert not ex.masked


def test_v1_single_turn_masks_system_and_question_and_trains_answer_and_eos(tok):
    ex = build_example(row(("human", "<image>\nWhat?"), ("gpt", "red")), "v1", tok)
    head = [1, *b(SYSTEM + " USER: "), IMG, *b("\nWhat? ASSISTANT:")]
    assert ex.input_ids == head + b(" red") + [2]
    # instruction_len = len(tok(round up to " ASSISTANT: ")) - 2: the byte tokenizer keeps the last space as its own
    # token, so the answer's leading space is trained, as LLaVA's rule gives for such a tokenizer
    assert ex.labels == [IGNORE] * len(head) + b(" red") + [2]


def test_image_tag_at_the_end_of_a_turn_moves_to_its_front(tok):
    moved = build_example(row(("human", "What? <image>"), ("gpt", "red")), "v1", tok)
    front = build_example(row(("human", "<image>\nWhat?"), ("gpt", "red")), "v1", tok)
    assert moved.input_ids == front.input_ids and moved.labels == front.labels


def test_multi_turn_trains_every_answer_and_no_question(tok):
    ex = build_example(row(("human", "<image>\nq1"), ("gpt", "a1"), ("human", "q2"), ("gpt", "a2")), "v1", tok)
    assert trained(ex.labels) == b(" a1") + [2] + b(" a2") + [2]
    assert ex.input_ids.count(IMG) == 1 and not ex.masked


def test_text_only_row_has_no_image_and_the_same_masking(tok):
    ex = build_example(row(("human", "How many sides?"), ("gpt", "3"), image=False), "v1", tok)
    assert IMG not in ex.input_ids
    assert trained(ex.labels) == b(" 3") + [2]


def test_a_leading_gpt_turn_is_dropped(tok):
    with_gpt = build_example(row(("gpt", "hello"), ("human", "<image>\nq"), ("gpt", "a")), "v1", tok)
    without = build_example(row(("human", "<image>\nq"), ("gpt", "a")), "v1", tok)
    assert with_gpt.input_ids == without.input_ids and with_gpt.labels == without.labels


def test_empty_answer_is_written_without_separator_and_masks_the_row(tok):
    r = row(("human", "<image>\nq"), ("gpt", ""))
    assert v1_prompt(r["conversations"]).endswith("USER: <image>\nq ASSISTANT:")
    ex = build_example(r, "v1", tok)
    assert ex.masked and trained(ex.labels) == []


@pytest.mark.parametrize("turns", [
    (("human", "<image>\nq"), ("gpt", "a</s>b")),  # </s> inside an answer
    (("human", "<image>\nsay ASSISTANT: now"), ("gpt", "a")),  # the separator inside a question
    (("human", "<image>\nq <unk>"), ("gpt", "a")),  # a literal <unk>: id 0, the pad id, is not counted
    (("human", "<image>\nq"), ("gpt", "a"), ("human", "q2")),  # ends on a human turn
])
def test_tokenization_mismatch_masks_the_whole_row(tok, turns):
    ex = build_example(row(*turns), "v1", tok)
    assert ex.masked
    assert ex.labels == [IGNORE] * len(ex.input_ids)


def test_non_legacy_tokenizer_takes_one_token_off_later_rounds(tok):
    """With `legacy=False` (Vicuna-1.5) each round after the first counts one token less: right for sentencepiece,
    one short for a byte tokenizer, whose multi-turn rows then mismatch while single-turn rows do not."""
    strict = Tokenization(tok.encode, tok.pad_id, legacy=False, model_max_length=2048)
    single = build_example(row(("human", "<image>\nq"), ("gpt", "a")), "v1", strict)
    multi = build_example(row(("human", "<image>\nq"), ("gpt", "a"), ("human", "q2"), ("gpt", "b")), "v1", strict)
    assert not single.masked and multi.masked


def test_chinese_is_trained_byte_for_byte(tok):
    ex = build_example(row(("human", "<image>\n图中是什么颜色？"), ("gpt", "红色")), "v1", tok)
    assert trained(ex.labels) == b(" 红色") + [2]


def test_long_text_only_row_is_cut_at_model_max_length_and_not_masked(tok):
    short = Tokenization(tok.encode, tok.pad_id, tok.legacy, model_max_length=40)
    ex = build_example(row(("human", "q"), ("gpt", "a" * 300), image=False), "v1", short)
    assert len(ex.input_ids) == 40  # LLaVA tokenizes text-only rows with truncation
    assert not ex.masked and trained(ex.labels) == []  # the answer starts after the cut


def test_long_image_row_is_not_cut_here(tok):
    short = Tokenization(tok.encode, tok.pad_id, tok.legacy, model_max_length=40)
    ex = build_example(row(("human", "<image>\nq"), ("gpt", "a" * 300)), "v1", short)
    assert len(ex.input_ids) > 300  # the collator cuts image rows
    assert not ex.masked and trained(ex.labels) == b(" " + "a" * 300) + [2]


# ----------------------------------------------------------------------------------------------------------------
# LLaVA's own preprocess() output on the real Vicuna vocabulary (tests/data/train, made by make_official_labels.py)

OFFICIAL = Path(__file__).resolve().parents[1] / "data" / "train"
sys.path.insert(0, str(OFFICIAL))
from make_official_labels import SETS, VICUNA_SPECIAL_TOKENS, VICUNA_TOKENIZER_CONFIG  # noqa: E402


@pytest.fixture(scope="module")
def vicuna_hub_cache(tmp_path_factory) -> Path:
    """A hub cache holding stf-7b's tokenizer (visresearch/LLaVA-STF/full-parameter-finetune): the real LLaMA/Vicuna
    `tokenizer.model` with Vicuna-1.5's tokenizer config (`legacy: false`), as LLaVA-STF's release ships it."""
    root = tmp_path_factory.mktemp("hub")
    snapshot = root / "models--visresearch--LLaVA-STF" / "snapshots" / ("0" * 40)
    folder = snapshot / "full-parameter-finetune"
    folder.mkdir(parents=True)
    (folder / "tokenizer.model").write_bytes((OFFICIAL.parent / "llama" / "tokenizer.model").read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps(VICUNA_TOKENIZER_CONFIG))
    (folder / "special_tokens_map.json").write_text(json.dumps(VICUNA_SPECIAL_TOKENS))
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    return root


@pytest.mark.parametrize("name", list(SETS))
def test_dump_examples_equals_llavas_own_preprocess_row_for_row(name, vicuna_hub_cache, tmp_path, monkeypatch,
                                                                 capsys):
    """`stf-bench train --dump-examples` with stf-7b's real vocabulary on adversarial rows and training-sample rows
    (multi-turn, text-only, `<image>` at the end of a turn, `</s>` in an answer, empty answers, a first gpt turn,
    Chinese, rows past model_max_length) gives LLaVA's `preprocess()` ids and labels exactly, masked rows included."""
    import huggingface_hub.constants

    from stf_bench.cli import main

    stage, max_length = SETS[name]
    rows_file = OFFICIAL / f"rows_{name}.json"
    images = tmp_path / "images"
    images.mkdir()
    for r in json.loads(rows_file.read_text()):
        if "image" in r:
            (images / r["image"]).write_bytes(b"")  # --dump-examples checks that the file is there, never opens it
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(vicuna_hub_cache))
    dump = tmp_path / "rows.jsonl"
    assert main(["train", "--stage", stage, "--model", "stf-7b", "--random-weights", "--data-path", str(rows_file),
                 "--image-folder", str(images), "--model-max-length", str(max_length),
                 "--dump-examples", str(dump)]) == 0
    assert "slow LlamaTokenizer on the checkpoint's tokenizer.model (legacy=False)" in capsys.readouterr().out
    ours = [json.loads(line) for line in dump.read_text().splitlines()]
    official = [json.loads(line) for line in (OFFICIAL / f"official_{name}.jsonl").read_text().splitlines()]
    assert [r["id"] for r in ours] == [r["id"] for r in official]
    for mine, theirs in zip(ours, official):
        assert mine == theirs, mine["id"]
