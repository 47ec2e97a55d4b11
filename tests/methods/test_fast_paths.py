"""Fast generation paths are gated by what the methods declare, and where allowed they answer as `generate` does.

Every registered method runs on a tiny model both ways (fast paths on, and `fast_paths=false`: transformers'
`generate`, no visual-token cache) and must give identical answers; a method that reads the question or acts
inside the LLM never reaches the visual cache, the shared prefill or the lean decode.
"""

from __future__ import annotations

import pytest
from lmms_eval.api.instance import Instance
from PIL import Image

from stf_bench.adapter import lmms_model as adapter_mod
from stf_bench.adapter.lmms_model import StfBenchLmms
from stf_bench.methods import FastPaths, LlmMethod, Param, TokenMethod, list_methods, register
from stf_bench.models import load_model
from stf_bench.models.generation import greedy_generate


def _docs() -> list[dict]:
    images = [Image.new("RGB", (40 + 7 * i, 30 + 5 * i), (60 * i % 255, 120, 200 - 30 * i)) for i in range(3)]
    questions = ["What is this?", "Which colour?", "How many shapes are there?"]
    return [{"image": images[i // 2], "question": questions[i % 3]} for i in range(6)]  # two questions per image


def _requests(lm: StfBenchLmms) -> list[Instance]:
    lm.task_dict = {"t": {"test": _docs()}}
    out = []
    for i, doc in enumerate(lm.task_dict["t"]["test"]):
        gen = {"until": ["ASSISTANT:"], "max_new_tokens": 6, "temperature": 0}
        out.append(Instance("generate_until", (doc["question"], gen, lambda d: [d["image"]], i, "t", "test"), idx=0,
                            metadata={"task": "t", "doc_id": i, "repeats": 1}))
    return out


def _answers(model_args: dict, **adapter_args) -> tuple[list[str], StfBenchLmms]:
    lm = StfBenchLmms(preset="llava-tiny", device="cpu", dtype="float32", batch_size=3, **model_args, **adapter_args)
    lm.show_progress = False
    return lm.generate_until(_requests(lm)), lm


# Arguments that fit the 2-layer tiny LLM: FastV's default k=2 would leave no layer to prune (refused).
TINY_ARGS = {"fastv": {"method.k": 1}}


def _model_args(method) -> dict:
    if method.acts_on == "projector":
        return {"projector": method.name}
    return {"method": method.name, **TINY_ARGS.get(method.name, {})}


def _both_ways(method) -> None:
    fast, lm = _answers(_model_args(method))
    slow, _ = _answers(_model_args(method), fast_paths="false")
    assert fast == slow, f"{method.name}: fast paths changed the answers"
    assert any(fast), "the tiny model should answer something"
    assert lm.fast_paths == lm.model.config.fast_paths == method.fast_paths()


@pytest.mark.parametrize("name", [m.name for m in list_methods()])
def test_every_registered_method_answers_the_same_both_ways(name):
    from stf_bench.methods import get_method

    _both_ways(get_method(name))


def test_the_example_plugin_answers_the_same_both_ways(random_drop_plugin):
    _both_ways(random_drop_plugin)


class _ReadsQuestion(TokenMethod):
    """A fake query-aware method: keeps every token (so answers are checkable) but declares it reads the text."""

    name = "fake-query-aware"
    text_conditioned = True
    params = (Param("keep_all", True, bool),)

    def reduce(self, features, ctx):
        return features


class _InLlm(LlmMethod):
    name = "fake-in-llm"


class _InLlmReadsQuestion(LlmMethod):
    """Reads the question inside the LLM only (as FastV ranks by the last prompt token): the image's visual tokens do
    not depend on it, so they may be cached by image; the shared prefill and the lean decode stay off."""

    name = "fake-in-llm-query-aware"
    text_conditioned = True


@pytest.mark.parametrize("cls,paths", [(_ReadsQuestion, FastPaths(False, False, True)),
                                       (_InLlm, FastPaths(True, False, False)),
                                       (_InLlmReadsQuestion, FastPaths(True, False, False))])
def test_query_aware_and_in_llm_methods_take_generate(fresh_registry, monkeypatch, cls, paths):
    fresh_registry()
    register(cls)
    assert cls.fast_paths() == paths

    def refuse(*args, **kwargs):
        raise AssertionError("greedy_generate must not run for this method")

    monkeypatch.setattr(adapter_mod, "greedy_generate", refuse)
    answers, lm = _answers({"method": cls.name})
    assert lm.fast_paths == paths
    assert (lm.visual_cache is None) == (not paths.visual_cache)
    assert not lm._greedy_path({"temperature": 0})
    base, _ = _answers({}, fast_paths="false")
    assert answers == base  # both methods leave the tokens alone: generate() answers as the base model


def test_greedy_generate_refuses_a_model_whose_methods_forbid_it(fresh_registry):
    fresh_registry()
    register(_InLlm)
    model, processor = load_model("llava-tiny", method=_InLlm.name)
    with pytest.raises(ValueError, match="use model.generate"):
        greedy_generate(model, [[1, 2]], [[3]], [0], [2], eos_token_ids=[2])


def test_fast_paths_false_is_parsed_strictly():
    from stf_bench.errors import StfBenchError

    with pytest.raises(StfBenchError, match="fast_paths must be true or false"):
        StfBenchLmms(preset="llava-tiny", device="cpu", fast_paths="maybe")


class _PrunesWithoutPlan(LlmMethod):
    """Decodes from a pruned KV cache but says nothing of its decode steps: `generate` must drive them."""

    name = "fake-pruned-no-plan"
    prunes_kv_cache = True


def test_the_own_decode_loop_is_declared_by_the_method():
    from stf_bench.methods import get_method

    assert not _PrunesWithoutPlan.fast_paths().pruned_decode
    assert _InLlm.fast_paths().pruned_decode and _ReadsQuestion.fast_paths().pruned_decode  # nothing to forbid
    for method in list_methods():
        if getattr(method, "prunes_kv_cache", False):
            assert method.fast_paths().pruned_decode == method.plans_decode, method.name
    assert get_method("fastv").plans_decode
    assert (FastPaths() & _PrunesWithoutPlan.fast_paths()).pruned_decode is False


def test_a_method_that_plans_its_decoding_takes_its_own_loop_with_fast_paths_on_only(monkeypatch):
    from stf_bench.models import generation

    calls: list[int] = []
    real = generation.pruned_greedy_generate

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "pruned_greedy_generate", counted)
    own, lm = _answers({"method": "fastv", **TINY_ARGS["fastv"]})
    assert calls and lm.fast_paths.pruned_decode
    calls.clear()
    with_generate, lm = _answers({"method": "fastv", **TINY_ARGS["fastv"]}, fast_paths="false")
    assert not calls and not lm.fast_paths.pruned_decode
    assert own == with_generate
