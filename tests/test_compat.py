"""Each assumption of stf_bench.compat about a library's internals, checked against the installed release.

A failure here means a new release of the named library changed what stf-bench leans on: update stf_bench/compat.py.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from dataclasses import fields

import pytest
import torch

from stf_bench import compat


def test_cache_kwarg_is_a_parameter_of_the_llama_forward_and_layers():
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaModel

    name = compat.cache_kwarg()
    for forward in (LlamaModel.forward, LlamaDecoderLayer.forward):
        assert name in inspect.signature(forward).parameters, \
            f"{compat.library('transformers')}: {forward.__qualname__} has no {name!r} parameter"


def test_pop_cache_and_output_cache_read_either_name():
    kwargs = {"cache": "c", "other": 1}
    assert compat.pop_cache(kwargs) == "c" and kwargs == {"other": 1}
    assert compat.pop_cache({}, "old") == "old"

    class Old:
        past_key_values = "p"

    class New:
        cache = "n"

    assert compat.output_cache(Old()) == "p" and compat.output_cache(New()) == "n"


def test_llava_model_output_keeps_the_image_features_under_this_release_s_field():
    from transformers.models.llava.modeling_llava import LlavaModelOutputWithPast

    declared = {f.name for f in fields(LlavaModelOutputWithPast)}
    assert declared & {"image_hidden_states", "image_outputs"}, \
        f"{compat.library('transformers')}: LlavaModelOutputWithPast has neither image_hidden_states nor image_outputs"
    hidden, features = torch.zeros(1, 2, 4), torch.ones(1, 3, 4)
    out = compat.llava_model_output(last_hidden_state=hidden, cache_obj=None, hidden_states=None, attentions=None,
                                    image_features=features)
    assert out.last_hidden_state is hidden
    image = out.image_hidden_states if "image_hidden_states" in declared else out.image_outputs.pooler_output
    assert image is features


def test_cache_layers_have_the_attributes_greedy_decoding_uses():
    cache_cls, layer_cls = compat.cache_classes()
    layer = layer_cls()
    cache = cache_cls(layers=[layer])
    keys, values = torch.randn(2, 1, 3, 4), torch.randn(2, 1, 3, 4)
    layer.update(keys, values)
    lib = compat.library("transformers")
    assert cache.layers[0] is layer, f"{lib}: Cache(layers=...) no longer keeps the layers it is given"
    assert layer.is_initialized and torch.equal(layer.keys, keys) and torch.equal(layer.values, values), \
        f"{lib}: DynamicLayer.update no longer stores keys/values as .keys/.values"
    cache.batch_select_indices(torch.tensor([1]))
    assert torch.equal(layer.keys, keys[1:]), f"{lib}: Cache.batch_select_indices no longer selects rows"


def test_lmms_eval_calls_the_filelock_patch_and_our_stand_in_replaces_it():
    import lmms_eval.evaluator as evaluator

    lib = compat.library("lmms-eval")
    assert "_enable_reentrant_filelocks()" in inspect.getsource(evaluator.simple_evaluate), \
        f"{lib}: simple_evaluate no longer calls _enable_reentrant_filelocks (compat item 4 may be dropped)"
    assert "get_task_dict(" in inspect.getsource(evaluator.simple_evaluate), \
        f"{lib}: simple_evaluate no longer looks up get_task_dict in its module (compat item 5)"
    original, loader = evaluator._enable_reentrant_filelocks, evaluator.get_task_dict
    with compat.lmms_evaluator_patched({"t": 1}):
        evaluator._enable_reentrant_filelocks()  # the stand-in: must not import filelock._api
        assert evaluator.get_task_dict(["anything"], None) == {"t": 1}
    assert evaluator._enable_reentrant_filelocks is original and evaluator.get_task_dict is loader


def test_a_missing_attribute_names_the_library(monkeypatch):
    import lmms_eval.evaluator as evaluator

    monkeypatch.delattr(evaluator, "_enable_reentrant_filelocks")
    with pytest.raises(RuntimeError, match=r"lmms-eval \d"):
        with compat.lmms_evaluator_patched():
            pass


def test_ocrbench_totals_are_reset_before_the_aggregate():
    from lmms_eval.tasks.ocrbench import utils as ocr

    assert isinstance(ocr.OCRBench_score, dict) and ocr.OCRBench_score, \
        f"{compat.library('lmms-eval')}: OCRBench_score is no longer a dict of module-global totals"
    key = next(iter(ocr.OCRBench_score))
    ocr.OCRBench_score[key] = 7
    compat.reset_ocrbench_totals()
    assert all(v == 0 for v in ocr.OCRBench_score.values())


def test_lenient_images_turns_a_corrupt_image_into_none_and_restores_the_decoder():
    from datasets.features import Image

    original = Image.decode_example
    with compat.lenient_images():
        assert Image().decode_example({"bytes": b"not an image", "path": None}) is None
    assert Image.decode_example is original
    with pytest.raises(Exception):  # noqa: B017 - outside the block the library's own error comes back
        Image().decode_example({"bytes": b"not an image", "path": None})


def test_calflops_counts_the_extra_function_and_every_patch_is_undone():
    from calflops.utils import get_module_flops

    class Mul(torch.nn.Module):
        def forward(self, a, b):
            return torch.bmm(a, b)

    module, bmm, linear = Mul(), torch.bmm, torch.nn.functional.linear
    with compat.calflops_counting(module, {(torch, "bmm"): lambda a, b: (7, 3)}):
        module(torch.ones(1, 2, 2), torch.ones(1, 2, 2))
        counted = get_module_flops(module)
    assert counted == 7, f"{compat.library('calflops')}: a function wrapped with pytorch_ops.wrapFunc was not counted"
    assert torch.bmm is bmm and torch.nn.functional.linear is linear


@pytest.mark.slow
def test_lmms_eval_s_own_filelock_patch_runs_in_this_environment():
    """Item 4's pin: lmms-eval's CLI calls `_enable_reentrant_filelocks` for every model but ours (which drops
    it); with filelock >= 4.3 (no `filelock._api`) it raises and lmms-eval writes nothing. A subprocess: the
    patch replaces filelock's metaclass call for the whole process."""
    code = "import lmms_eval.evaluator as e; e._enable_reentrant_filelocks(); print(e._enable_reentrant_filelocks._patched)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("True"), \
        f"{compat.library('filelock')} breaks {compat.library('lmms-eval')}: {proc.stderr.strip()[-500:]}"


def test_from_pretrained_loads_on_meta_without_hub_kernels(tmp_path):
    """Item 10: transformers 5.25 kernelizes by default and `kernelize` refuses `meta`; our keywords turn it off."""
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 vocab_size=32)).save_pretrained(tmp_path)
    model = LlamaForCausalLM.from_pretrained(tmp_path, device_map={"": "meta"}, **compat.from_pretrained_kwargs())
    assert next(model.parameters()).is_meta, f"{compat.library('transformers')}: from_pretrained ignored meta"
    assert not getattr(model, "use_kernels", False), \
        f"{compat.library('transformers')}: from_pretrained kernelized despite use_kernels=False"


def test_package_version_is_the_installed_one_or_none():
    from importlib.metadata import version

    from stf_bench.compat import library, package_version

    assert package_version("transformers") == version("transformers")
    assert library("transformers") == f"transformers {version('transformers')}"
    assert package_version("stf-bench-no-such-distribution") is None


def test_the_zero3_build_s_transformers_internals_exist():
    """`compat.zero3_partitioned_build` (train --deepspeed zero3) wraps these; a release without them must fail here,
    naming transformers, not inside a multi-GPU run."""
    import transformers.integrations.deepspeed as hf_deepspeed
    import transformers.modeling_utils as modeling_utils
    from transformers import PreTrainedModel

    from stf_bench.compat import library

    for owner, name in ((modeling_utils, "set_zero3_state"), (hf_deepspeed, "initialize_weights_zero3"),
                        (hf_deepspeed, "deepspeed_config"), (PreTrainedModel, "initialize_weights")):
        assert callable(getattr(owner, name, None)), f"{library('transformers')}: {owner.__name__}.{name} is gone"
