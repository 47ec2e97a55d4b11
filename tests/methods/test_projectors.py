"""Projectors: the released window order, shapes, parameter counts at 7B, refused settings."""

import pytest
import torch

from stf_bench.errors import StfBenchError
from stf_bench.methods import ModelShape, get_method, get_projector
from stf_bench.methods.fusion import mbtf_layers
from stf_bench.methods.layers import window_avgpool, window_concat, window_fuse


def build_projector(kind: str, c: int, h: int, **args) -> torch.nn.Module:
    return get_projector(kind)(ModelShape(vision_width=c, llm_width=h), **args).build()


def num_visual_tokens(kind: str, grid: int, **args) -> int:
    return get_projector(kind)(ModelShape(grid=grid), **args).tokens_out(grid * grid)


def test_window_fuse_is_channel_major_row_major():
    b, g, c, k = 2, 6, 3, 2
    x = torch.randn(b, g * g, c)
    fused = window_fuse(x, k)
    assert fused.shape == (b, (g // k) ** 2, c * k * k)
    grid = x.view(b, g, g, c)
    for i in range(g // k):
        for j in range(g // k):
            for ch in range(c):
                for dy in range(k):
                    for dx in range(k):
                        want = grid[:, k * i + dy, k * j + dx, ch]
                        got = fused[:, i * (g // k) + j, ch * k * k + dy * k + dx]
                        assert torch.equal(got, want)


def test_window_fuse_matches_released_unfold_code():
    x = torch.randn(1, 576, 8)
    released = x.view(1, 24, 24, 8).unfold(1, 2, 2).unfold(2, 2, 2).contiguous().view(1, 144, 32)
    assert torch.equal(window_fuse(x, 2), released)


def test_window_concat_is_token_major_and_avgpool_averages():
    x = torch.arange(16 * 2, dtype=torch.float32).view(1, 16, 2)  # 4x4 grid, 2 channels
    cat = window_concat(x, 2)
    grid = x.view(4, 4, 2)
    assert torch.equal(cat[0, 0], torch.cat([grid[0, 0], grid[0, 1], grid[1, 0], grid[1, 1]]))
    pooled = window_avgpool(x, 2)
    assert torch.allclose(pooled[0, 3], grid[2:, 2:].reshape(4, 2).mean(0))


@pytest.mark.parametrize("kind,params", [("mlp2x_gelu", 20_979_712), ("stf", 134_238_208), ("mbtf+stf", 37_753_856 + 134_238_208)])
def test_parameter_counts_at_7b(kind, params):
    with torch.device("meta"):
        proj = build_projector(kind, 1024, 4096)
    assert sum(p.numel() for p in proj.parameters()) == params


def test_mbtf_alone_has_the_released_count():
    with torch.device("meta"):
        proj = build_projector("mbtf+stf", 1024, 4096)
    assert sum(p.numel() for p in proj.mbtf.parameters()) == 37_753_856


def test_mbtf_layers_released_order():
    assert mbtf_layers(8) == [-2, 21, 18, 15, 12, 9, 6, 3]
    assert mbtf_layers(8, top=24)[0] == 24
    assert len(mbtf_layers(16)) == 16
    assert len({i % 25 for i in mbtf_layers(24)}) == 23  # released top (-2 = block 23) repeats block 23 at M=24


@pytest.mark.parametrize("k,e,n", [(1, 1, 576), (2, 1, 144), (2, 2, 288), (4, 4, 144), (4, 8, 288), (8, 4, 36),
                                   (8, 8, 72), (8, 16, 144), (8, 32, 288)])
def test_table5_token_counts_and_shapes(k, e, n):
    assert num_visual_tokens("stf", 24, k=k, e=e) == n
    proj = build_projector("stf", 4, 8, k=k, e=e)
    assert proj(torch.randn(1, 576, 4)).shape == (1, n, 8)


@pytest.mark.parametrize("kind,k,e,m,needle", [
    ("stf", 5, 1, 8, "k=5"), ("stf", 2, 3, 8, "e=3"), ("mbtf", 2, 1, 0, "mbtf_blocks=0"), ("conv", 2, 1, 8, "'conv'")])
def test_impossible_settings_are_refused(kind, k, e, m, needle):
    with pytest.raises(StfBenchError, match="valid|registered") as err:
        method = get_method(kind)
        given = {"k": k, "e": e, "mbtf_blocks": m}
        method(ModelShape(), **{p.name: given[p.name] for p in method.params if p.name in given})
    assert needle in str(err.value)
