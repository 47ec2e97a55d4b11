"""random-drop: the subset is fixed by its seed, ordered, of the declared size; on a model, the LLM sees `keep`."""

import sys
from pathlib import Path

import pytest
import torch

try:
    from stf_random_drop import RandomDrop, kept_indices
except ImportError:  # not pip-installed: import it from this folder (the stf-bench suite runs it so)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from stf_random_drop import RandomDrop, kept_indices

from stf_bench.errors import StfBenchError
from stf_bench.methods import ModelShape, VisionContext


def test_subset_is_fixed_by_seed_sorted_and_distinct():
    a, b, c = kept_indices(576, 16, 0), kept_indices(576, 16, 0), kept_indices(576, 16, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.tolist() == sorted(set(a.tolist())) and len(a) == 16 and int(a.max()) < 576


def test_reduce_keeps_those_tokens_for_every_image():
    method = RandomDrop(ModelShape(), keep=16, seed=3)
    features = torch.randn(2, 576, 8)
    out = method.reduce(features, VisionContext(grid=24))
    index = kept_indices(576, 16, 3)
    assert out.shape == (2, 16, 8) and torch.equal(out, features[:, index])
    assert method.tokens_out(576) == 16


def test_impossible_keep_is_refused_with_the_valid_range():
    with pytest.raises(StfBenchError, match="valid: 1..576"):
        RandomDrop(ModelShape(), keep=577)
    with pytest.raises(StfBenchError, match="keep"):
        RandomDrop(ModelShape(), keep=0)
