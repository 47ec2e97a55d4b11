"""One LLaVA model family whose projector is chosen by config: a `LlavaForConditionalGeneration` subclass.

generate, KV cache, SDPA, save_pretrained and accelerate come from transformers; what changes is which ViT hidden
states feed the projector (one block, or M blocks for MBTF), the projector itself, and how many image
placeholders the prompt carries (`num_visual_tokens`).
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoModel, LlavaConfig, LlavaForConditionalGeneration, LlavaModel
from transformers.models.llava.modeling_llava import LlavaModelOutputWithPast, LlavaPreTrainedModel

from stf_bench import compat
from stf_bench.errors import StfBenchError
from stf_bench.models.projectors import build_projector, check_projector_args, mbtf_layers, num_visual_tokens


@strict
class StfLlavaConfig(LlavaConfig):
    """LlavaConfig plus the projector choice. k/e: STF window and tokens per window; mbtf_blocks: ViT blocks fused."""

    model_type = "stf_llava"

    projector_type: str = "mlp2x_gelu"
    stf_k: int = 2
    stf_e: int = 1
    stf_hidden: int | None = None
    mbtf_blocks: int = 8
    mbtf_top_layer: int = -2
    qformer_queries: int = 144
    qformer_layers: int = 2
    image_aspect_ratio: str = "pad"
    preset: str | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_projector_args(self.projector_type, self.grid, self.stf_k, self.stf_e, self.mbtf_blocks,
                             self.vision_config.num_hidden_layers)
        self.image_seq_length = self.num_visual_tokens

    @property
    def grid(self) -> int:
        """Patches per image side (24 for CLIP-L/14 at 336 px)."""
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def num_visual_tokens(self) -> int:
        """Tokens the LLM sees per image."""
        return num_visual_tokens(self.projector_type, self.grid, self.stf_k, self.stf_e, self.qformer_queries)

    @property
    def feature_layers(self) -> list[int]:
        """ViT hidden-state indices the projector reads, concatenated on channels in this order."""
        if self.projector_type in ("mbtf", "mbtf+stf"):
            return mbtf_layers(self.mbtf_blocks, self.vision_config.num_hidden_layers, self.mbtf_top_layer)
        return [self.vision_feature_layer if isinstance(self.vision_feature_layer, int) else -2]


AutoConfig.register("stf_llava", StfLlavaConfig)


class StfLlavaModel(LlavaModel):
    """Vision tower -> projector -> LLM backbone (no lm_head)."""

    config_class = StfLlavaConfig

    def __init__(self, config: StfLlavaConfig):
        LlavaPreTrainedModel.__init__(self, config)
        self.vision_tower = AutoModel.from_config(config.vision_config)  # CLIPVisionModel
        self.multi_modal_projector = build_projector(
            config.projector_type, config.vision_config.hidden_size, config.text_config.hidden_size,
            k=config.stf_k, e=config.stf_e, mbtf_blocks=config.mbtf_blocks, qformer_queries=config.qformer_queries,
            qformer_layers=config.qformer_layers, stf_hidden=config.stf_hidden,
        )
        self.language_model = AutoModel.from_config(config.text_config)  # LlamaModel
        self.post_init()

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projector input: the selected ViT blocks without CLS, (B, G*G, len(feature_layers) * C)."""
        tower = self.vision_tower
        n_states = self.config.vision_config.num_hidden_layers + 1
        layers = [i % n_states for i in self.config.feature_layers]
        if not all(hasattr(tower, name) for name in ("embeddings", "pre_layrnorm", "encoder")):  # not CLIP
            out = tower(pixel_values, output_hidden_states=True, return_dict=True)
            return torch.cat([out.hidden_states[i][:, 1:] for i in layers], dim=-1)
        # CLIP's hidden states, stopping at the deepest block read: blocks above it (the last one for LLaVA's
        # penultimate-layer features) cannot change the output. Index 0 is the embedding output, i that of block i.
        hidden = tower.pre_layrnorm(tower.embeddings(pixel_values))  # (B, 1 + G*G, C)
        states = [hidden]
        for block in tower.encoder.layers[:max(layers)]:
            hidden = block(hidden, None)
            states.append(hidden)
        return torch.cat([states[i][:, 1:] for i in layers], dim=-1)

    def visual_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """What the LLM sees: (B, num_visual_tokens, H)."""
        dtype = self.vision_tower.get_input_embeddings().weight.dtype
        return self.multi_modal_projector(self.vision_features(pixel_values.to(dtype)))

    def get_image_features(self, pixel_values: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """transformers' hook name for `visual_tokens`."""
        return self.visual_tokens(pixel_values)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> LlavaModelOutputWithPast:
        # generate() pre-encodes images with get_image_features and passes them here instead of pixel_values
        encoded = (kwargs.pop("mm_encoder_outputs", None) or {}).get("image")
        past_key_values = compat.pop_cache(kwargs, past_key_values)  # `cache=` from transformers >= 5.24
        for unused in ("vision_feature_layer", "vision_feature_select_strategy", "image_sizes"):
            kwargs.pop(unused, None)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        image_mask = None
        if inputs_embeds is None:
            # The image token may lie outside the embedding table (original-LLaVA checkpoints have no row for it):
            # embed a harmless id there, the visual tokens overwrite those positions below.
            image_mask = input_ids == self.config.image_token_id
            inputs_embeds = self.get_input_embeddings()(input_ids.masked_fill(image_mask, 0))
        image_features = None
        if pixel_values is not None or encoded is not None:
            if image_mask is None:
                raise ValueError("pixel_values need input_ids to locate the image placeholders")
            image_features = self.visual_tokens(pixel_values) if pixel_values is not None else encoded  # (B_img, N, H)
            if not inputs_embeds.is_meta:
                n_placeholders = int(image_mask.sum())
                if n_placeholders != image_features.shape[0] * image_features.shape[1]:
                    raise StfBenchError(
                        f"the prompt holds {n_placeholders} image placeholders but the model makes "
                        f"{image_features.shape[0]} x {image_features.shape[1]} visual tokens; build inputs with "
                        f"the processor returned by load_model (it inserts {self.config.num_visual_tokens} per image)"
                    )
            inputs_embeds = inputs_embeds.masked_scatter(
                image_mask.unsqueeze(-1), image_features.to(inputs_embeds.device, inputs_embeds.dtype)
            )
        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **compat.cache_kw(past_key_values),
            **kwargs,
        )
        return compat.llava_model_output(
            last_hidden_state=outputs.last_hidden_state,
            cache_obj=compat.output_cache(outputs),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_features=image_features,
        )


class StfLlavaForConditionalGeneration(LlavaForConditionalGeneration):
    """The whole family: LLaVA-1.5, AvgPool, TokenConcat, Q-Former, MBTF, STF and MBTF+STF, by `config.projector_type`."""

    config_class = StfLlavaConfig

    def __init__(self, config: StfLlavaConfig):
        LlavaPreTrainedModel.__init__(self, config)
        self.model = StfLlavaModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    @property
    def num_visual_tokens(self) -> int:
        """Tokens the LLM sees per image."""
        return self.config.num_visual_tokens

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projector input, (B, G*G, M*C)."""
        return self.model.vision_features(pixel_values)

    def visual_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The tokens fed to the LLM, (B, num_visual_tokens, LLM width)."""
        return self.model.visual_tokens(pixel_values)

    def projector_params(self) -> int:
        """Parameter count of the projector (MBTF + STF, or the baseline's MLP, ...)."""
        return sum(p.numel() for p in self.model.multi_modal_projector.parameters())


