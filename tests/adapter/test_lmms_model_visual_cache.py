"""Visual tokens computed once per distinct image: same answers as without the cache, fewer tower runs, bounded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from lmms_eval.api.instance import Instance
from PIL import Image

from stf_bench.adapter.lmms_model import StfBenchLmms
from stf_bench.adapter.visual_cache import VisualTokenCache

COLOURS = [(200, 40, 40), (30, 160, 60), (40, 60, 210), (220, 200, 30)]
# images A B A C | B D A C: with batch size 4, A repeats inside batch 1 and B, A, C repeat across batches
PATTERN = [0, 1, 0, 2, 1, 3, 0, 2]


@pytest.fixture(scope="module", params=["stf-tiny", "llava-tiny"])
def lm(request) -> StfBenchLmms:
    model = StfBenchLmms(preset=request.param, device="cpu", dtype="float32", batch_size=4)
    model.show_progress = False
    # same size, different pixels: a key that ignored the pixels would mix them up; non-square: padding matters
    docs = [{"image": Image.new("RGB", (48, 30), COLOURS[c]), "question": f"What is shown in picture {i}?"}
            for i, c in enumerate(PATTERN)]
    model.task_dict = {"shapes": {"test": docs}}
    return model


def _copy_visual(doc: dict) -> list[Image.Image]:
    """A fresh PIL object per access, as `datasets` decodes: the key must depend on the pixels, not the object."""
    return [doc["image"].copy()]


def _requests(lm: StfBenchLmms, doc_ids: list[int]) -> list[Instance]:
    out = []
    for doc_id in doc_ids:
        ctx = lm.task_dict["shapes"]["test"][doc_id]["question"]
        gen = {"until": ["ASSISTANT:"], "max_new_tokens": 6, "temperature": 0}
        out.append(Instance("generate_until", (ctx, gen, _copy_visual, doc_id, "shapes", "test"), idx=0,
                            metadata={"task": "shapes", "doc_id": doc_id, "repeats": 1}))
    return out


def _loglikelihood_requests(doc_ids: list[int]) -> list[Instance]:
    return [Instance("loglikelihood", ("What is shown?", " a red box", _copy_visual, i, "shapes", "test"), idx=0,
                     metadata={"task": "shapes", "doc_id": i, "repeats": 1}) for i in doc_ids]


class _TowerRows:
    """Counts vision-tower runs and the images they carry, through a forward hook on the patch embedding (every
    run starts there, whether it goes through the tower's forward or stops early at the deepest block read)."""

    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0

    def __call__(self, module: torch.nn.Module, args: tuple, output: object) -> None:
        self.calls += 1
        self.rows += int(args[0].shape[0])


@pytest.fixture
def tower(lm: StfBenchLmms) -> Iterator[_TowerRows]:
    counter = _TowerRows()
    lm.clean()  # no prefilled head carried over from an earlier test
    handle = lm.model.model.vision_tower.embeddings.register_forward_hook(counter)
    saved = lm.visual_cache
    yield counter
    handle.remove()
    lm.visual_cache = saved


def _entry_bytes(lm: StfBenchLmms) -> int:
    width = lm.model.config.text_config.hidden_size
    return lm.model.num_visual_tokens * width * torch.empty((), dtype=lm.model.dtype).element_size()


def test_answers_with_cache_equal_answers_without(lm, tower):
    requests = _requests(lm, list(range(len(PATTERN))))
    lm.visual_cache = None
    uncached = lm.generate_until(requests)
    # without the cache the tower runs once per distinct image of each batch whose prompt head is not prefilled
    # already (A B A C | B D A C: 3 + 3): A's second question in batch 1 shares the prefill of A's head, and C's
    # head, prefilled last in batch 1, is carried into batch 2
    assert tower.rows == 6
    lm.visual_cache = VisualTokenCache(1024**3)
    cached = lm.generate_until(requests)
    again = lm.generate_until(requests)  # every image now comes from the cache
    assert cached == uncached and again == uncached
    assert len({uncached[PATTERN.index(c)] for c in range(len(COLOURS))}) > 1, "the image must change the answer"


def test_loglikelihood_with_cache_equals_without(lm, tower):
    requests = _loglikelihood_requests([0, 1, 2, 6])  # images A B A A
    lm.visual_cache = None
    uncached = lm.loglikelihood(requests)
    lm.visual_cache = VisualTokenCache(1024**3)
    assert lm.loglikelihood(requests) == uncached
    assert uncached[0] == uncached[2] and uncached[0][0] != uncached[1][0]


def test_vision_tower_runs_once_per_distinct_image(lm, tower):
    lm.visual_cache = VisualTokenCache(1024**3)
    lm.generate_until(_requests(lm, list(range(len(PATTERN)))))
    assert tower.rows == len(COLOURS)
    assert tower.calls == 2, "batch 1 runs A B C together, batch 2 only D"
    # batch 1's second A shares its prompt head with the first (one lookup); in batch 2, B and A are hits and C's
    # head comes prefilled from batch 1 (no lookup)
    assert (lm.visual_cache.misses, lm.visual_cache.hits) == (4, 2)
    lm.loglikelihood(_loglikelihood_requests([3, 5]))  # C and D: cached from generate_until
    assert tower.rows == len(COLOURS)


def test_processor_settings_are_part_of_the_key(lm, tower):
    lm.visual_cache = VisualTokenCache(1024**3)
    requests = _requests(lm, [0])
    lm.generate_until(requests)
    lm.processor.pad_to_square = not lm.processor.pad_to_square
    try:
        cropped = lm.generate_until(requests)
        assert tower.rows == 2, "the same image preprocessed differently is a different entry"
        lm.visual_cache = None
        assert lm.generate_until(requests) == cropped
    finally:
        lm.processor.pad_to_square = not lm.processor.pad_to_square


def test_cache_bound_is_honoured(lm, tower):
    size = _entry_bytes(lm)
    lm.visual_cache = cache = VisualTokenCache(2 * size + size // 2)  # room for two entries, not three
    answers = []
    for doc_id in [0, 1, 3, 5]:  # A B C D, one per batch
        answers += lm.generate_until(_requests(lm, [doc_id]))
        assert len(cache) <= 2 and cache.bytes <= cache.max_bytes
    assert tower.rows == 4 and len(cache) == 2 and cache.bytes == 2 * size
    assert lm.generate_until(_requests(lm, [5]))[0] == answers[3] and tower.rows == 4, "D is among the last two"
    assert lm.generate_until(_requests(lm, [0]))[0] == answers[0] and tower.rows == 5, "A was evicted"


def test_visual_cache_zero_turns_it_off_and_is_not_part_of_the_identity():
    off = StfBenchLmms.create_from_arg_string("preset=llava-tiny,visual_cache=0", {"device": "cpu"})
    on = StfBenchLmms.create_from_arg_string("preset=llava-tiny,visual_cache=64", {"device": "cpu"})
    assert off.visual_cache is None and on.visual_cache.max_bytes == 64 * 1024**2
    assert off.identity == on.identity, "cached answers stay valid whichever way the cache is set"
