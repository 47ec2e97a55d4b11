"""The vicuna_v1 conversation LLaVA-1.5 was trained and evaluated with: the model family's prompt format, applied
to every lmms-eval context (eval/adapter.py) and to the requests latency and prefill FLOPs are measured on (profile/).
No imports: the tokenizer and the CLIs read it before anything heavy loads."""

from __future__ import annotations

IMAGE_TOKEN = "<image>"
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
# Part of every answer-cache key: change it whenever the wrapping below, or how its text becomes input ids
# (stf_bench.models.input_ids), changes, so stale answers are not reused. 2: LLaVA's tokenizer_image_token ids.
TEMPLATE_ID = "vicuna_v1/2"
ASSISTANT = "ASSISTANT:"  # opens the assistant's turn: a prompt's question ends before it


def vicuna_v1(prompt: str, n_images: int = 1) -> str:
    """`SYSTEM USER: <image>\\n{prompt} ASSISTANT:` with one `<image>` per image (none when there is no image)."""
    if IMAGE_TOKEN in prompt:  # the task already placed its image tags
        user = prompt
    else:
        user = "".join(f"{IMAGE_TOKEN}\n" for _ in range(n_images)) + prompt
    return f"{SYSTEM} USER: {user} {ASSISTANT}"
