"""The visual-token cache itself: LRU order, the byte bound, and the `visual_cache` model argument in MiB."""

from __future__ import annotations

import pytest
import torch

from stf_bench.adapter import visual_cache as visual_cache_mod
from stf_bench.adapter.visual_cache import VisualTokenCache, visual_cache_bytes
from stf_bench.errors import StfBenchError


def test_lru_evicts_the_least_recently_used_and_skips_oversized():
    cache = VisualTokenCache(3 * 16)  # three float32 (2, 2) entries
    for key in "abc":
        cache.put(key, torch.zeros(2, 2))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", torch.zeros(2, 2))
    assert list(cache.entries) == ["c", "a", "d"] and cache.bytes == 48
    cache.put("huge", torch.zeros(4, 4))
    assert "huge" not in cache.entries and len(cache) == 3
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0


def test_visual_cache_model_arg(monkeypatch):
    cpu = torch.device("cpu")
    assert visual_cache_bytes("0", cpu) == 0
    assert visual_cache_bytes("1.5", cpu) == int(1.5 * 1024**2)
    for bad in ("-1", "lots", "nan"):
        with pytest.raises(StfBenchError, match="visual_cache is a size in MiB"):
            visual_cache_bytes(bad, cpu)
    monkeypatch.setattr(visual_cache_mod, "available_memory", lambda device: 400 * 1024**2)
    assert visual_cache_bytes(None, cpu) == 100 * 1024**2, "the default takes at most a quarter of free memory"
    monkeypatch.setattr(visual_cache_mod, "available_memory", lambda device: None)
    assert visual_cache_bytes(None, cpu) == visual_cache_mod.DEFAULT_VISUAL_CACHE_MIB * 1024**2
