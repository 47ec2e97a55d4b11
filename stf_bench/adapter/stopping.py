"""When a generated row stops: at its own `max_new_tokens` or once its text holds one of its `until` strings,
checked while decoding (not only cut afterwards), on both the greedy path and `generate()`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import StoppingCriteria

from stf_bench.errors import StfBenchError

DEFAULT_MAX_NEW_TOKENS = 128


def max_new_tokens(gen: dict) -> int:
    """The request's own token limit (lmms-eval gen_kwargs), 128 when the task sets none."""
    return int(gen.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))


def until_strings(gen: dict) -> list[str]:
    """The request's stop strings: gen_kwargs 'until' as a list (a lone string is one stop string)."""
    until = gen.get("until", [])
    if isinstance(until, str):
        return [until]
    if not isinstance(until, (list, tuple)):
        raise StfBenchError(f"gen_kwargs 'until' must be a string or a list of strings, not {type(until).__name__}")
    return list(until)


class RowStops(StoppingCriteria):
    """Per-row stop for `generate()`: a row is done at its own max_new_tokens or once its text holds one of its
    stop strings."""

    def __init__(self, tokenizer, prompt_len: int, max_new: list[int], until: list[list[str]]):
        self.tokenizer, self.prompt_len, self.max_new = tokenizer, prompt_len, max_new
        self.until = [[s for s in u if s] for u in until]

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_len:]
        done = []
        for row, ids in enumerate(new):
            if ids.shape[0] >= self.max_new[row]:
                done.append(True)
            elif self.until[row]:
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                done.append(any(s in text for s in self.until[row]))
            else:
                done.append(False)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class GreedyStops:
    """The stop test of the greedy path (`greedy_generate`'s `stop`) for one tokenizer; it keeps each token's own
    text across batches, so that rows whose newest token cannot complete a stop string are not decoded at all."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._token_text: dict[int, str] = {}

    def may_end(self, token: int, last_chars: set[str]) -> bool:
        """Whether `token` may be the one that completes a stop string ending in one of `last_chars`: its own text
        holds such a character, or its text alone says too little (empty: special or part of a character; U+FFFD:
        a partial UTF-8 sequence; a whitespace end character, which tokenizers drop or merge at the edges)."""
        text = self._token_text.get(token)
        if text is None:
            text = self._token_text[token] = self.tokenizer.decode([token], skip_special_tokens=True)
        return (not text or "\ufffd" in text or any(c.isspace() or c in text for c in last_chars))

    def check(self, until: list[list[str]]) -> Callable[[list[int], list[list[int]]], list[bool]]:
        """`stop(rows, new_ids)` for one batch whose row i stops at any of `until[i]`."""
        # A stop string first appears with the newest token, so it lies in the last few tokens: decode only those
        # (a token is at least one byte of text; 4 bytes per character at most, plus a margin). And its last
        # character is the newest token's: rows whose newest token cannot supply one are not decoded at all.
        window = [4 * max((len(s) for s in u), default=0) + 8 for u in until]
        ends = [{s[-1] for s in u} for u in until]

        def stop(rows: list[int], new: list[list[int]]) -> list[bool]:
            checked = [i for i, row in enumerate(rows) if until[row] and self.may_end(new[i][-1], ends[row])]
            ended = [False] * len(rows)
            recent = [new[i][-window[rows[i]]:] for i in checked]
            texts = self.tokenizer.batch_decode(recent, skip_special_tokens=True) if checked else []
            for i, text in zip(checked, texts):
                ended[i] = any(s in text for s in until[rows[i]])
            return ended

        return stop


def cut_at_stop(text: str, until: list[str] | tuple[str, ...]) -> str:
    """Cut `text` at the earliest occurrence of any non-empty stop string (lm-eval's `until` rule)."""
    cut = len(text)
    for stop in until:
        if stop:
            pos = text.find(stop)
            if pos != -1:
                cut = min(cut, pos)
    return text[:cut]
