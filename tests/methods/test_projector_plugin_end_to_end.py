"""The example projector plug-in (examples/projector-plugin): one file and one preset line, with an argument of its
own (`scale`, config field `pixel_shuffle_scale`) that no stf-bench file names.

In this process it is registered through a fake entry point (as the method plug-in's tests do): the config takes
its field, the report's attributes and the FLOPs tables read its argument from the registry. The slow tests
`pip install -e examples/projector-plugin --no-deps` for real, into a virtual environment layered over this one
(the suite's own environment is left as it is), and run `stf-bench models`, `flops`, `run` and `train` there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch

from stf_bench.methods import registry
from stf_bench.models import load_model, presets

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples" / "projector-plugin"


@pytest.fixture
def pixel_shuffle(fresh_registry, monkeypatch):
    """The plug-in registered through an entry point; its presets taken out again afterwards."""
    saved = dict(dict.items(presets.PRESETS))
    monkeypatch.syspath_prepend(str(PLUGIN / "src"))
    monkeypatch.delitem(sys.modules, "stf_pixel_shuffle", raising=False)  # imported afresh: its preset line runs
    fresh_registry(EntryPoint("pixel_shuffle", "stf_pixel_shuffle:PixelShuffle", registry.ENTRY_POINT_GROUP))
    yield registry.get_method("pixel_shuffle")
    dict.clear(presets.PRESETS)
    dict.update(presets.PRESETS, saved)


def test_a_projector_with_its_own_field_needs_no_edit_of_the_config(fresh_registry):
    """Failed before with `AttributeError: 'StfLlavaConfig' object has no attribute 'fake_queries'`."""
    from stf_bench.methods import Param, ProjectorMethod
    from stf_bench.models.presets import preset_config

    class Fake(ProjectorMethod):
        name = "fake-projector"
        params = (Param("queries", 7, int, "tokens out", "fake_queries", minimum=1),)

        def tokens_out(self, tokens_in: int) -> int:
            return self.args["queries"]

    fresh_registry()
    registry.register(Fake)
    assert preset_config("llava-tiny", projector="fake-projector").num_visual_tokens == 7
    config = preset_config("llava-tiny", projector="fake-projector", queries="5")
    assert config.fake_queries == 5 and config.num_visual_tokens == 5


def test_the_config_takes_the_plugins_field_with_its_default_and_round_trips(pixel_shuffle, tmp_path):
    """Failed before with `AttributeError: 'StfLlavaConfig' object has no attribute 'pixel_shuffle_scale'`."""
    model, processor = load_model("pixelshuffle-tiny")
    assert model.config.pixel_shuffle_scale == 2 and model.num_visual_tokens == 144
    model, processor = load_model("pixelshuffle-tiny", scale="3")  # as --model-args gives it: parsed, stored as int
    assert model.config.pixel_shuffle_scale == 3 and model.num_visual_tokens == 64
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again, _ = load_model(str(tmp_path))
    assert again.config.projector_type == "pixel_shuffle" and again.config.pixel_shuffle_scale == 3
    assert again.num_visual_tokens == 64
    mine, theirs = model.state_dict(), again.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_the_report_reads_the_plugins_argument_from_the_registry(pixel_shuffle):
    from stf_bench.report.attributes import run_attributes

    assert run_attributes("pixelshuffle-tiny", {})["scale"] == 2  # the declared default filled in
    by_arg = run_attributes("pixelshuffle-7b", {"scale": "3"})
    by_field = run_attributes("./ckpt", {}, {"projector_type": "pixel_shuffle", "pixel_shuffle_scale": 4})
    assert (by_arg["projector"], by_arg["scale"], by_arg["llm"]) == ("pixel_shuffle", 3, "vicuna-1.5-7b")
    assert (by_field["projector"], by_field["scale"]) == ("pixel_shuffle", 4)


def test_the_flops_tables_turn_its_argument_into_an_override(pixel_shuffle):
    from stf_bench.profile.flops_tables import preset_for

    match = {"projector": "pixel_shuffle", "llm": "vicuna-1.5-7b"}
    assert preset_for({**match, "scale": 3}) == ("pixelshuffle-7b", {"scale": 3})
    assert preset_for({**match, "scale": 2}) == ("pixelshuffle-7b", {})  # the preset's own value: no override


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A virtual environment over this one (a .pth adds this environment's site-packages) with the plug-in
    installed by `pip install -e examples/projector-plugin --no-deps`; returns a function running stf-bench there."""
    venv = tmp_path_factory.mktemp("plugin-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "_stf_bench_base.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(PLUGIN), "--no-deps", "--no-build-isolation"],
                   check=True, capture_output=True)
    home = tmp_path_factory.mktemp("plugin-home")
    env = {**os.environ, "STF_BENCH_DB": str(home / "store.sqlite")}

    def stf_bench(*argv: str) -> subprocess.CompletedProcess:
        out = subprocess.run([str(python), "-m", "stf_bench.cli", *argv], capture_output=True, text=True, env=env,
                             cwd=home, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        return out

    stf_bench.python, stf_bench.home = python, home
    return stf_bench


@pytest.mark.slow
def test_installed_models_and_methods_list_it(installed):
    listed = {p["name"]: p for p in json.loads(installed("models", "--format", "json").stdout)}
    assert (listed["pixelshuffle-tiny"]["projector"], listed["pixelshuffle-tiny"]["visual_tokens"]) == (
        "pixel_shuffle", 144)
    assert listed["pixelshuffle-7b"]["projector_params"] == (4 * 1024) * 4096 + 4096 + 4096 * 4096 + 4096
    methods = {m["name"]: m for m in json.loads(installed("methods", "--format", "json").stdout)}
    assert methods["pixel_shuffle"]["source"] == "stf-bench-pixel-shuffle 0.1.0"


@pytest.mark.slow
def test_installed_flops_count_its_tokens(installed):
    mine = json.loads(installed("flops", "--model", "pixelshuffle-7b", "--model-args", "scale=3", "--format", "json",
                                "--no-store").stdout)
    stf = json.loads(installed("flops", "--model", "stf-7b", "--model-args", "k=3", "--format", "json",
                               "--no-store").stdout)  # 64 tokens too, same LLM: the paper convention counts the LLM
    assert mine["visual_tokens"] == stf["visual_tokens"] == 64 and mine["tflops"] == stf["tflops"]
    assert mine["model"] == "pixelshuffle-7b (scale=3)"


@pytest.mark.slow
def test_installed_run_records_its_argument(installed):
    out = installed("run", "--model", "pixelshuffle-tiny", "--model-args", "scale=3", "--tasks", "pope", "--limit",
                    "2", "--no-progress", "--output-dir", "eval", "--format", "json")
    assert 0 <= json.loads(out.stdout)["pope"]["f1"] <= 100
    from stf_bench.store.db import open_store

    with open_store(installed.home / "store.sqlite") as store:
        (run,) = store.runs()
    assert run.model == "pixelshuffle-tiny" and run.model_args["scale"] == 3


@pytest.mark.slow
def test_installed_trains_one_step_of_each_stage_and_the_checkpoint_loads(installed):
    quick = ["--max-steps", "1", "--global-batch-size", "2", "--warmup-ratio", "0"]
    installed("train", "--stage", "pretrain", "--model", "pixelshuffle-tiny", "--model-args", "scale=3",
              "--output-dir", "pretrain", *quick)
    stage1 = torch.load(installed.home / "pretrain" / "mm_projector.bin", weights_only=True)
    assert sorted(stage1) == ["model.mm_projector.linear_1.bias", "model.mm_projector.linear_1.weight",
                              "model.mm_projector.linear_2.bias", "model.mm_projector.linear_2.weight"]
    assert stage1["model.mm_projector.linear_1.weight"].shape[1] == 9 * 32  # scale^2 * the tiny CLIP width
    installed("train", "--stage", "finetune", "--model", "pixelshuffle-tiny", "--model-args", "scale=3",
              "--projector", "pretrain", "--output-dir", "finetune", *quick)
    check = ("import json, sys; from stf_bench.models import load_model; m, _ = load_model(sys.argv[1]); "
             "print(json.dumps([m.config.projector_type, m.config.pixel_shuffle_scale, m.num_visual_tokens]))")
    out = subprocess.run([str(installed.python), "-c", check, str(installed.home / "finetune")], capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout) == ["pixel_shuffle", 3, 64]
