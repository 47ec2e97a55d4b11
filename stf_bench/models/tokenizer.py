"""A tokenizer built locally, with no download, for the tiny presets: byte-level, 256 byte tokens + specials.

Any text (Chinese included) encodes losslessly as UTF-8 bytes; `<image>` is one special token, as in llava-hf.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from stf_bench.models.conversation import IMAGE_TOKEN

SPECIALS = ("<unk>", "<s>", "</s>", "<pad>")


def build_tiny_tokenizer(image_token_id: int | None = None) -> PreTrainedTokenizerFast:
    """Byte-level tokenizer: ids 0-3 are <unk> <s> </s> <pad>, 4-259 the bytes, 260 is <image>; vocab 261.

    `image_token_id`: give `<image>` that id instead of 260 (the stand-in for a full-size preset's tokenizer, whose
    config puts the image token at `image_token_index` = the LLM's vocab size, e.g. 32000)."""
    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet(), key=lambda ch: _byte_of(ch))
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab.update({ch: len(SPECIALS) + i for i, ch in enumerate(byte_chars)})
    if image_token_id is not None:
        if image_token_id < len(vocab):
            raise ValueError(f"image_token_id {image_token_id} collides with the byte tokens (ids < {len(vocab)})")
        vocab[IMAGE_TOKEN] = image_token_id
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    if image_token_id is not None:
        core.add_special_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        model_max_length=4096, padding_side="left",
    )
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tok.add_bos_token = True
    return tok


def _byte_of(ch: str) -> int:
    """The byte a ByteLevel alphabet character stands for (GPT-2's bytes_to_unicode, inverted)."""
    code = ord(ch)
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    if code in printable:
        return code
    others = [b for b in range(256) if b not in printable]
    return others[code - 256]
