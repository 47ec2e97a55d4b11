"""One LLaVA model family whose projector is chosen by config: a `LlavaForConditionalGeneration` subclass.

generate, KV cache, SDPA, save_pretrained and accelerate come from transformers; what changes is which ViT hidden
states feed the projector (one block, or M blocks for MBTF), the projector itself, and how many image
placeholders the prompt carries (`num_visual_tokens`). What each projector or training-free method does and declares
lives in its registry entry (`stf_bench.methods`); nothing here tests a method's name.
"""

from __future__ import annotations

import inspect

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoModel, GenerationConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaModel
from transformers.models.llava.modeling_llava import LlavaModelOutputWithPast, LlavaPreTrainedModel

from stf_bench import compat
from stf_bench.errors import StfBenchError
from stf_bench.methods import FastPaths, Method, ModelShape, ProjectorMethod, VisionContext, get_projector
from stf_bench.methods.base import padding_patches
from stf_bench.methods.registry import get_training_free


@strict
class StfLlavaConfig(LlavaConfig):
    """LlavaConfig plus the compression: the projector (`projector_type` and its arguments' fields: k/e are the
    STF window and tokens per window, mbtf_blocks the ViT blocks fused, ...) and, optionally, a training-free
    `method` with its `method_args` (stf_bench.methods).

    The fields below are the built-in projectors' (typed, checked by the dataclass); any registered projector's
    `Param.config_field` is accepted as well, its default filled in when not given (`projector_fields`), so that a
    plug-in projector needs no edit here."""

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
    method: str | None = None
    method_args: dict | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name, default in projector_fields().items():  # a plug-in projector's fields: declared by its params
            if not hasattr(self, name):
                setattr(self, name, default)
        projector, method = self.projector_method, self.token_method  # each validates its arguments
        for param in type(projector).params:  # the parsed values: the saved config says exactly what was built
            if param.config_field:
                setattr(self, param.config_field, projector.args[param.name])
        if method is not None:
            self.method_args = dict(method.args)  # defaults filled: the saved config says exactly what ran
            if method.acts_on == "vision" and not projector.token_wise:
                token_wise = [p.name for p in _projectors() if p.token_wise]
                raise StfBenchError(f"method {method.name!r} selects vision tokens before the projector, but "
                                    f"{projector.name!r} does not map tokens one by one; it applies to models "
                                    f"whose projector is one of: {', '.join(token_wise)}")
            if method.vision_hook is not None and (method.acts_on != "llm" or not projector.token_wise):
                raise StfBenchError(f"method {method.name!r} declares a vision hook: it must act in the LLM too (which "
                                    f"drops the placeholders its merging frees) and needs a token-wise projector")
        self.image_seq_length = self.num_visual_tokens

    @property
    def grid(self) -> int:
        """Patches per image side (24 for CLIP-L/14 at 336 px)."""
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def projector_method(self) -> ProjectorMethod:
        """The projector this config describes, its arguments read from the config's fields."""
        return get_projector(self.projector_type).from_config(self)

    @property
    def token_method(self) -> Method | None:
        """The training-free method applied on top of the projector (`--method`), or None."""
        if self.method is None:
            return None
        return get_training_free(self.method)(ModelShape.of(self), **(self.method_args or {}))

    def methods(self) -> list[Method]:
        """The projector, then the training-free method if any."""
        return [m for m in (self.projector_method, self.token_method) if m is not None]

    @property
    def num_visual_tokens(self) -> int:
        """Tokens the LLM sees per image (entering its first layer)."""
        n = self.grid * self.grid
        method = self.token_method
        if method is not None and method.acts_on == "vision":
            n = method.tokens_out(n)
        return self.projector_method.tokens_out(n)

    @property
    def token_schedule(self) -> list[int]:
        """Visual tokens the LLM sees at each of its layers (what the paper's FLOPs are computed from)."""
        method = self.token_method
        if method is not None and method.acts_on == "llm":
            return method.token_schedule(self.num_visual_tokens)
        return [self.num_visual_tokens] * self.text_config.num_hidden_layers

    @property
    def fast_paths(self) -> FastPaths:
        """The fast generation paths every method of this model allows."""
        paths = FastPaths()
        for method in self.methods():
            paths = paths & method.fast_paths()
        return paths

    @property
    def feature_layers(self) -> list[int]:
        """ViT hidden-state indices the projector reads, concatenated on channels in this order."""
        default = self.vision_feature_layer if isinstance(self.vision_feature_layer, int) else -2
        return self.projector_method.feature_layers(default)


AutoConfig.register("stf_llava", StfLlavaConfig)


def _projectors() -> list[type[ProjectorMethod]]:
    from stf_bench.methods import list_methods

    return list_methods("projector")


def projector_fields() -> dict[str, object]:
    """Config field -> default of every registered projector's arguments (the first declaring a field wins)."""
    fields: dict[str, object] = {}
    for projector in _projectors():
        for param in projector.params:
            if param.config_field:
                fields.setdefault(param.config_field, param.default)
    return fields


def _clip_attention(block: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention weights (B, heads, T, T), keys and queries (B, heads, T, head_dim, unscaled) of a CLIP encoder block
    on its input `hidden` (B, T, C), computed as its eager attention does, whatever attention kernel the block runs."""
    attn = block.self_attn
    x = block.layer_norm1(hidden)
    shape = (*x.shape[:-1], -1, attn.head_dim)
    queries = attn.q_proj(x).view(shape).transpose(1, 2)
    keys = attn.k_proj(x).view(shape).transpose(1, 2)
    weights = torch.softmax(torch.matmul(queries, keys.transpose(-1, -2)) * attn.scale, dim=-1, dtype=torch.float32)
    return weights.to(x.dtype), keys, queries


class _AttentionProbe(nn.Module):
    """`_clip_attention` as a weightless module, so that FLOPs counters charge it to the method that asked for it."""

    def forward(self, block: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attention weights, keys and queries of `block` on its input `hidden`."""
        return _clip_attention(block, hidden)


class TokenReduction(nn.Module):
    """A training-free vision method as a weightless module (no state-dict keys): its `reduce` and the attention it
    reads run inside it, so that the `prefill` FLOPs convention counts the method's own work apart (`method`)."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method
        self.probe = _AttentionProbe()

    def forward(self, features: torch.Tensor, context: VisionContext) -> torch.Tensor:
        """(B, N, C) -> (B, tokens_out(N), C)."""
        return self.method.reduce(features, context)


class StfLlavaModel(LlavaModel):
    """Vision tower -> projector -> LLM backbone (no lm_head)."""

    config_class = StfLlavaConfig

    def __init__(self, config: StfLlavaConfig):
        LlavaPreTrainedModel.__init__(self, config)
        self.vision_tower = AutoModel.from_config(config.vision_config)  # CLIPVisionModel
        self.multi_modal_projector = config.projector_method.build()
        self.token_method = config.token_method  # a training-free method acting on the vision tokens, or None
        vision_method = self.token_method is not None and self.token_method.acts_on == "vision"
        self.token_reduction = TokenReduction(self.token_method) if vision_method else None
        self.language_model = AutoModel.from_config(config.text_config)  # LlamaModel
        self.vision_context: VisionContext | None = None  # a vision hook's findings, for the next prefill
        self.post_init()

    def vision_features(self, pixel_values: torch.Tensor, context: VisionContext | None = None) -> torch.Tensor:
        """Projector input: the selected ViT blocks without CLS, (B, G*G, len(feature_layers) * C).

        With a `context` whose method `needs_attention`, it is filled with the attention weights, keys and queries of
        the block whose output is read first (the penultimate for LLaVA), or of the next block on that output when
        `context.block` is 1, and that output with its CLS token.
        """
        tower = self.vision_tower
        n_states = self.config.vision_config.num_hidden_layers + 1
        layers = [i % n_states for i in self.config.feature_layers]
        if not all(hasattr(tower, name) for name in ("embeddings", "pre_layrnorm", "encoder")):  # not CLIP
            if context is not None:
                raise StfBenchError("methods that read attention need a CLIP vision tower")
            out = tower(pixel_values, output_hidden_states=True, return_dict=True)
            return torch.cat([out.hidden_states[i][:, 1:] for i in layers], dim=-1)
        # CLIP's hidden states, stopping at the deepest block read: blocks above it (the last one for LLaVA's
        # penultimate-layer features) cannot change the output. Index 0 is the embedding output, i that of block i.
        hidden = tower.pre_layrnorm(tower.embeddings(pixel_values))  # (B, 1 + G*G, C)
        probe = _clip_attention if self.token_reduction is None else self.token_reduction.probe
        states = [hidden]
        for n, block in enumerate(tower.encoder.layers[:max(layers)], start=1):
            if context is not None and context.block == 0 and n == layers[0]:
                context.attentions, context.keys, context.queries = probe(block, hidden)
            hidden = block(hidden, None)
            states.append(hidden)
        if context is not None:
            context.hidden = states[layers[0]]
            if context.block == 1:
                if layers[0] >= len(tower.encoder.layers):
                    raise StfBenchError("the method reads the block after the one whose output is read; there is none")
                context.attentions, context.keys, context.queries = probe(
                    tower.encoder.layers[layers[0]], context.hidden)
        return torch.cat([states[i][:, 1:] for i in layers], dim=-1)

    def hooked_features(self, pixel_values: torch.Tensor, context: VisionContext) -> torch.Tensor:
        """Projector input (B, N, len(feature_layers) * C) for a method that declares `vision_hook = L`: CLIP up to
        block L on the batch, the method's `hook_vision` there, the later blocks image by image (the token count may
        differ per image); each image's n_b tokens first, then zeros up to N. Fills `context.counts` and, per image,
        `hidden` (the first block read, CLS first) and, with `needs_attention`, the attention the method asks for."""
        method, tower = self.token_method, self.vision_tower
        n_states = self.config.vision_config.num_hidden_layers + 1
        layers = [i % n_states for i in self.config.feature_layers]
        blocks, hook = tower.encoder.layers, method.vision_hook
        if min(layers) <= hook or hook < 1:
            raise StfBenchError(f"{method.name}: vision_hook={hook} must lie after block 0 and before the blocks the "
                                f"projector reads ({layers})")
        hidden = tower.pre_layrnorm(tower.embeddings(pixel_values))
        for block in blocks[:hook]:
            hidden = block(hidden, None)
        rows = method.hook_vision(hidden, context)
        n = self.config.grid ** 2
        context.counts = [row.shape[1] - 1 for row in rows]
        context.hidden, context.attentions, context.keys, context.queries = [], [], [], []
        features = hidden.new_zeros(len(rows), n, hidden.shape[-1] * len(layers))
        for b, row in enumerate(rows):
            states = {hook: row}
            for i in range(hook + 1, max(layers) + 1):
                states[i] = blocks[i - 1](states[i - 1], None)
            context.hidden.append(states[layers[0]])
            if method.needs_attention:
                at = layers[0] + context.block  # the block whose attention is read, 1-based
                if at > len(blocks):
                    raise StfBenchError("the method reads the block after the one whose output is read; there is none")
                weights, keys, queries = _clip_attention(blocks[at - 1], states[at - 1])
                context.attentions.append(weights)
                context.keys.append(keys)
                context.queries.append(queries)
            features[b, :context.counts[b]] = torch.cat([states[i][0, 1:] for i in layers], dim=-1)
        return features

    def visual_tokens(self, pixel_values: torch.Tensor, question_ids: list[torch.Tensor] | None = None,
                      image_sizes: torch.Tensor | None = None) -> torch.Tensor:
        """What the LLM sees: (B, num_visual_tokens, H). `question_ids` (one per image) and `image_sizes` ((B, 2)
        original width, height) reach a method that declares `reads_question`. A method with a `vision_hook` leaves
        its findings in `self.vision_context` for the prefill that follows (per-image counts: `context.counts`)."""
        dtype = self.vision_tower.get_input_embeddings().weight.dtype
        method = self.token_method
        if method is not None and method.vision_hook is not None:
            context = VisionContext(grid=self.config.grid, block=method.attention_block)
            features = self.hooked_features(pixel_values.to(dtype), context)
            method.vision_output(context)
            self.vision_context = context
            return self.multi_modal_projector(features)
        if method is None or method.acts_on != "vision":
            return self.multi_modal_projector(self.vision_features(pixel_values.to(dtype)))
        context = VisionContext(grid=self.config.grid, block=method.attention_block)
        features = self.vision_features(pixel_values.to(dtype), context if method.needs_attention else None)
        if getattr(method, "reads_question", False):
            self._question_context(context, pixel_values.shape[0], question_ids, image_sizes)
        if not getattr(method, "after_projector", False):
            return self.multi_modal_projector(self.token_reduction(features, context))  # (B, N', C) -> (B, N', H)
        context.features, context.projector = features, self.multi_modal_projector
        return self.token_reduction(self.multi_modal_projector(features), context)  # (B, N, H) -> (B, N', H)

    def _question_context(self, context: VisionContext, n_images: int, question_ids: list[torch.Tensor] | None,
                          image_sizes: torch.Tensor | None) -> None:
        """Fill the question's ids and embeddings (LLM embedding table) and each image's padding patches."""
        if question_ids is None:
            question_ids = [torch.zeros(0, dtype=torch.long)] * n_images
        if len(question_ids) != n_images:
            raise StfBenchError(f"{self.token_method.name} reads one question per image; got {len(question_ids)} "
                                f"questions for {n_images} images (one image per prompt)")
        table = self.get_input_embeddings()
        context.question_ids = [ids.to(table.weight.device) for ids in question_ids]
        context.question_embeds = [table(ids) for ids in context.question_ids]
        context.padding = [[] for _ in range(n_images)]
        if image_sizes is not None and self.config.image_aspect_ratio == "pad":
            vision = self.config.vision_config
            context.padding = [padding_patches(int(w), int(h), vision.image_size, vision.patch_size)
                               for w, h in image_sizes.tolist()]

    def get_image_features(self, pixel_values: torch.Tensor, *args, question_ids: torch.Tensor | None = None,
                           image_sizes: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """transformers' hook name for `visual_tokens` (generate passes the arguments it names from its own)."""
        return self.visual_tokens(pixel_values, _question_ids(question_ids), image_sizes)

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
        question_ids, image_sizes = _question_ids(kwargs.pop("question_ids", None)), kwargs.pop("image_sizes", None)
        for unused in ("vision_feature_layer", "vision_feature_select_strategy"):
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
            image_features = self.visual_tokens(pixel_values, question_ids, image_sizes) \
                if pixel_values is not None else encoded  # (B_img, N, H)
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
        method = self.token_method
        if method is not None and method.acts_on == "llm":  # the method runs the backbone
            visual_per_row = 0 if image_features is None else \
                image_features.shape[0] * image_features.shape[1] // inputs_embeds.shape[0]
            image = image_mask if image_features is not None else None
            extra = {}
            if method.vision_hook is not None and image_features is not None:  # what its vision stage found
                if self.vision_context is None or len(self.vision_context.counts) != image_features.shape[0]:
                    raise StfBenchError(f"{method.name} reads what its vision stage found: pass pixel_values (or "
                                        f"features just made by get_image_features), not cached visual tokens")
                extra, self.vision_context = {"vision": self.vision_context}, None
            if past_key_values is not None and getattr(method, "prunes_kv_cache", False):  # prefill once, decode
                hidden = method.forward_llm_cached(self.language_model, inputs_embeds, attention_mask, image,
                                                   visual_per_row, past_key_values, **extra)
                return compat.llava_model_output(last_hidden_state=hidden, cache_obj=past_key_values,
                                                 hidden_states=None, attentions=None, image_features=image_features)
            hidden = method.forward_llm(self.language_model, inputs_embeds, attention_mask, image, visual_per_row,
                                        **extra)
            return compat.llava_model_output(last_hidden_state=hidden, cache_obj=None, hidden_states=None,
                                             attentions=None, image_features=image_features)
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


def _question_ids(padded: torch.Tensor | None) -> list[torch.Tensor] | None:
    """The processor's `question_ids` (B, T), padded with -1, as one unpadded row per image."""
    if padded is None:
        return None
    return [row[row >= 0] for row in padded]


def _with_question_ids(function) -> inspect.Signature:
    """`function`'s signature with a keyword-only `question_ids` before its `**kwargs`."""
    params = list(inspect.signature(function).parameters.values())
    extra = inspect.Parameter("question_ids", inspect.Parameter.KEYWORD_ONLY, default=None)
    tail = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    return inspect.Signature([p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD] + [extra] + tail)


class StfLlavaForConditionalGeneration(LlavaForConditionalGeneration):
    """The whole family: every registered projector (LLaVA-1.5's MLP, AvgPool, TokenConcat, Q-Former, MBTF, STF,
    MBTF+STF, ...) by `config.projector_type`, and optionally a training-free `config.method` on top."""

    config_class = StfLlavaConfig

    def __init__(self, config: StfLlavaConfig):
        LlavaPreTrainedModel.__init__(self, config)
        self.model = StfLlavaModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()
        self.generation_config = self.default_generation_config()

    def forward(self, *args, question_ids: torch.Tensor | None = None, **kwargs):
        """LlavaForConditionalGeneration's forward; `question_ids` (the processor's `question_inputs`) is named so
        that generate accepts it and hands it, with `image_sizes`, to `get_image_features`."""
        if question_ids is not None:
            kwargs["question_ids"] = question_ids
        return super().forward(*args, **kwargs)

    forward.__signature__ = _with_question_ids(LlavaForConditionalGeneration.forward)  # what generate inspects

    def default_generation_config(self) -> GenerationConfig:
        """transformers' generation defaults for this config, without the KV cache when a method recomputes its prefill
        at every step. `load_model` keeps these rather than a checkpoint's generation_config.json."""
        generation = GenerationConfig.from_model_config(self.config)
        if not all(getattr(m, "uses_kv_cache", True) for m in self.config.methods()):
            generation.use_cache = False
        return generation

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


