"""Training labels exactly as LLaVA-1.5 builds them (haotian-liu/LLaVA @ c121f04, `llava/train/train.py`):
`preprocess_multimodal`, `preprocess_plain` (stage 1) and `preprocess_v1` (stage 2), before image expansion.

Each row becomes `input_ids` with every image as one `IMAGE_INDEX` (-200) and `labels` with ignored positions as
`IGNORE` (-100). The rules (docs/training.md lists them with their sources):
- stage 1 (`plain`): the instruction is discarded; text = `<image>` + caption + `\\n`; BOS and image are masked.
- stage 2 (`v1`): `SYSTEM USER: q ASSISTANT: a</s>USER: ...`; a leading gpt turn is dropped; per round the
  instruction (`len(tok(round up to " ASSISTANT: ")) - 2` tokens, one less for rounds after the first when the
  tokenizer is not `legacy`) is masked and the answer with its `</s>` trained; when the counted length differs
  from the real one (and is below model_max_length) the WHOLE row is masked, as LLaVA's "tokenization mismatch"
  does; text-only rows are cut at model_max_length here, image rows later by the collator.
All tokenization goes through one `Tokenization.encode`: `tokenization(processor)` makes it from the model's
processor, i.e. stf_bench.models.input_ids' `image_prompt_ids` (LLaVA's `tokenizer_image_token`) on the slow
LlamaTokenizer where the checkpoint has `tokenizer.model`, the one path evaluation inputs take too. Checked against
LLaVA's own `preprocess()` output with the real Vicuna vocabulary (tests/train/test_labels.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stf_bench.models.conversation import IMAGE_TOKEN, SYSTEM
from stf_bench.models.input_ids import IMAGE_INDEX  # noqa: F401  (re-exported: one per image before expansion)

IGNORE = -100  # LLaVA's IGNORE_INDEX
ROLES = {"human": "USER", "gpt": "ASSISTANT"}
SEP, SEP2 = " ", "</s>"  # conv_vicuna_v1's separators
ANSWER_SEP = SEP + ROLES["gpt"] + ": "  # " ASSISTANT: ", where each round's instruction ends
PLAIN_SEP = "\n"  # conv_llava_plain's separator, appended to the caption


@dataclass(frozen=True)
class Tokenization:
    """What the label builder needs from a tokenizer.

    `encode(text)`: ids of `text` with BOS first and each `<image>` as one IMAGE_INDEX, as LLaVA's
    `tokenizer_image_token` returns them. `pad_id`: LLaVA pads with `unk` (id 0), and counts the non-pad ids as the
    row's real length. `legacy`: the tokenizer's `legacy` flag (Vicuna-1.5: False, which takes one token off every
    round after the first). `model_max_length`: where rows are cut (2048 in LLaVA-1.5's scripts)."""

    encode: Callable[[str], list[int]]
    pad_id: int
    legacy: bool
    model_max_length: int


def tokenization(processor, model_max_length: int = 2048) -> Tokenization:
    """The `Tokenization` of a model's processor: the official ids of stf_bench.models.input_ids, the same
    `processor.prompt_ids` (LLaVA's `tokenizer_image_token`, `image_prompt_ids`) that builds every evaluation input.

    With a checkpoint's `tokenizer.model` (Vicuna, the full-size presets) its chunks are tokenized by
    transformers 4.37.2's slow LlamaTokenizer (`SlowLlamaTokenizer`) with the config's `legacy` (Vicuna-1.5:
    False); the tiny presets' byte-level tokenizer has no such flag and is treated as `legacy` (it adds no dummy
    prefix, so no round loses a token). The pad id is `unk`'s (0): LLaVA sets `pad_token = unk_token`."""
    slow = processor.slow_tokenizer
    if slow is not None:
        legacy, pad = slow.legacy, slow.special_ids[slow.unk_token]
    else:
        tokenizer = processor.tokenizer
        legacy = bool(getattr(tokenizer, "legacy", True))
        pad = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.pad_token_id
    return Tokenization(encode=processor.prompt_ids, pad_id=pad, legacy=legacy, model_max_length=model_max_length)


@dataclass
class Example:
    """One row's ids and labels before image expansion; `masked`: the whole row was masked (a mismatch)."""

    id: str
    input_ids: list[int]
    labels: list[int]
    masked: bool = False

    def to_json(self) -> dict:
        """The `--dump-examples` line."""
        return {"id": self.id, "input_ids": self.input_ids, "labels": self.labels}


def multimodal_turns(turns: list[dict]) -> list[dict]:
    """LLaVA's `preprocess_multimodal` (image rows only): in a turn holding `<image>`, every tag is removed, the text
    stripped and one `<image>\\n` put in front (then stripped again, so a turn of only the tag is `<image>`)."""
    out = []
    for turn in turns:
        value = turn["value"]
        if IMAGE_TOKEN in value:
            value = (IMAGE_TOKEN + "\n" + value.replace(IMAGE_TOKEN, "").strip()).strip()
        out.append({**turn, "value": value})
    return out


def plain_example(row_id: str, turns: list[dict], tok: Tokenization) -> Example:
    """Stage 1 (`preprocess_plain`): `<image>` + caption + `\\n`; the instruction is discarded, BOS and image masked.
    `turns` are two (human with `<image>`, gpt); checked by stf_bench.train.data."""
    ids = tok.encode(IMAGE_TOKEN + turns[1]["value"] + PLAIN_SEP)
    n_masked = len(tok.encode(IMAGE_TOKEN))
    labels = [IGNORE] * min(n_masked, len(ids)) + ids[n_masked:]
    return Example(row_id, ids, labels)


def v1_prompt(turns: list[dict]) -> str:
    """conv_vicuna_v1's `get_prompt()` of the turns (a leading gpt turn dropped); an empty message ends with
    `ROLE:` and no separator, as LLaVA writes it."""
    if turns and turns[0]["from"] != "human":
        turns = turns[1:]
    text = SYSTEM + SEP
    for i, turn in enumerate(turns):
        role = ROLES[turn["from"]]
        text += f"{role}: {turn['value']}{(SEP, SEP2)[i % 2]}" if turn["value"] else f"{role}:"
    return text


def v1_example(row_id: str, turns: list[dict], tok: Tokenization, has_image: bool) -> Example:
    """Stage 2 (`preprocess_v1`): mask the system prompt and every `USER: ... ASSISTANT:`; train each answer and its
    `</s>`; mask the whole row when the counted length is not the real one."""
    prompt = v1_prompt(turns)
    ids = tok.encode(prompt)
    if not has_image:  # LLaVA tokenizes text-only rows with truncation=True at model_max_length
        ids = ids[:tok.model_max_length]
    labels = list(ids)
    total = sum(1 for i in ids if i != tok.pad_id)
    cur = 1
    _mask(labels, 0, cur)
    for i, part in enumerate(prompt.split(SEP2)):
        if part == "":
            break
        pieces = part.split(ANSWER_SEP)
        if len(pieces) != 2:
            break
        round_len = len(tok.encode(part))
        instruction_len = len(tok.encode(pieces[0] + ANSWER_SEP)) - 2
        if i != 0 and not tok.legacy:
            round_len -= 1
            instruction_len -= 1
        _mask(labels, cur, cur + instruction_len)
        cur += round_len
    _mask(labels, cur, len(labels))
    masked = cur < tok.model_max_length and cur != total
    if masked:
        labels = [IGNORE] * len(labels)
    return Example(row_id, ids, labels, masked)


def _mask(labels: list[int], start: int, stop: int) -> None:
    """labels[start:stop] = IGNORE, with a tensor slice's clipping (an empty or reversed range masks nothing)."""
    start, stop = max(start, 0), min(stop, len(labels))
    for i in range(start, stop):
        labels[i] = IGNORE


def build_example(row: dict, template: str, tok: Tokenization) -> Example:
    """The ids and labels of one checked LLaVA-format row for `template` (`plain`: stage 1, or `v1`)."""
    has_image = "image" in row
    turns = multimodal_turns(row["conversations"]) if has_image else list(row["conversations"])
    if template == "plain":
        return plain_example(str(row.get("id", "")), turns, tok)
    return v1_example(str(row.get("id", "")), turns, tok, has_image)
