"""The vicuna_v1 conversation LLaVA-1.5 was trained and evaluated with: the model family's prompt format, applied
to every lmms-eval context (adapter/lmms_model.py) and to the requests latency and prefill FLOPs are measured on (profile/).
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

# The same conversation as a Jinja chat template, for tools that format prompts themselves: `export_llava_hf` writes
# it into the exported processor, so lmms-eval's `llava_hf` (chat mode: `processor.apply_chat_template`; simple mode:
# the tokenizer's) builds exactly `vicuna_v1(...)`. It follows LLaVA's `conv_vicuna_v1` (haotian-liu/LLaVA,
# llava/conversation.py): system prompt, then "ROLE: text" turns separated by " " after a user turn and "</s>" after
# an assistant turn, "ASSISTANT:" to prompt the answer. A system message replaces the default system prompt;
# content is a string or a list of {"type": "image"} / {"type": "text", "text": ...} parts (images first, one
# "<image>\n" each, as LLaVA places them).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}" + SYSTEM + " {% endif %}"
    "{% if message['role'] == 'user' %}USER: {% elif message['role'] == 'assistant' %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}" + IMAGE_TOKEN + "\n{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}</s>{% else %} {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
