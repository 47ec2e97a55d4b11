"""The latency and `prefill` FLOPs requests give a method that reads the question the request's own question."""

from __future__ import annotations

import pytest
import torch

from stf_bench.methods.mmtok import MMTok
from stf_bench.models import load_model
from stf_bench.profile.flops import count_prefill
from stf_bench.profile.latency import Subject, first_token
from stf_bench.profile.prompts import question_inputs, vqav2_requests


@pytest.fixture()
def seen_questions(monkeypatch) -> list[list[torch.Tensor]]:
    """The `question_ids` of every `VisionContext` MMTok's `reduce` receives."""
    seen: list[list[torch.Tensor]] = []
    reduce = MMTok.reduce

    def recording(self, features, ctx):
        seen.append([ids.detach().to("cpu") if ids.device.type != "meta" else ids for ids in ctx.question_ids])
        return reduce(self, features, ctx)

    monkeypatch.setattr(MMTok, "reduce", recording)
    return seen


def _expected(processor, model, requests) -> list[list[int]]:
    """Each request's question ids, as an evaluation's processor call makes them (none empty)."""
    padded = question_inputs(processor, model, requests)["question_ids"]
    rows = [[int(i) for i in row if i >= 0] for row in padded]
    assert all(rows), "the VQAv2 sample questions have keywords"
    return rows


def test_latency_gives_a_question_reading_method_each_requests_question(seen_questions):
    requests, _ = vqav2_requests(2)
    model, processor = load_model("llava-tiny", method="mmtok", **{"method.tokens": 16})
    processor.tokenizer.padding_side = "left"
    subject = Subject("mmtok", model, processor, requests)
    first_token(model, subject.preprocess(torch.device("cpu")))
    assert [[int(i) for i in ids] for ids in seen_questions[-1]] == _expected(processor, model, requests)


def test_prefill_flops_give_a_question_reading_method_the_requests_question(seen_questions):
    requests, _ = vqav2_requests(1)
    model, processor = load_model("llava-tiny", random_weights=True, device="meta", method="mmtok")
    ids = processor(images=[requests[0].image], text=[requests[0].prompt], return_tensors="pt")["input_ids"]
    flops = count_prefill(model, ids, question_inputs(processor, model, requests))
    assert flops["llm"] > 0
    (got,) = seen_questions[-1]
    assert got.shape == (len(_expected(processor, model, requests)[0]),)  # on meta: the count of the question's ids


def test_other_methods_get_no_question_inputs():
    requests, _ = vqav2_requests(1)
    model, processor = load_model("llava-tiny", random_weights=True, device="meta", method="visionzip")
    assert question_inputs(processor, model, requests) == {}
