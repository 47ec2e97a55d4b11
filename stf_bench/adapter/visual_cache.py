"""Visual tokens computed once per distinct image: benchmarks ask many questions about the same image, and the
vision tower + projector output depends only on the preprocessed pixels. An LRU bounded in bytes (`visual_cache`
model arg, MiB, 0 = off), keyed by the pixels and the processor settings that change them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
from PIL import Image

from stf_bench.devices import available_memory
from stf_bench.errors import StfBenchError

DEFAULT_VISUAL_CACHE_MIB = 2048  # ~450 LLaVA-1.5-7B images in fp16 (576 x 4096 x 2 bytes each), ~1800 at 144 tokens


class VisualTokenCache:
    """LRU of visual tokens (N, H) by image key, bounded in bytes, so a repeated image skips tower and projector."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = 0  # images served without running the vision tower (cached or repeated within a batch)
        self.misses = 0  # images the vision tower ran on

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> torch.Tensor | None:
        """The cached tokens for `key` (now the most recently used), or None."""
        tokens = self.entries.get(key)
        if tokens is not None:
            self.entries.move_to_end(key)
        return tokens

    def put(self, key: str, tokens: torch.Tensor) -> None:
        """Store `tokens`, evicting least recently used entries until the byte bound holds; too big: not stored."""
        size = tokens.numel() * tokens.element_size()
        if key in self.entries or size > self.max_bytes:
            return
        while self.bytes + size > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()
        self.entries[key] = tokens
        self.bytes += size

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        self.entries.clear()
        self.bytes = 0


def visual_cache_bytes(visual_cache: float | str | None, device: torch.device) -> int:
    """Byte bound from the `visual_cache` model arg in MiB; None: 2 GiB, at most a quarter of the free memory."""
    if visual_cache is None:
        free = available_memory(device)
        limit = DEFAULT_VISUAL_CACHE_MIB * 1024**2
        return limit if free is None else min(limit, free // 4)
    try:
        mib = float(visual_cache)
    except (TypeError, ValueError):
        mib = -1.0
    if not mib >= 0:
        raise StfBenchError(f"visual_cache is a size in MiB (0 = off), not {visual_cache!r}")
    return int(mib * 1024**2)


def image_key(image: Image.Image, settings: bytes) -> str:
    """sha1 of the pixels, size and mode plus the processor settings that change pixel_values."""
    h = hashlib.sha1(settings)
    h.update(f"{image.mode}{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()
