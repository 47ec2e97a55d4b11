"""The stage-1 projector file of every built-in projector: LLaVA's key layout, a plain tensor dict that loads with
weights_only=True, and read back by `load_model(..., projector_weights=)`; the refusal to write over a run."""

from __future__ import annotations

import pytest
import torch

from stf_bench.errors import StfBenchError
from stf_bench.models import load_model
from stf_bench.train.outputs import prepare_output_dir, save_projector

TINY = ["llava-tiny", "stf-tiny", "mbtf-tiny", "stf-only-tiny", "avgpool-tiny", "tokenconcat-tiny", "qformer-tiny"]


@pytest.mark.parametrize("preset", TINY)
def test_projector_file_round_trips_through_load_model(preset, tmp_path):
    trained, _ = load_model(preset, seed=1)
    path = save_projector(trained, tmp_path)
    state = torch.load(path, weights_only=True)
    assert state and all(k.startswith(("model.mm_projector.", "model.mm_projector_crosslayer.")) for k in state)
    assert all(type(v) is torch.Tensor for v in state.values())
    fresh, _ = load_model(preset, seed=2, projector_weights=path)
    want = trained.model.multi_modal_projector.state_dict()
    got = fresh.model.multi_modal_projector.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_released_layouts_keep_their_names(tiny_model):
    llava, _ = tiny_model("llava-tiny")
    stf, _ = tiny_model("stf-tiny")
    from stf_bench.train.outputs import projector_state

    assert set(projector_state(llava)) == {"model.mm_projector.0.weight", "model.mm_projector.0.bias",
                                           "model.mm_projector.2.weight", "model.mm_projector.2.bias"}
    keys = set(projector_state(stf))
    assert any(k.startswith("model.mm_projector_crosslayer.") for k in keys)
    assert any(k.startswith("model.mm_projector.") for k in keys)


def test_output_dir_with_a_run_is_refused_unless_resume_or_overwrite(tmp_path):
    assert prepare_output_dir(tmp_path, resume=False, overwrite=False) is None  # empty: fine
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-12").mkdir()
    with pytest.raises(StfBenchError, match="already holds a training run"):
        prepare_output_dir(tmp_path, resume=False, overwrite=False)
    assert prepare_output_dir(tmp_path, resume=True, overwrite=False) == tmp_path / "checkpoint-12"
    assert prepare_output_dir(tmp_path, resume=False, overwrite=True) is None
    assert not list(tmp_path.glob("checkpoint-*"))
