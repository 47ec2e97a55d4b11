"""pixel_shuffle: the fold is the STF window order, the module's shapes and parameter count are what the declaration
says, an impossible scale is refused, and its argument lives in the model config without any edit there."""

import importlib
import sys
from pathlib import Path

import pytest
import torch

from stf_bench.errors import StfBenchError
from stf_bench.methods import ModelShape
from stf_bench.methods.layers import window_fuse
from stf_bench.models import presets

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def plugin():
    """The plug-in's module (pip-installed, or imported from this folder as the stf-bench suite runs it); the presets
    its import adds are taken out again afterwards, so that other tests see the built-ins only."""
    saved = dict(dict.items(presets.PRESETS))
    # imported afresh, so that its preset line runs even where another test imported it and took its presets out
    sys.modules.pop("stf_pixel_shuffle", None)
    if importlib.util.find_spec("stf_pixel_shuffle") is None:
        sys.path.insert(0, str(SRC))
    module = importlib.import_module("stf_pixel_shuffle")
    yield module
    dict.clear(presets.PRESETS)
    dict.update(presets.PRESETS, saved)


def test_the_fold_is_the_channel_major_window_order_of_stf(plugin):
    x = torch.randn(2, 576, 8)
    projector = plugin.PixelShuffleProjector(8, 16, 3)
    tokens = []
    projector.linear_1.register_forward_hook(lambda module, args, out: tokens.append(args[0]))
    out = projector(x)
    assert out.shape == (2, 64, 16)
    assert torch.equal(tokens[0], window_fuse(x, 3))


@pytest.mark.parametrize("scale,tokens", [(1, 576), (2, 144), (4, 36), (24, 1)])
def test_tokens_and_parameters_are_what_the_module_has(plugin, scale, tokens):
    method = plugin.PixelShuffle(ModelShape(vision_width=8, llm_width=16), scale=scale)
    module = method.build()
    assert method.tokens_out(576) == tokens
    assert module(torch.zeros(1, 576, 8)).shape == (1, tokens, 16)
    assert method.param_count() == sum(p.numel() for p in module.parameters())


def test_a_scale_that_does_not_divide_the_grid_is_refused_with_the_valid_ones(plugin):
    with pytest.raises(StfBenchError, match=r"scale=5 does not divide the 24x24 patch grid; valid scale: \[1, 2, 3"):
        plugin.PixelShuffle(ModelShape(), scale=5)


def test_the_presets_line_adds_a_full_size_preset_and_its_tiny_twin(plugin):
    full, tiny = presets.get_preset("pixelshuffle-7b"), presets.get_preset("pixelshuffle-tiny")
    assert (full.projector, full.llm, full.tiny) == ("pixel_shuffle", "vicuna-1.5-7b", False)
    assert (tiny.projector, tiny.llm, tiny.tiny) == ("pixel_shuffle", "vicuna-tiny", True)
