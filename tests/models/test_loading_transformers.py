"""Formats 1 (transformers' llava) and 4 (our save_pretrained) load through `from_pretrained`: its loading info is
what refuses a checkpoint with a missing, unexpected or mis-shaped key, and the keys are named as it reports them
(after `key_mapping` renamed the hub's 4.x layout)."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from stf_bench import load_model
from stf_bench.errors import StfBenchError
from stf_bench.models.modeling import StfLlavaForConditionalGeneration
from stf_bench.models.tokenizer import build_tiny_tokenizer

VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=336,
              patch_size=14, hidden_act="quick_gelu", projection_dim=16)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4,
            vocab_size=261, max_position_embeddings=1024, bos_token_id=1, eos_token_id=2)


@pytest.fixture
def llava_hf(tmp_path):
    """A transformers LlavaForConditionalGeneration save (its weights in the 4.x layout save_pretrained writes)."""
    torch.manual_seed(0)
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(**VISION), text_config=LlamaConfig(**TEXT), image_token_index=260)
    LlavaForConditionalGeneration(cfg).save_pretrained(tmp_path)
    build_tiny_tokenizer().save_pretrained(tmp_path)
    return tmp_path


def _edit_weights(directory, edit):
    state = load_file(directory / "model.safetensors")
    edit(state)
    save_file(state, str(directory / "model.safetensors"))


@pytest.fixture
def spy(monkeypatch):
    """Every call of StfLlavaForConditionalGeneration.from_pretrained, its keyword arguments recorded."""
    calls = []
    real = StfLlavaForConditionalGeneration.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        calls.append(kwargs)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(StfLlavaForConditionalGeneration, "from_pretrained", classmethod(recording))
    return calls


def test_transformers_format_goes_through_from_pretrained_with_our_config(llava_hf, spy):
    model, _ = load_model(llava_hf, image_aspect_ratio="resize", dtype="bf16")
    (call,) = spy
    assert call["output_loading_info"] is True and call["key_mapping"] and call["dtype"] is torch.bfloat16
    assert call["config"].image_aspect_ratio == "resize" == model.config.image_aspect_ratio  # the override reached it
    assert call["weights_only"] is True and call["trust_remote_code"] is False
    assert next(model.parameters()).dtype is torch.bfloat16 and not model.training


def test_the_refusal_comes_from_from_pretrained_loading_info(llava_hf, monkeypatch):
    """A key only from_pretrained's loading info names: the error can come from nowhere else."""
    real = StfLlavaForConditionalGeneration.from_pretrained.__func__

    def reporting(cls, *args, **kwargs):
        model, info = real(cls, *args, **kwargs)
        return model, {**info, "unexpected_keys": info["unexpected_keys"] | {"reported.by.loading_info"}}

    monkeypatch.setattr(StfLlavaForConditionalGeneration, "from_pretrained", classmethod(reporting))
    with pytest.raises(StfBenchError, match=r"unexpected key reported\.by\.loading_info .*1 such keys"):
        load_model(llava_hf)


def test_unexpected_key_is_named_as_key_mapping_renames_it(llava_hf):
    _edit_weights(llava_hf, lambda s: s.update({"multi_modal_projector.linear_3.weight": torch.zeros(2, 2)}))
    with pytest.raises(StfBenchError) as err:
        load_model(llava_hf)
    msg = str(err.value)
    assert str(llava_hf) in msg and "unexpected key model.multi_modal_projector.linear_3.weight" in msg


def test_missing_key_is_named_with_its_shape(llava_hf):
    _edit_weights(llava_hf, lambda s: s.pop("multi_modal_projector.linear_2.bias"))
    with pytest.raises(StfBenchError) as err:
        load_model(llava_hf)
    msg = str(err.value)
    assert str(llava_hf) in msg
    assert f"lacks model.multi_modal_projector.linear_2.bias (model expects shape [{TEXT['hidden_size']}])" in msg


def test_mismatched_shape_names_both_shapes(llava_hf):
    _edit_weights(llava_hf, lambda s: s.update({"multi_modal_projector.linear_1.weight": torch.zeros(32, 17)}))
    with pytest.raises(StfBenchError, match=r"model\.multi_modal_projector\.linear_1\.weight has shape \[32, 17\] in "
                                            r"the checkpoint but the model expects \[32, 16\]"):
        load_model(llava_hf)


def test_sharded_save_pretrained_loads_and_a_missing_shard_is_named(tmp_path, spy):
    model, processor = load_model("stf-tiny")
    model.save_pretrained(tmp_path, max_shard_size="200KB")
    processor.save_pretrained(tmp_path)
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
    again, _ = load_model(tmp_path, device="meta")
    assert len(spy) == 1 and next(again.parameters()).is_meta
    shards[-1].unlink()
    with pytest.raises(StfBenchError, match=f"are missing from .*{shards[-1].name}; the download is incomplete"):
        load_model(tmp_path)


def test_pickled_code_in_a_bin_checkpoint_is_refused(tmp_path):
    model, processor = load_model("stf-tiny")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save({"lm_head.weight": object()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(StfBenchError, match="not a weights-only PyTorch file"):
        load_model(tmp_path)
    (tmp_path / "pytorch_model.bin").unlink()
    with pytest.raises(StfBenchError, match="no weights transformers can read"):
        load_model(tmp_path)


def test_checkpoint_generation_config_is_not_read(tmp_path):
    """As before from_pretrained: a model's generation defaults come from its config, not generation_config.json."""
    model, processor = load_model("stf-tiny", method="fastv", **{"method.k": 1})
    assert model.generation_config.use_cache is False  # FastV recomputes its prefill at every step
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text('{"do_sample": true, "temperature": 0.3, "use_cache": true}')
    again, _ = load_model(tmp_path)
    assert again.generation_config.to_dict() == model.generation_config.to_dict()


def test_loading_shows_no_progress_bar_of_its_own(llava_hf, capfd):
    """Regression: transformers' "Loading weights" bar showed on stderr beside the run's one bar."""
    from transformers.utils import logging as hf_logging

    load_model(str(llava_hf))
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # turned off for the load only
