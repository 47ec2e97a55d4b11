"""lmms-eval style `k=v,k=v` model arguments, parsed without importing torch (the store and CLI use it too)."""

from __future__ import annotations

import os
from typing import Any

from stf_bench.errors import StfBenchError

METHOD_ARG_PREFIX = "method."  # `method.r=0.5`: an argument of the training-free method, in the model arguments
TRUE_WORDS = ("true", "1", "yes")  # a boolean argument given as text, in any case (lmms-eval passes strings)
FALSE_WORDS = ("false", "0", "no")


def parse_bool(value: bool | str) -> bool:
    """A boolean argument: a bool, or one of 'true'/'1'/'yes', 'false'/'0'/'no' in any case (lmms-eval and the
    method arguments pass strings); anything else raises ValueError, which the caller turns into a message naming
    the argument."""
    if isinstance(value, str):
        if value.lower() not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(f"{value!r} is not true or false")
        return value.lower() in TRUE_WORDS
    return bool(value)


def env_flag(name: str) -> bool:
    """Whether environment variable `name` is switched on ('1', 'true', 'yes' or 'on', as huggingface_hub reads
    HF_HUB_OFFLINE); unset or anything else is off."""
    return os.environ.get(name, "0").lower() in (*TRUE_WORDS, "on")


def parse_value(value: str) -> Any:
    """'4' -> 4, '0.5' -> 0.5, 'true' -> True, 'none' -> None, anything else stays a string."""
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def parse_model_args(text: str | dict | None, *, strict: bool = True) -> dict:
    """`k=4,e=8,mbtf_blocks=16` -> {"k": 4, "e": 8, "mbtf_blocks": 16}; a dict passes through.

    strict: a part without `=` is an error (user input); otherwise it is kept under "_positional" (foreign files).
    """
    if isinstance(text, dict):
        return dict(text)
    out: dict = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            if strict:
                raise StfBenchError(f"model argument {part!r} is not of the form key=value (e.g. k=4,e=8)")
            out.setdefault("_positional", []).append(part)
            continue
        out[key.strip()] = parse_value(value.strip())
    return out
