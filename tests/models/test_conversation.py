"""vicuna_v1 wrapping."""

from stf_bench.models.conversation import SYSTEM, vicuna_v1

OFFICIAL = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
            "detailed, and polite answers to the user's questions. USER: <image>\nWhat is it? ASSISTANT:")


def test_vicuna_v1_is_the_official_llava_conversation():
    assert vicuna_v1("What is it?") == OFFICIAL


def test_vicuna_v1_image_count():
    assert vicuna_v1("Q", n_images=0) == f"{SYSTEM} USER: Q ASSISTANT:"
    assert vicuna_v1("Q", n_images=2) == f"{SYSTEM} USER: <image>\n<image>\nQ ASSISTANT:"


def test_vicuna_v1_keeps_image_tags_the_task_placed():
    assert vicuna_v1("<image>\nCompare.") == f"{SYSTEM} USER: <image>\nCompare. ASSISTANT:"
