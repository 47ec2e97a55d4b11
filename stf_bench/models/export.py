"""Write a LLaVA-1.5-type model in transformers' own llava format (what `llava-hf/*` repos and lmms-eval's
`llava_hf` adapter load), so the same weights can be run by other tools for comparison."""

from __future__ import annotations

from pathlib import Path

from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

from stf_bench.errors import StfBenchError
from stf_bench.models.conversation import CHAT_TEMPLATE
from stf_bench.models.modeling import StfLlavaForConditionalGeneration
from stf_bench.models.processing import StfLlavaProcessor


def export_llava_hf(model: StfLlavaForConditionalGeneration, processor: StfLlavaProcessor, directory: str | Path) -> Path:
    """Save `model` as a transformers `LlavaForConditionalGeneration` checkpoint: only a projector that declares the
    `transformers` checkpoint format (LLaVA-1.5's MLP), with no training-free method on top, exists there.
    The processor carries LLaVA-1.5's conversation as its chat template (`conversation.CHAT_TEMPLATE`): lmms-eval's
    `llava_hf` formats every prompt with it and would otherwise fail (chat mode) or guess a format (simple mode)."""
    from stf_bench.methods import list_methods

    projector = model.config.projector_method
    if "transformers" not in projector.checkpoint_keys or model.config.method is not None:
        names = ", ".join(m.name for m in list_methods("projector") if "transformers" in m.checkpoint_keys)
        what = projector.name + (f" + method {model.config.method}" if model.config.method else "")
        raise StfBenchError(f"transformers' llava format holds only these projectors: {names}, with no method on "
                            f"top; this model uses {what}")
    directory = Path(directory)
    cfg = LlavaConfig(vision_config=model.config.vision_config.to_dict(), text_config=model.config.text_config.to_dict(),
                      image_token_index=model.config.image_token_id, vision_feature_layer=-2,
                      vision_feature_select_strategy="default", image_seq_length=model.num_visual_tokens)
    hf = LlavaForConditionalGeneration(cfg)
    hf.load_state_dict(model.state_dict(), strict=True)
    hf.save_pretrained(directory)
    hf_processor = LlavaProcessor(image_processor=processor.image_processor, tokenizer=processor.tokenizer,
                                  patch_size=model.config.vision_config.patch_size,
                                  vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                  chat_template=CHAT_TEMPLATE)
    hf_processor.save_pretrained(directory)
    return directory
