"""Every place stf-bench leans on a library's internals, gathered here; nothing else touches them.

Each piece names the upstream behaviour it depends on. `tests/test_compat.py` checks every one of them against
the installed versions and fails naming the library and its version when one changes, so a registry release that
breaks an assumption shows up as one clear test failure (run `STF_BENCH_LATEST=1 bash scripts/install.sh test`).
Imports of the heavy libraries stay inside the functions: `import stf_bench.compat` is cheap.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any


def package_version(name: str) -> str | None:
    """The installed version of distribution `name`, or None when it is not installed: what the results store and
    the latency report record, and what `library` names."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def library(name: str) -> str:
    """'name version', for messages that say which release broke an assumption."""
    return f"{name} {package_version(name)}"


# ---------------------------------------------------------------- transformers
# 1. The KV-cache keyword. transformers 5.24 renamed `past_key_values` to `cache` in every forward (and in the output
#    dataclasses); the old name is deprecated until 5.40. We pass whichever name LlamaModel.forward declares.
# 2. LlavaModelOutputWithPast's fields: <= 5.23 has `image_hidden_states`, 5.24 has `image_outputs` (an output
#    whose `pooler_output` holds the projected image features) and a deprecated `image_hidden_states` property.
# 3. The cache layers (`transformers.cache_utils`): `Cache(layers=[...])`, `DynamicLayer` with `keys`, `values`,
#    `is_initialized`, `update(k, v)` and `batch_select_indices`; `generation.ReservedLayer` subclasses it.
# 10. Hub kernels. transformers 5.25 kernelizes every model `from_pretrained` loads (`use_kernels` defaults to True
#    and 5.25 requires the `kernels` package; 5.24 defaulted to False): layers' forwards may be replaced by code
#    fetched from the hub, and `kernelize` refuses the `meta` device (`ValueError: Unsupported device type 'meta'`).
#    stf-bench passes `use_kernels=False` (5.24's default, accepted by both): the model it evaluates and counts is
#    the one its own code defines, on every device, offline, and no code comes from the hub.


@cache
def cache_kwarg() -> str:
    """Name of the KV-cache keyword of the Llama backbone's and decoder layers' forward: 'cache' or 'past_key_values'."""
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaModel

    names = [p for p in ("cache", "past_key_values") if p in inspect.signature(LlamaModel.forward).parameters]
    layer_names = inspect.signature(LlamaDecoderLayer.forward).parameters
    if not names or names[0] not in layer_names:
        raise RuntimeError(f"{library('transformers')}: LlamaModel.forward / LlamaDecoderLayer.forward take neither "
                           f"'cache' nor 'past_key_values'; update stf_bench/compat.py")
    return names[0]


def cache_kw(cache_obj: Any) -> dict[str, Any]:
    """`{cache_kwarg(): cache_obj}`, to pass a KV cache to any forward of the family."""
    return {cache_kwarg(): cache_obj}


def pop_cache(kwargs: dict, past_key_values: Any = None) -> Any:
    """The KV cache a forward was handed under either name (the caller may be older or newer transformers code)."""
    given = kwargs.pop("cache", None)
    return given if given is not None else past_key_values


def output_cache(outputs: Any) -> Any:
    """The KV cache of a model output, under either field name."""
    found = getattr(outputs, "cache", None)
    return found if found is not None else getattr(outputs, "past_key_values", None)


def llava_model_output(*, last_hidden_state, cache_obj, hidden_states, attentions, image_features):
    """A `LlavaModelOutputWithPast` built only with the fields this transformers release declares."""
    from dataclasses import fields

    from transformers.models.llava.modeling_llava import LlavaModelOutputWithPast

    declared = {f.name for f in fields(LlavaModelOutputWithPast)}
    values: dict[str, Any] = {"last_hidden_state": last_hidden_state, "hidden_states": hidden_states,
                              "attentions": attentions}
    values["cache" if "cache" in declared else "past_key_values"] = cache_obj
    if "image_hidden_states" in declared:
        values["image_hidden_states"] = image_features
    elif "image_outputs" in declared and image_features is not None:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        values["image_outputs"] = BaseModelOutputWithPooling(pooler_output=image_features)
    return LlavaModelOutputWithPast(**{k: v for k, v in values.items() if k in declared})


def from_pretrained_kwargs() -> dict[str, Any]:
    """Keywords for every `PreTrainedModel.from_pretrained` stf-bench makes: no hub kernels (10)."""
    return {"use_kernels": False}


def cache_classes():
    """(Cache, DynamicLayer) from transformers.cache_utils: the layered KV cache that greedy decoding fills."""
    from transformers.cache_utils import Cache, DynamicLayer

    return Cache, DynamicLayer


# ---------------------------------------------------------------- lmms-eval 0.7.3
# 4. `lmms_eval.evaluator.simple_evaluate` calls the module-level `_enable_reentrant_filelocks()`, which patches
#    `filelock._api.FileLockMeta` so that nested `load_dataset` calls cannot deadlock. filelock >= 4.3 has no
#    `filelock._api`, and the call then fails for every model, so pyproject pins filelock below 4.3 (lmms-eval's
#    own CLI must work for any model, not only ours). stf-bench's own runs still skip that process-wide patch of
#    filelock's metaclass, which they do not need: stf-bench never nests `load_dataset` (every task it builds
#    reads local parquet files in one call; GQA's image join is done by our own process_docs). The evaluator's
#    name is pointed at a no-op for the duration of a run (`lmms_evaluator_patched`), and for good once our
#    adapter is built inside lmms-eval's own CLI (`drop_lmms_filelock_patch`), which builds the model before it
#    makes that call; so stf-bench keeps working if the pin is lifted before lmms-eval stops importing `_api`.
# 5. `simple_evaluate` looks up `get_task_dict` in its own module globals: pointing it at a prebuilt dict makes it
#    reuse the tasks `runner.load_tasks` loaded (and checked) instead of loading every dataset twice.
# 6. `lmms_eval.tasks.ocrbench.utils.OCRBench_score` is a module-global dict of per-category totals that
#    `ocrbench_aggregate_accuracy` adds to on every call (a second evaluation in one process doubles the score).
#    Shared by every thread too (lmms-eval 0.7.3 scores in 4 threads, `process_docs_parallel`): an aggregate runs
#    inside `fresh_ocrbench_totals`, which zeroes them and holds a lock until the block ends.


def _require(module: Any, name: str, lib: str) -> None:
    """Raise, naming `lib` and its version, when `module.name` (an internal we replace) no longer exists."""
    if not hasattr(module, name):
        raise RuntimeError(f"{library(lib)}: {module.__name__}.{name} no longer exists; update stf_bench/compat.py")


@contextlib.contextmanager
def _module_attr(module: Any, name: str, value: Any, lib: str) -> Iterator[None]:
    """Set `module.name` to `value` for the block; the attribute must exist (else the assumption broke)."""
    _require(module, name, lib)
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def _no_filelock_patch() -> None:
    """Stands in for lmms-eval's `_enable_reentrant_filelocks` (see 4 above): stf-bench never nests load_dataset."""


def drop_lmms_filelock_patch() -> None:
    """Point `lmms_eval.evaluator._enable_reentrant_filelocks` at the no-op for the rest of the process (4)."""
    import lmms_eval.evaluator as evaluator

    _require(evaluator, "_enable_reentrant_filelocks", "lmms-eval")
    evaluator._enable_reentrant_filelocks = _no_filelock_patch


@contextlib.contextmanager
def lmms_evaluator_patched(task_dict: dict | None = None) -> Iterator[None]:
    """Around `simple_evaluate`: no filelock patch (4), and, given `task_dict`, tasks already loaded (5)."""
    import lmms_eval.evaluator as evaluator

    with contextlib.ExitStack() as stack:
        stack.enter_context(_module_attr(evaluator, "_enable_reentrant_filelocks", _no_filelock_patch, "lmms-eval"))
        if task_dict is not None:
            stack.enter_context(_module_attr(evaluator, "get_task_dict", lambda *a, **k: task_dict, "lmms-eval"))
        yield


def reset_ocrbench_totals() -> None:
    """Zero lmms-eval's module-global OCRBench totals (6) before its aggregate adds to them."""
    from lmms_eval.tasks.ocrbench import utils as ocr

    totals = getattr(ocr, "OCRBench_score", None)
    if not isinstance(totals, dict):
        raise RuntimeError(f"{library('lmms-eval')}: lmms_eval.tasks.ocrbench.utils.OCRBench_score is not a dict of "
                           f"totals any more; update stf_bench/compat.py")
    for key in totals:
        totals[key] = 0


_OCRBENCH_TOTALS = threading.Lock()


@contextlib.contextmanager
def fresh_ocrbench_totals() -> Iterator[None]:
    """lmms-eval's OCRBench totals (6), zeroed and owned by this thread for the block: two aggregates in two
    threads cannot zero or add to each other's totals."""
    with _OCRBENCH_TOTALS:
        reset_ocrbench_totals()
        yield


# ---------------------------------------------------------------- datasets
# 7. `datasets.features.Image.decode_example(self, value, token_per_repo_id=None)` decodes every image cell; it is
#    wrapped so that a corrupt image becomes None (the adapter then skips and counts that row) instead of raising
#    while lmms-eval builds the task or on every access to the row.


@contextlib.contextmanager
def lenient_images() -> Iterator[None]:
    """Decode a corrupt dataset image as None instead of raising, for the duration of the block."""
    from datasets.features import Image as ImageFeature

    original = ImageFeature.decode_example
    if "token_per_repo_id" not in inspect.signature(original).parameters:
        raise RuntimeError(f"{library('datasets')}: Image.decode_example no longer takes token_per_repo_id; "
                           f"update stf_bench/compat.py")

    def decode(self, value, token_per_repo_id=None):
        try:
            return original(self, value, token_per_repo_id=token_per_repo_id)
        except Exception:  # the adapter reports the row as skipped: "image missing or unreadable"
            return None

    ImageFeature.decode_example = decode
    try:
        yield
    finally:
        ImageFeature.decode_example = original


# ---------------------------------------------------------------- calflops 0.3.2
# 8. calflops counts a function by replacing it with `pytorch_ops.wrapFunc(fn, formula, old_functions,
#    module_flop_count, module_mac_count)`, the three being module globals of `calflops.calculate_pipline`; we add
#    `F.scaled_dot_product_attention` and `torch.bmm`, which it does not count.
# 9. `CalFlopsPipline.end_flops_calculate()` undoes its patches only when `pipline_started` and `func_patched` are
#    set; if `start_flops_calculate()` failed halfway they are not, and `F.linear` would stay patched.


@contextlib.contextmanager
def calflops_counting(root: Any, extra: dict[tuple[Any, str], Any]) -> Iterator[None]:
    """calflops' hooks on `root` with the functions of `extra` ({(owner, name): flops formula}) counted too;
    every patch is undone however the block ends."""
    import torch
    from calflops import calculate_pipline, pytorch_ops
    from calflops.calculate_pipline import CalFlopsPipline

    pipeline = CalFlopsPipline(root, include_backPropagation=False, compute_bp_factor=2.0)
    unpatched_linear = torch.nn.functional.linear
    tallies = (calculate_pipline.old_functions, calculate_pipline.module_flop_count, calculate_pipline.module_mac_count)
    originals = {key: getattr(*key) for key in extra}
    try:
        pipeline.start_flops_calculate()
        for (owner, name), formula in extra.items():
            setattr(owner, name, pytorch_ops.wrapFunc(originals[(owner, name)], formula, *tallies))
        yield
    finally:
        for (owner, name), fn in originals.items():
            setattr(owner, name, fn)
        if torch.nn.functional.linear is not unpatched_linear:  # undo the patches even if start failed halfway
            pipeline.pipline_started = pipeline.func_patched = True
        pipeline.end_flops_calculate()


# ---------------------------------------------------------------- transformers 5.25 + DeepSpeed: ZeRO-3 build
# 10. `stf-bench train --deepspeed zero3` builds the model inside `deepspeed.zero.Init` (no process holds it whole)
#     with the random weights a plain build draws for the same seed. transformers' own ZeRO-3 path
#     (`PreTrainedModel._from_config` under `is_deepspeed_zero3_enabled()`) wraps the towers' `from_config` in a
#     zero.Init with `no_init_weights`, which skips their constructors' draws (different weights); the context
#     `modeling_utils.set_zero3_state()` tells it a zero.Init is already open, so it opens none. Every
#     `PreTrainedModel.initialize_weights` call (the towers' and the model's `post_init`) then initializes the
#     already split submodules through `integrations.deepspeed.initialize_weights_zero3` (each module's weights
#     gathered in turn, the first process writes), in the order of the plain `initialize_weights`.


@contextlib.contextmanager
def zero3_partitioned_build(ds_config: dict | str) -> Iterator[None]:
    """A block in which models are built partitioned by `deepspeed.zero.Init(config_dict_or_path=ds_config)` with
    the weights a build outside it draws (see 10 above); `PreTrainedModel.initialize_weights` is restored however
    the block ends."""
    import deepspeed
    import transformers.integrations.deepspeed as hf_deepspeed
    import transformers.modeling_utils as modeling_utils
    from transformers import PreTrainedModel

    _require(modeling_utils, "set_zero3_state", "transformers")
    _require(hf_deepspeed, "initialize_weights_zero3", "transformers")
    _require(PreTrainedModel, "initialize_weights", "transformers")
    original = PreTrainedModel.initialize_weights

    def initialize_weights(model) -> None:
        if any(hasattr(p, "ds_id") for p in model.parameters()):
            hf_deepspeed.initialize_weights_zero3(model)
        else:
            original(model)

    PreTrainedModel.initialize_weights = initialize_weights
    try:
        with deepspeed.zero.Init(config_dict_or_path=ds_config), modeling_utils.set_zero3_state():
            yield
    finally:
        PreTrainedModel.initialize_weights = original
