"""Input ids exactly as LLaVA-1.5's official code builds them: the one home of prompt -> ids for the model family.

LLaVA-1.5 (haotian-liu/LLaVA @ c121f04) builds every input, in evaluation and in training, with
`tokenizer_image_token(prompt, tokenizer)` (`llava/mm_utils.py`) and transformers 4.37.2's SLOW `LlamaTokenizer`:
the prompt is split at each `<image>`, each chunk is tokenized on its own (each with BOS and sentencepiece's dummy
prefix "▁"), the later chunks' BOS is dropped and the image stands between them as one position (-200). With
Vicuna's vocabulary that puts a lone "▁" (29871) on both sides of the image. Tokenizing the whole prompt with
`<image>` as a special token (what transformers 5 does for a checkpoint that has only `tokenizer.model`) loses the
"▁" after the image, orders merges differently ("A.  yes") and drops a leading space (docs/protocols.md,
"Input ids").

- `SlowLlamaTokenizer`: transformers 4.37.2's slow `LlamaTokenizer(text).input_ids` on sentencepiece alone (merges
  by score, dummy prefix, `legacy` as the checkpoint's tokenizer_config.json says, `</s>` etc. in the text split
  out as the special tokens they are). Used whenever the checkpoint carries `tokenizer.model`.
- `image_prompt_ids`: `tokenizer_image_token` itself, each image one `IMAGE_INDEX` position; training (labels)
  and evaluation share it.
- `expand_images`: each image position -> the model's `num_visual_tokens` placeholder ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

IMAGE_INDEX = -200  # LLaVA's IMAGE_TOKEN_INDEX (llava/constants.py): one image, before expansion
SPIECE_UNDERLINE = "\u2581"
TOKENIZER_MODEL = "tokenizer.model"


class SlowLlamaTokenizer:
    """`tokenizer(text).input_ids` of transformers 4.37.2's slow `LlamaTokenizer` for one sentencepiece model.

    `legacy` (4.37.2's default when the checkpoint's config does not say: True): the dummy "▁" is added to every
    piece of text, also after a special token; with `legacy=False` only at the start of the text, sentencepiece
    runs without its own dummy prefix and a typed "▁" counts as a space. `specials`: the strings the slow tokenizer
    splits out of the text as single tokens (bos, eos, unk, pad); `added`: the config's added tokens and their ids
    (`added_tokens_decoder`, e.g. llava-hf's `<pad>` 32001), split out too."""

    def __init__(self, model: bytes, *, legacy: bool = True, add_bos: bool = True, add_eos: bool = False,
                 bos_token: str = "<s>", eos_token: str = "</s>", unk_token: str = "<unk>",
                 specials: tuple[str, ...] = (), added: dict[str, int] | None = None) -> None:
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2

        self.model, self.legacy, self.add_bos, self.add_eos = model, legacy, add_bos, add_eos
        self.bos_token, self.eos_token, self.unk_token = bos_token, eos_token, unk_token
        if not legacy:  # 4.37.2's get_spm_processor: the model without its dummy prefix
            proto = sentencepiece_model_pb2.ModelProto.FromString(model)
            proto.normalizer_spec.add_dummy_prefix = False
            model = proto.SerializeToString()
        self.sp = spm.SentencePieceProcessor()
        self.sp.LoadFromSerializedProto(model)
        self.special_ids = {t: self.sp.piece_to_id(t) for t in dict.fromkeys((bos_token, eos_token, unk_token,
                                                                             *specials)) if t}
        self.added = dict(added or {})
        self.special_ids.update(self.added)
        pattern = "|".join(re.escape(t) for t in sorted(self.special_ids, key=len, reverse=True))
        self._split = re.compile(f"({pattern})")
        self._unk_length = len(self.sp.encode(unk_token))

    @classmethod
    def from_directory(cls, directory: str | Path) -> SlowLlamaTokenizer | None:
        """The checkpoint's slow tokenizer: `tokenizer.model` with its tokenizer_config.json (legacy, add_bos/eos,
        special tokens) and special_tokens_map.json; None where there is no `tokenizer.model`."""
        directory = Path(directory)
        if not (directory / TOKENIZER_MODEL).is_file():
            return None
        config = _read_json(directory / "tokenizer_config.json")
        tokens = {**_read_json(directory / "special_tokens_map.json"), **config}
        names = {k: _content(tokens.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        added = {_content(t): int(i) for i, t in (config.get("added_tokens_decoder") or {}).items() if _content(t)}
        extra = [_content(t) for t in tokens.get("additional_special_tokens") or []]
        legacy = config.get("legacy")
        return cls((directory / TOKENIZER_MODEL).read_bytes(), legacy=True if legacy is None else bool(legacy),
                   add_bos=bool(config.get("add_bos_token", True)), add_eos=bool(config.get("add_eos_token", False)),
                   bos_token=names["bos_token"] or "<s>", eos_token=names["eos_token"] or "</s>",
                   unk_token=names["unk_token"] or "<unk>",
                   specials=tuple(t for t in [names["pad_token"], *extra] if t and t not in added), added=added)

    @property
    def bos_token_id(self) -> int:
        return self.special_ids[self.bos_token]

    def settings(self) -> dict:
        """What `from_settings` needs beside the model bytes (stored in an stf_llava checkpoint)."""
        return {"legacy": self.legacy, "add_bos": self.add_bos, "add_eos": self.add_eos, "bos_token": self.bos_token,
                "eos_token": self.eos_token, "unk_token": self.unk_token,
                "specials": [t for t in self.special_ids
                             if t not in (self.bos_token, self.eos_token, self.unk_token) and t not in self.added],
                "added": self.added}

    @classmethod
    def from_settings(cls, model: bytes, settings: dict) -> SlowLlamaTokenizer:
        """Inverse of `settings`."""
        return cls(model, **{**settings, "specials": tuple(settings.get("specials", ()))})  # JSON: lists

    def __call__(self, text: str) -> list[int]:
        """The ids `LlamaTokenizer(text).input_ids` gives (BOS first unless the config turns it off)."""
        ids = [self.special_ids[t] if t in self.special_ids else self.sp.piece_to_id(t) for t in self.tokenize(text)]
        return [self.bos_token_id] * self.add_bos + ids + [self.special_ids[self.eos_token]] * self.add_eos

    def tokenize(self, text: str) -> list[str]:
        """Pieces, special tokens split out of the text (4.37.2's `LlamaTokenizer.tokenize`)."""
        if self.legacy or not text:
            return self._pieces(text)
        tokens = self._pieces(SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " "))
        if len(tokens) > 1 and tokens[0] == SPIECE_UNDERLINE and tokens[1] in self.special_ids:
            tokens = tokens[1:]
        return tokens

    def _pieces(self, text: str) -> list[str]:
        """`PreTrainedTokenizer.tokenize`: special tokens (no stripping around them) and sentencepiece between."""
        out: list[str] = []
        for part in self._split.split(text):
            if part in self.special_ids:
                out.append(part)
            elif part:
                out.extend(self._sp_pieces(part))
        return out

    def _sp_pieces(self, text: str) -> list[str]:
        pieces = self.sp.encode(text, out_type=str)
        if self.legacy or not text.startswith((SPIECE_UNDERLINE, " ")):
            return pieces
        pieces = self.sp.encode(self.unk_token + text, out_type=str)  # keeps the leading "▁" sentencepiece drops
        return pieces[self._unk_length:] if len(pieces) >= self._unk_length else pieces


def image_prompt_ids(prompt: str, encode: Callable[[str], list[int]], bos_token_id: int | None,
                     image_token: str = "<image>", image_index: int = IMAGE_INDEX) -> list[int]:
    """LLaVA's `tokenizer_image_token`: `prompt` split at each `image_token`, each chunk encoded on its own
    (`encode(chunk)`: BOS included, as `tokenizer(chunk).input_ids`), the later chunks' BOS dropped, one
    `image_index` per image between them."""
    chunks = [encode(chunk) for chunk in prompt.split(image_token)]
    offset = 1 if chunks and chunks[0] and chunks[0][0] == bos_token_id else 0
    ids = chunks[0][:offset]
    for i, chunk in enumerate(chunks):
        if i:
            ids.append(image_index)
        ids.extend(chunk[offset:])
    return ids


def expand_images(ids: list[int], image_token_id: int, num_visual_tokens: int,
                  image_index: int = IMAGE_INDEX) -> list[int]:
    """Each image position -> `num_visual_tokens` copies of the model's image placeholder id."""
    return [t for i in ids for t in ([image_token_id] * num_visual_tokens if i == image_index else [i])]


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _content(token: object) -> str | None:
    """A special token as tokenizer configs write it: a string or an AddedToken dict."""
    if isinstance(token, dict):
        return token.get("content")
    return token if isinstance(token, str) else None
