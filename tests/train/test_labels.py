"""LLaVA's preprocess_plain / preprocess_v1 rules on adversarial rows, with the tiny presets' byte-level tokenizer.

Expected ids are written out by hand from the byte tokenizer's layout (BOS 1, </s> 2, <unk> 0, byte b -> b + 4,
image -200), so that they do not depend on the code under test."""

from __future__ import annotations

import pytest

from stf_bench.models.conversation import SYSTEM
from stf_bench.models.tokenizer import build_tiny_tokenizer
from stf_bench.train.labels import IGNORE, IMAGE_INDEX, Tokenization, build_example, stand_in_tokenization, v1_prompt


def b(text: str) -> list[int]:
    """The byte tokenizer's ids of `text` (no BOS)."""
    return [x + 4 for x in text.encode("utf-8")]


IMG = IMAGE_INDEX


@pytest.fixture(scope="module")
def tok() -> Tokenization:
    return stand_in_tokenization(build_tiny_tokenizer(), model_max_length=2048)


def row(*turns: tuple[str, str], image: bool = True, rid: str = "r") -> dict:
    out = {"id": rid, "conversations": [{"from": f, "value": v} for f, v in turns]}
    if image:
        out["image"] = "x.png"
    return out


def trained(labels: list[int]) -> list[int]:
    return [x for x in labels if x != IGNORE]


def test_stand_in_encodes_each_chunk_and_joins_them_with_one_image_index(tok):
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
