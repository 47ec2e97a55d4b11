"""FLOPs of a family member under a named convention, counted with calflops on a `meta` twin (no memory, no GPU).

Conventions (docs/facts.md section 4):
- `paper`: what the paper's TFLOPs column is: the LLM backbone (no `lm_head`) over the visual tokens only, eager
  attention, batch 1. Vicuna-7B at 576 / 144 visual tokens gives 7.635 / 1.876 TFLOPs (printed 7.6 / 1.9).
- `prefill`: what one request costs up to its first token: vision tower, MBTF, window fusion + STF (or the other
  projector), the LLM over visual + text tokens of a real prompt, and `lm_head` for the last position only.

calflops 0.3.2 counts neither `F.scaled_dot_product_attention` nor `torch.bmm`; counting runs with eager attention
(where the LLM and CLIP attend with `torch.matmul`, which it does count) and with those two ops patched in as well,
so a projector built on `nn.MultiheadAttention` (Q-Former) is not undercounted. The `paper` figures never call them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version

import torch
from calflops.utils import get_module_flops
from torch import nn

from stf_bench.compat import calflops_counting
from stf_bench.errors import StfBenchError

CONVENTIONS = ("paper", "prefill")
COUNTER = f"calflops {version('calflops')} (+ sdpa, bmm)"


@dataclass
class FlopsReport:
    """TFLOPs of one model under one convention, with what was counted."""

    model: str
    convention: str
    visual_tokens: int
    tflops: float
    components: dict[str, float]
    text_tokens: int | None = None
    batch_size: int = 1
    attention: str = "eager"
    counter: str = COUNTER
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def _attention_flops(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args, **kwargs) -> tuple[int, int]:
    """Q K^T and A V of `F.scaled_dot_product_attention`: 2 L_q L_k (D + D_v) per batch x head."""
    batch_heads = query.numel() // (query.shape[-2] * query.shape[-1])
    macs = batch_heads * query.shape[-2] * key.shape[-2] * (query.shape[-1] + value.shape[-1])
    return 2 * macs, macs


def _bmm_flops(input: torch.Tensor, mat2: torch.Tensor, *args, **kwargs) -> tuple[int, int]:
    """(b, n, m) @ (b, m, p): 2 b n m p."""
    macs = input.numel() * mat2.shape[-1]
    return 2 * macs, macs


def count_flops(root: nn.Module, run: Callable[[], object], parts: dict[str, nn.Module]) -> dict[str, int]:
    """Run `run()` under calflops' hooks on `root` (SDPA and bmm counted too); FLOPs of each part's subtree."""
    extra = {(nn.functional, "scaled_dot_product_attention"): _attention_flops, (torch, "bmm"): _bmm_flops,
             (torch.Tensor, "bmm"): _bmm_flops}
    with calflops_counting(root, extra), torch.no_grad():
        run()
        return {name: int(get_module_flops(module)) for name, module in parts.items()}


def counting_twin(model: nn.Module) -> nn.Module:
    """A weightless copy of a (transformers) model on `meta`, eager attention everywhere: what every count runs on."""
    with torch.device("meta"):
        twin = type(model)(copy.deepcopy(model.config))
    twin.set_attn_implementation("eager")
    return twin.eval().requires_grad_(False)


def _meta_ones(*shape: int) -> torch.Tensor:
    return torch.ones(*shape, dtype=torch.long, device="meta")


def _llm_flops(llm: nn.Module, n: int) -> dict[str, int]:
    """FLOPs of the LLM backbone over n tokens, batch 1: in all, per layer, and of its final norm (all 0 for
    n = 0: a layer a method leaves no visual token, as SparseVLM's nominal schedule on a shallow LLM)."""
    layers = llm.layers[:llm.config.num_hidden_layers]
    if n == 0:
        return {"llm": 0, "norm": 0, **{f"layer.{i}": 0 for i in range(len(layers))}}
    embeds = torch.empty(1, n, llm.config.hidden_size, device="meta")
    parts = {"llm": llm, "norm": llm.norm, **{f"layer.{i}": layer for i, layer in enumerate(layers)}}
    return count_flops(llm, lambda: llm(inputs_embeds=embeds, attention_mask=_meta_ones(1, n), use_cache=False),
                       parts)


def count_paper(model: nn.Module) -> dict[str, int]:
    """FLOPs of the `paper` convention: the LLM backbone (no lm_head) over the visual tokens only, batch 1.

    Layer i runs over the method's `token_schedule[i]` visual tokens (FastV: its first k layers at the full count);
    the rest of the backbone (rotary embedding at the entering count, final norm at the last layer's count) as it
    runs. For a constant schedule this is one count of the backbone at that many tokens. A method whose count
    differs per image (`varying_tokens`) and has seen images (`observed_schedules`) gets the mean over those images
    of each one's count.
    """
    llm = counting_twin(model.model.language_model)
    schedules = _observed(model) or [_schedule(model)]
    by_count: dict[int, dict[str, int]] = {}
    totals = [_schedule_flops(llm, schedule, by_count) for schedule in schedules]
    return {"llm": totals[0] if len(totals) == 1 else sum(totals) / len(totals)}


def _schedule(model: nn.Module) -> list[int]:
    """The token schedule as the model's own method reports it: a method that measures its counts on the prompts
    its model ran (SparseVLM) gives the measured one; the config would build a fresh method that has seen none."""
    method = getattr(model.model, "token_method", None)
    if method is not None and method.acts_on == "llm":
        return method.token_schedule(model.config.num_visual_tokens)
    return model.config.token_schedule


def _observed(model: nn.Module) -> list[list[int]]:
    """The per-image schedules the model's training-free method has seen ([] for a fixed count)."""
    method = getattr(model.model, "token_method", None)
    return list(method.observed_schedules()) if method is not None and method.varying_tokens else []


def _schedule_flops(llm: nn.Module, schedule: list[int], by_count: dict[int, dict[str, int]]) -> int:
    """The backbone's FLOPs for one schedule; `by_count` keeps the counts at each token number already made."""
    for n in set(schedule) - set(by_count):
        by_count[n] = _llm_flops(llm, n)
    full = by_count[schedule[0]]
    if len(set(schedule)) == 1:
        return full["llm"]
    total = full["llm"] - full["norm"] + by_count[schedule[-1]]["norm"]
    for i, n in enumerate(schedule):
        total += by_count[n][f"layer.{i}"] - full[f"layer.{i}"]
    return total


def prefill_parts(model: nn.Module) -> dict[str, nn.Module]:
    """The components a prefill is split into: vision tower, projector pieces, LLM, lm_head."""
    projector = model.model.multi_modal_projector
    parts = {"vision_tower": model.model.vision_tower}
    for name in model.config.projector_method.components:  # what the projector declares is counted apart
        if isinstance(getattr(projector, name, None), nn.Module):
            parts[name] = getattr(projector, name)
    parts["projector"] = projector
    if isinstance(getattr(model.model, "token_reduction", None), nn.Module):  # a training-free vision method's work
        parts["method"] = model.model.token_reduction
    parts["llm"] = model.model.language_model
    parts["lm_head"] = model.lm_head
    return parts


def count_prefill(model: nn.Module, input_ids: torch.Tensor, question: dict | None = None) -> dict[str, int]:
    """FLOPs per component of one prefill of `input_ids` (B, T), one image per row, up to the first token's logits.

    `projector` is what the projector does besides MBTF / STF (the whole projector when it has neither).
    `method`: a training-free vision method's own work (the attention it reads and its `reduce`; the q/k projections
    it recomputes count in `vision_tower`, whose modules they are).
    `question`: the processor's `question_inputs` for a method that reads the question (kept on the CPU: the
    method's ids are looked up in the meta twin's embedding table).
    """
    method = getattr(model.model, "token_method", None)
    if method is not None and method.varying_tokens:
        raise StfBenchError(f"{method.name}: the prefill convention runs the model on `meta`, where a token count "
                            f"that depends on the image cannot be decided; use --convention paper, or time it with "
                            f"`stf-bench latency`, which reports each image's count")
    twin = counting_twin(model)
    size = twin.config.vision_config.image_size
    batch, length = input_ids.shape
    pixels = torch.empty(batch, 3, size, size, device="meta", dtype=twin.dtype)
    ids = input_ids.to("meta")

    def run() -> object:
        return twin(input_ids=ids, pixel_values=pixels, attention_mask=_meta_ones(batch, length), use_cache=False,
                    logits_to_keep=1, **(question or {}))

    parts = prefill_parts(twin)
    flops = count_flops(twin, run, parts)
    components = [name for name in parts if name not in ("vision_tower", "projector", "method", "llm", "lm_head")]
    flops["projector"] -= sum(flops[name] for name in components)
    if components:
        flops = {k: v for k, v in flops.items() if k != "projector" or v > 0}
    return flops


def _tera(flops: dict[str, int]) -> dict[str, float]:
    return {name: value / 1e12 for name, value in flops.items()}


def _model_details(model: nn.Module) -> dict:
    """The config fields a FLOPs figure depends on."""
    cfg, text = model.config, model.config.text_config
    projector = cfg.projector_method
    details = {"projector_type": projector.name, "llm_layers": text.num_hidden_layers, "llm_width": text.hidden_size}
    details.update({name: value for name, value in projector.args.items() if value is not None})
    method = cfg.token_method
    if method is not None:
        details.update(method=method.name, method_args=dict(method.args), acts_on=method.acts_on)
        schedule = _schedule(model)
        if len(set(schedule)) > 1:
            details["token_schedule"] = schedule
        seen = _observed(model)
        if seen:
            first = [s[0] for s in seen]
            details.update(visual_tokens_per_image=first, mean_visual_tokens=sum(first) / len(first),
                           mean_token_schedule=[sum(s[i] for s in seen) / len(seen) for i in range(len(seen[0]))],
                           flops_over="the mean of each image's count")
        elif method.varying_tokens:
            details["flops_over"] = ("the bound (no image seen): the count differs per image; a run records each "
                                     "image's count in its method summary")
    return details


def paper_report(model: nn.Module, name: str) -> FlopsReport:
    """The `paper` convention for one model (for a per-image count, the mean over the images it has seen)."""
    flops = count_paper(model)
    details = _model_details(model)
    tokens = round(details["mean_visual_tokens"]) if "mean_visual_tokens" in details else model.num_visual_tokens
    return FlopsReport(model=name, convention="paper", visual_tokens=tokens,
                       tflops=flops["llm"] / 1e12, components=_tera(flops), details=details)


def prefill_report(model: nn.Module, name: str, input_ids: torch.Tensor, prompt: str | None = None,
                   question: dict | None = None) -> FlopsReport:
    """The `prefill` convention for a tokenised prompt batch (B, T) (`question`: see `count_prefill`)."""
    flops = count_prefill(model, input_ids, question)
    batch, length = input_ids.shape
    details = _model_details(model)
    if prompt is not None:
        details["prompt"] = prompt
    return FlopsReport(model=name, convention="prefill", visual_tokens=model.num_visual_tokens,
                       tflops=sum(flops.values()) / 1e12, components=_tera(flops),
                       text_tokens=length - model.num_visual_tokens, batch_size=batch, details=details)
