"""What a compression method declares, so that nothing outside the registry tests its name.

A method is a class with declarations (`acts_on`, `text_conditioned`, `trainable`, `needs_attention`, `params`)
and, built for one model shape with its arguments, the numbers the rest of the code asks for: how many visual
tokens come out, how many the LLM sees at each layer (what FLOPs are computed from) and which fast generation
paths are safe. Three kinds:

- `ProjectorMethod` (`acts_on = "projector"`): trained, part of a checkpoint; builds the vision-to-LLM module and
  says how each checkpoint format names its weights.
- `TokenMethod` (`acts_on = "vision"`): training-free; selects or merges the vision tower's tokens before a
  token-wise projector (`reduce`), or, declaring `after_projector`, the projector's outputs; declaring
  `reads_question`, it also receives the question's token ids and embeddings and the images' pad-to-square padding
  (`VisionContext`).
- `LlmMethod` (`acts_on = "llm"`): changes the sequence inside the LLM; its `token_schedule` varies by layer.
  Declaring `vision_hook = L`, it also acts inside the vision tower: after CLIP block L (`hook_vision`, on the
  hidden states with CLS) and at the tower's output (`vision_output`), and then declares `varying_tokens` when the
  number of visual tokens differs per image (`tokens_out(n)` is then the most an image can give).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from stf_bench.args import parse_bool
from stf_bench.errors import StfBenchError

if TYPE_CHECKING:
    import torch
    from torch import nn

ACTS_ON = ("projector", "vision", "llm")


def linear_params(d_in: int, d_out: int) -> int:
    """Parameters of `nn.Linear(d_in, d_out)` (with its bias)."""
    return d_in * d_out + d_out


def mlp_params(d_in: int, d_hidden: int, d_out: int) -> int:
    """Parameters of Linear(d_in, d_hidden) - GELU - Linear(d_hidden, d_out) (`layers.mlp` and the LLaVA MLP)."""
    return linear_params(d_in, d_hidden) + linear_params(d_hidden, d_out)


def divisors(n: int) -> list[int]:
    """The divisors of n, ascending (the valid STF k for a grid, the valid E for k^2)."""
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class Param:
    """One argument of a method: its type, default, bounds, and (projectors) the config field that stores it."""

    name: str
    default: Any
    kind: type = int
    help: str = ""
    config_field: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None

    def parse(self, value: Any, method: str) -> Any:
        """`value` cast to the parameter's type and checked; a StfBenchError names the method, argument and range."""
        if value is None and self.default is None:
            return None
        try:
            if self.kind is bool:
                cast = parse_bool(value)
            elif self.kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            else:
                cast = self.kind(value)
        except (TypeError, ValueError):
            raise StfBenchError(f"{method}: {self.name}={value!r} is not of type {self.kind.__name__}; valid "
                                f"{self.describe()}") from None
        if self.choices is not None and cast not in self.choices:
            raise StfBenchError(f"{method}: {self.name}={cast!r} is not one of {list(self.choices)}")
        if self.minimum is not None and cast < self.minimum or self.maximum is not None and cast > self.maximum:
            raise StfBenchError(f"{method}: {self.name}={cast!r} is out of range; valid {self.describe()}")
        return cast

    def describe(self) -> str:
        """'k: int in [1, 31], default 2' — what `stf-bench methods` and error messages show."""
        bounds = ""
        if self.choices is not None:
            bounds = f" in {list(self.choices)}"
        elif self.minimum is not None or self.maximum is not None:
            low = "-inf" if self.minimum is None else f"{self.minimum:g}"
            high = "inf" if self.maximum is None else f"{self.maximum:g}"
            bounds = f" in [{low}, {high}]"
        return f"{self.name}: {self.kind.__name__}{bounds}, default {self.default!r}"

    def to_dict(self) -> dict:
        """JSON-ready declaration."""
        return {"name": self.name, "type": self.kind.__name__, "default": self.default, "help": self.help,
                "minimum": self.minimum, "maximum": self.maximum,
                "choices": None if self.choices is None else list(self.choices)}


@dataclass(frozen=True)
class ModelShape:
    """The model facts a method may depend on: patch grid side, vision blocks and width, LLM width and layers."""

    grid: int = 24
    vision_layers: int = 24
    vision_width: int = 1024
    llm_width: int = 4096
    llm_layers: int = 32

    @classmethod
    def of(cls, config) -> ModelShape:
        """The shape of an `StfLlavaConfig`."""
        vision, text = config.vision_config, config.text_config
        return cls(grid=vision.image_size // vision.patch_size, vision_layers=vision.num_hidden_layers,
                   vision_width=vision.hidden_size, llm_width=text.hidden_size, llm_layers=text.num_hidden_layers)


@dataclass(frozen=True)
class FastPaths:
    """Which of the adapter's fast generation paths a method (or a model's methods together) allows.

    - `visual_cache`: visual tokens cached by image content alone: only if the method does not read the question
      before the LLM (`reads_question`, or `text_conditioned` on a method that does not act in the LLM).
    - `shared_prefill`: `greedy_generate`, which prefills the prompt up to the image once for all questions about
      it and runs the question through a hand-built mask: only if the method neither reads the question nor
      changes the sequence inside the LLM.
    - `lean_decode`: decode steps that bypass `LlamaModel.forward`: only if the method does not act in the LLM.
    - `pruned_decode`: greedy decoding from an in-LLM method's pruned KV cache through our own loop
      (`generation.pruned_greedy_generate`) instead of transformers' `generate`: only if a method that
      `prunes_kv_cache` also `plans_decode` (methods that prune no cache leave it allowed).
    Everything else takes transformers' own `generate`.
    """

    visual_cache: bool = True
    shared_prefill: bool = True
    lean_decode: bool = True
    pruned_decode: bool = True

    def __and__(self, other: FastPaths) -> FastPaths:
        return FastPaths(self.visual_cache and other.visual_cache, self.shared_prefill and other.shared_prefill,
                         self.lean_decode and other.lean_decode, self.pruned_decode and other.pruned_decode)


@dataclass
class VisionContext:
    """What a `TokenMethod` may read besides the features: the patch grid side and, for methods that declare
    `needs_attention`, of the CLIP block whose output the projector reads (the penultimate for LLaVA): its attention
    weights (B, heads, 1+N, 1+N), its keys (B, heads, 1+N, head_dim) and its output (B, 1+N, C); index 0 is CLS.
    `block` (the method's `attention_block`): 1 to read instead the attention weights, keys and queries of the
    next block, run on that output (PruMerge+ reads CLIP's last block on the penultimate output)."""

    grid: int
    attentions: torch.Tensor | None = None
    keys: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    queries: torch.Tensor | None = None
    block: int = 0
    # Filled for a `TokenMethod` that declares `after_projector`: `features` are the projector's inputs (B, N, C) while
    # `reduce` receives its outputs (B, N, H); `projector` is the projector module.
    features: torch.Tensor | None = None
    projector: nn.Module | None = None
    # Filled for a `TokenMethod` that declares `reads_question`, one entry per image: the question's token ids (T_b,)
    # as the method's `question_words` made them (no BOS), their rows of the LLM's embedding table (T_b, H), and the
    # patch indices (row-major in the G x G grid) that are pad-to-square padding (`padding_patches`; empty when the
    # model does not pad to square or the image size is unknown).
    question_ids: list[torch.Tensor] | None = None
    question_embeds: list[torch.Tensor] | None = None
    padding: list[list[int]] | None = None
    # Filled for a method that declares `vision_hook` (its tokens may differ in number per image): `counts` holds each
    # image's visual tokens (the rest of its `tokens_out(n)` placeholders are padding), `attentions`, `keys`,
    # `queries` and `hidden` are lists with one (1, ...) tensor per image, and `notes` is what the method's
    # `vision_output` recorded for its LLM stage (one entry per image).
    counts: list[int] | None = None
    notes: list | None = None


@dataclass
class DecodePlan:
    """How an in-LLM method that `plans_decode` decodes from the KV cache its prefill left, per LLM layer i:
    `past_valid[i]` (B, S_i) bool, which of the S_i keys layer i cached are real tokens (S_i: that layer's cache
    length after the prefill), and `positions[i]` (B,) long, the position id of each row's first new token (the
    next ones follow it). New tokens see every real cached key and each other. Layers may share one tensor
    (FastV's unpruned layers): the decode loop then builds one mask or one rotary embedding for them."""

    past_valid: list[torch.Tensor]
    positions: list[torch.Tensor]


def padding_patches(width: int, height: int, image_size: int, patch_size: int) -> list[int]:
    """Patch indices (row-major, `image_size // patch_size` per side) lying wholly in the padding that LLaVA-1.5's
    pad-to-square (`image_aspect_ratio: pad`) adds around a `width` x `height` image; [] for a square image.

    The geometry of MMTok's `calculate_padding_patch_indices(..., include_overlap=False)` (Ironieser/MMTok @
    d1522cd, mmtok/llava/patch_llava.py): the long side is scaled to `image_size`, the short one rounded, the
    padding split evenly (the extra pixel after), and only patches entirely inside it counted."""
    side = image_size // patch_size
    if width == height:
        return []
    scaled = int(round(min(width, height) * image_size / max(width, height)))
    if scaled == image_size:
        return []
    before = (image_size - scaled) // 2
    after = image_size - scaled - before
    lines = list(range(before // patch_size)) + list(range(side - after // patch_size, side))
    if width > height:  # padding above and below: whole rows
        return [row * side + col for row in lines for col in range(side)]
    return [row * side + col for col in lines for row in range(side)]  # left and right: whole columns


class Method:
    """Base of every method; subclasses set the declarations and are registered with `@register`."""

    name: ClassVar[str]
    acts_on: ClassVar[str]
    text_conditioned: ClassVar[bool] = False
    trainable: ClassVar[bool] = False
    needs_attention: ClassVar[bool] = False
    attention_block: ClassVar[int] = 0  # 0: attention of the CLIP block read; 1: of the next one (VisionContext)
    vision_hook: ClassVar[int | None] = None  # CLIP block after which `hook_vision` runs (`LlmMethod` only)
    varying_tokens: ClassVar[bool] = False  # visual tokens differ in number per image; tokens_out(n) is the bound
    params: ClassVar[tuple[Param, ...]] = ()
    # The method's published settings, by the visual-token budget they are published for: {128: {arg: value}}. A
    # published row names one as `method.preset: 128` (baselines/tables.yaml); benchmarks/method_ttft.py times it.
    presets: ClassVar[dict[int, dict[str, Any]]] = {}
    summary: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()  # other spellings found in result files (`tokenconcat`, ...)
    source: ClassVar[str] = "built-in"  # set by the registry for a method found through an entry point

    def __init__(self, shape: ModelShape | None = None, **args: Any) -> None:
        self.shape = shape or ModelShape()
        self.args = self.resolve(args)
        self.check()

    @classmethod
    def resolve(cls, args: dict) -> dict:
        """Arguments with defaults filled and each value parsed; an unknown name is refused with the valid ones."""
        known = {p.name: p for p in cls.params}
        unknown = sorted(set(args) - set(known))
        if unknown:
            valid = "; ".join(p.describe() for p in cls.params) or "none"
            raise StfBenchError(f"method {cls.name!r} has no argument {unknown[0]!r}; valid: {valid}")
        return {name: p.parse(args[name], cls.name) if name in args else p.default for name, p in known.items()}

    @classmethod
    def defaults(cls) -> dict:
        """Every parameter's default."""
        return {p.name: p.default for p in cls.params}

    def check(self) -> None:
        """Refuse arguments that are impossible for `self.shape` (StfBenchError naming the valid values)."""

    def tokens_out(self, tokens_in: int) -> int:
        """Visual tokens after the method, for `tokens_in` before it."""
        return tokens_in

    def token_schedule(self, tokens_in: int) -> list[int]:
        """Visual tokens the LLM sees at each of its layers, given `tokens_in` entering it."""
        return [self.tokens_out(tokens_in)] * self.shape.llm_layers

    def observed_schedules(self) -> list[list[int]]:
        """With `varying_tokens`: the `token_schedule` of each image seen so far (FLOPs take their mean)."""
        return []

    def run_summary(self) -> dict | None:
        """What the method observed over a run, recorded with its results (PruMerge+: its adaptive counts)."""
        return None

    @classmethod
    def fast_paths(cls) -> FastPaths:
        """The fast paths this method's declarations allow (see `FastPaths`)."""
        in_llm = cls.acts_on == "llm"
        question = cls.text_conditioned or getattr(cls, "reads_question", False)
        # The visual tokens depend on the question only where the method reads it before the LLM: a vision-side
        # method that reads it, not an in-LLM one (FastV ranks inside the LLM; the image's tokens are its own).
        before_llm = getattr(cls, "reads_question", False) or (cls.text_conditioned and not in_llm)
        # a vision hook's findings (`VisionContext.notes`) reach the LLM stage with the image: not kept by the cache
        return FastPaths(visual_cache=not before_llm and cls.vision_hook is None,
                         shared_prefill=not question and not in_llm, lean_decode=not in_llm,
                         pruned_decode=not getattr(cls, "prunes_kv_cache", False) or getattr(cls, "plans_decode",
                                                                                             False))

    @classmethod
    def describe(cls) -> dict:
        """The declarations, JSON-ready (what `stf-bench methods` lists)."""
        return {"name": cls.name, "acts_on": cls.acts_on, "text_conditioned": cls.text_conditioned,
                "trainable": cls.trainable, "needs_attention": cls.needs_attention,
                "prunes_kv_cache": getattr(cls, "prunes_kv_cache", False),
                "plans_decode": getattr(cls, "plans_decode", False),
                "params": [p.to_dict() for p in cls.params], "aliases": list(cls.aliases), "summary": cls.summary,
                "source": cls.source, "reads_question": getattr(cls, "reads_question", False),
                "after_projector": getattr(cls, "after_projector", False), "vision_hook": cls.vision_hook,
                "varying_tokens": cls.varying_tokens,
                "presets": {str(n): dict(args) for n, args in cls.presets.items()}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.args.items())})"


class ProjectorMethod(Method):
    """A trained vision-to-LLM projector; the seven of the paper are `mlp2x_gelu` ... `mbtf+stf`.

    `checkpoint_keys`: for each checkpoint format it loads from, checkpoint key prefix -> key prefix inside the
    projector module (`"original"`: the original-LLaVA / LLaVA-STF layout, also their stage-1 `mm_projector.bin`).
    `token_wise`: maps each token alone (a `TokenMethod` may then drop or merge tokens before it).
    `components`: names of submodules counted apart in the `prefill` FLOPs convention.
    """

    acts_on = "projector"
    trainable = True
    token_wise: ClassVar[bool] = False
    components: ClassVar[tuple[str, ...]] = ()
    checkpoint_keys: ClassVar[dict[str, dict[str, str]]] = {}

    def build(self) -> nn.Module:
        """The projector module: (B, N, len(feature_layers) * C) -> (B, tokens_out(N), H)."""
        raise NotImplementedError

    def feature_layers(self, default_layer: int) -> list[int]:
        """ViT hidden-state indices the projector reads, concatenated on channels in this order."""
        return [default_layer]

    def param_count(self) -> int:
        """Parameters of the module `build()` makes. This default builds it on `meta` (torch, nothing allocated);
        the built-ins count from their widths instead, so that `stf-bench models` needs no torch."""
        import torch

        with torch.device("meta"):
            return sum(p.numel() for p in self.build().parameters())

    @classmethod
    def config_from_checkpoint(cls, fmt: str, state: dict, vision_width: int) -> dict:
        """Config fields (the `config_field` of its params) read off a checkpoint's tensor shapes."""
        return {}

    @classmethod
    def from_config(cls, config) -> ProjectorMethod:
        """The projector an `StfLlavaConfig` describes, its arguments read from the config fields."""
        args = {p.name: getattr(config, p.config_field) for p in cls.params if p.config_field}
        return cls(ModelShape.of(config), **args)


class TokenMethod(Method):
    """A training-free method that selects or merges visual tokens between the vision tower and the projector."""

    acts_on = "vision"
    after_projector: ClassVar[bool] = False  # reduce the projector's outputs (ctx.features: its inputs)
    reads_question: ClassVar[bool] = False  # receive the question and the images' padding (VisionContext)

    def reduce(self, features: torch.Tensor, ctx: VisionContext) -> torch.Tensor:
        """(B, N, C) vision features -> (B, tokens_out(N), C) (C: the LLM width when `after_projector`)."""
        raise NotImplementedError

    @classmethod
    def question_words(cls, question: str) -> list[str]:
        """For a method that `reads_question`: the pieces of the user's question (the text after the image tag,
        before the assistant's turn) that are tokenized one by one, without BOS, into `VisionContext.question_ids`.
        Default: the whole question as one piece."""
        return [question]


class LlmMethod(Method):
    """A method that changes the visual part of the sequence inside the LLM (its schedule varies by layer).

    `forward_llm` replaces the backbone's forward: (B, T, H) embeddings -> (B, T', H) last hidden state.
    `forward_llm` keeps no KV cache, so generation recomputes the prompt at every step (`uses_kv_cache = False`:
    the model's generation config says `use_cache=False`).

    `prunes_kv_cache = True` declares the cached kind: `forward_llm_cached` prefills once with the method's pruning
    into a KV cache, and decoding continues from that pruned cache (one new token per step, not the whole prompt).
    The model takes it when `generate` is asked for a cache (`use_cache=True`; the evaluation adapter always asks,
    except with beam search); plain `generate()` still recomputes through `forward_llm`.

    `plans_decode = True` (with `prunes_kv_cache`) declares that after the prefill `decode_plan` tells, layer by
    layer, which cached keys a new token sees and its position id: greedy answers then decode through
    `generation.pruned_greedy_generate`, the base model's loop (no `generate` per step, finished rows leave the
    batch), instead of `generate` calling `forward_llm_cached` per step. The tokens must be the same (a test per
    method: tests/methods/test_pruned_decode.py).
    """

    acts_on = "llm"
    uses_kv_cache: ClassVar[bool] = False
    prunes_kv_cache: ClassVar[bool] = False
    plans_decode: ClassVar[bool] = False

    def forward_llm(self, llm: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                    image_mask: torch.Tensor | None, visual_per_row: int) -> torch.Tensor:
        """The backbone on `embeds` with the method applied; the default leaves the sequence alone."""
        return llm(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False).last_hidden_state

    def forward_llm_cached(self, llm: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                           image_mask: torch.Tensor | None, visual_per_row: int, cache: Any) -> torch.Tensor:
        """With `prunes_kv_cache`: the backbone's last hidden state for `embeds` (B, q, H), reading and filling the
        KV cache `cache` (a transformers `Cache`). Empty cache (prefill): the method prunes and stores only what it
        keeps, layer by layer. Filled cache (decoding): `embeds` are the new tokens, `attention_mask` (B, past + q)
        covers every position of the unpruned sequence (positions keep their original numbers)."""
        raise NotImplementedError(f"{self.name} declares prunes_kv_cache but has no forward_llm_cached")

    def decode_plan(self, cache: Any, attention_mask: torch.Tensor | None) -> DecodePlan:
        """With `plans_decode`: after `forward_llm_cached`'s prefill filled `cache` from a prompt whose real tokens
        `attention_mask` (B, T) marks (None: all), what its decode steps do at each layer (`DecodePlan`), as its
        own `forward_llm_cached` would decode them."""
        raise NotImplementedError(f"{self.name} declares plans_decode but has no decode_plan")

    def hook_vision(self, hidden: torch.Tensor, ctx: VisionContext) -> list[torch.Tensor]:
        """With `vision_hook = L`: CLIP block L's output (B, 1 + N, C), CLS first -> one (1, 1 + n_b, C) tensor per
        image, which CLIP's later blocks then run on image by image (n_b may differ per image with `varying_tokens`)."""
        return [row[None] for row in hidden]

    def vision_output(self, ctx: VisionContext) -> None:
        """With `vision_hook`: read the tower's output stage (`ctx`: per-image hidden states and, with
        `needs_attention`, the attention of the block `attention_block` names) and record in `ctx.notes` what the
        LLM stage needs; `forward_llm` and `forward_llm_cached` then receive `vision=ctx` with the prefill."""
