"""vicuna_v1 wrapping and stop-string cutting."""

from stf_bench.eval.prompts import SYSTEM, cut_at_stop, vicuna_v1

OFFICIAL = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
            "detailed, and polite answers to the user's questions. USER: <image>\nWhat is it? ASSISTANT:")


def test_vicuna_v1_is_the_official_llava_conversation():
    assert vicuna_v1("What is it?") == OFFICIAL


def test_vicuna_v1_image_count():
    assert vicuna_v1("Q", n_images=0) == f"{SYSTEM} USER: Q ASSISTANT:"
    assert vicuna_v1("Q", n_images=2) == f"{SYSTEM} USER: <image>\n<image>\nQ ASSISTANT:"


def test_vicuna_v1_keeps_image_tags_the_task_placed():
    assert vicuna_v1("<image>\nCompare.") == f"{SYSTEM} USER: <image>\nCompare. ASSISTANT:"


def test_cut_at_earliest_stop_string():
    assert cut_at_stop("yes.\n\nUSER: more", ["USER:", "\n\n"]) == "yes."
    assert cut_at_stop("abcSTOPdefEND", ["END", "STOP"]) == "abc"
    assert cut_at_stop("no stop here", ["</s>"]) == "no stop here"


def test_empty_stop_string_is_ignored():
    assert cut_at_stop("answer", ["", "x"]) == "answer"
