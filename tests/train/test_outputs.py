"""The stage-1 projector file of every built-in projector: LLaVA's key layout, a plain tensor dict that loads with
weights_only=True, and read back by `load_model(..., projector_weights=)`; the refusal to write over a run."""

from __future__ import annotations

import hashlib

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


def test_provenance_is_written_atomically(tmp_path, monkeypatch):
    """A write that fails (a full disk at fsync) leaves no training.json, not a truncated one, and says so."""
    import errno
    import os

    from stf_bench.train.outputs import write_provenance

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StfBenchError, match="no space left on .* \\(writing training.json\\)"):
        write_provenance(tmp_path, {"stage": "finetune", "steps": 1})
    assert not list(tmp_path.iterdir())


def test_a_trained_checkpoint_is_reported_as_trained_with_stf_bench(tmp_path, monkeypatch, capsys):
    """Train a tiny AvgPool (both stages, one step), run it with --limit, report: its row is in Table 6 (the fusion
    strategies) labelled as trained with stf-bench and on what data, its provenance including stage 1's; the same
    weights without the provenance are not labelled so and join no paper table."""
    import json
    import shutil

    from stf_bench.cli import main
    from stf_bench.published import load_published
    from stf_bench.report.tables import EVERY_BENCHMARK, build_tables
    from stf_bench.store.db import open_store

    monkeypatch.chdir(tmp_path)
    quick = ["--max-steps", "1", "--global-batch-size", "2", "--warmup-ratio", "0"]
    assert main(["train", "--stage", "pretrain", "--model", "avgpool-tiny", "--output-dir", "pre", *quick]) == 0
    assert main(["train", "--stage", "finetune", "--model", "avgpool-tiny", "--projector", "pre", "--output-dir",
                 "ckpt", *quick]) == 0
    record = json.loads((tmp_path / "ckpt" / "training.json").read_text())
    assert record["pretrain"]["stage"] == "pretrain" and record["pretrain"]["steps"] == 1
    # Paths that mean something wherever the outputs go: stage 1 relative to the checkpoint (not to the working
    # directory of the run, nor absolute) with its digest; the command is the `stf-bench train` line of this run,
    # not the calling process's argv (pytest's here; scripts/make_default_model.py's for the shipped model).
    assert record["projector"] == "../pre/mm_projector.bin"
    assert record["projector_sha256"] == hashlib.sha256((tmp_path / "pre" / "mm_projector.bin").read_bytes()).hexdigest()
    assert record["command"] == ["stf-bench", "train", "--stage", "finetune", "--model", "avgpool-tiny", "--projector",
                                 "pre", "--output-dir", "ckpt", "--global-batch-size", "2", "--max-steps", "1",
                                 "--warmup-ratio", "0.0"]
    shutil.copytree(tmp_path / "ckpt", tmp_path / "copy", ignore=shutil.ignore_patterns("training.json"))
    db = str(tmp_path / "store.sqlite")
    for model in ("ckpt", "copy"):
        assert main(["run", "--model", model, "--tasks", "pope", "--limit", "2", "--no-progress", "--db", db,
                     "--output-dir", f"eval-{model}"]) == 0
    capsys.readouterr()
    with open_store(db) as store:
        trained, plain = store.runs()
        assert trained.training["preset"] == "avgpool-tiny" and trained.training["steps"] == 1
        assert plain.training is None
        published = load_published()
        default = {t.id: t for t in build_tables(published, store, ["6", EVERY_BENCHMARK], iters=20,
                                                 include_partial=True)}
        asked = {t.id: t for t in build_tables(published, store, ["6"], iters=20, include_partial=True,
                                               include_samples=True)}
    (row,) = [r for r in asked["6"].rows if r.source == "reproduced"]
    assert row.method.startswith("ckpt (data=samples) [llava] @")
    assert ", trained with stf-bench (avgpool-tiny, finetune, 1 step, training data=samples) (partial run #1" in \
        row.method
    assert row.attributes["projector"] == "avgpool" and row.attributes["training_data"] == "samples"
    assert not [r for r in default["6"].rows if r.source == "reproduced"]  # sample data: only when asked for
    every = [r.method for r in default[EVERY_BENCHMARK].rows]
    assert any(m.startswith("ckpt (data=samples)") and "trained with stf-bench" in m for m in every)
    assert any(m.startswith("copy (data=samples)") and "trained with" not in m for m in every)
