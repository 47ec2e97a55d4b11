"""The vicuna_v1 conversation LLaVA-1.5 was trained and evaluated with, applied to every lmms-eval context."""

from __future__ import annotations

IMAGE_TOKEN = "<image>"
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
# Part of every answer-cache key: change it whenever the wrapping below changes, so stale answers are not reused.
TEMPLATE_ID = "vicuna_v1/1"


def vicuna_v1(prompt: str, n_images: int = 1) -> str:
    """`SYSTEM USER: <image>\\n{prompt} ASSISTANT:` with one `<image>` per image (none when there is no image)."""
    if IMAGE_TOKEN in prompt:  # the task already placed its image tags
        user = prompt
    else:
        user = "".join(f"{IMAGE_TOKEN}\n" for _ in range(n_images)) + prompt
    return f"{SYSTEM} USER: {user} ASSISTANT:"


def cut_at_stop(text: str, until: list[str] | tuple[str, ...]) -> str:
    """Cut `text` at the earliest occurrence of any non-empty stop string (lm-eval's `until` rule)."""
    cut = len(text)
    for stop in until:
        if stop:
            pos = text.find(stop)
            if pos != -1:
                cut = min(cut, pos)
    return text[:cut]
