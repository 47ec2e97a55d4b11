"""The lmms-eval model: per-request task lookup, real batching, stop strings, loglikelihood, clean(), bad rows."""

from __future__ import annotations

import pytest
import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from PIL import Image

from stf_bench import devices as devices_mod
from stf_bench.adapter.lmms_model import StfBenchLmms
from stf_bench.devices import check_fits
from stf_bench.errors import StfBenchError
from stf_bench.models.conversation import vicuna_v1


@pytest.fixture(scope="module")
def lm():
    model = StfBenchLmms(preset="stf-tiny", device="cpu", dtype="float32", batch_size=4)
    model.show_progress = False
    # two tasks whose docs differ at the same doc_id: a per-batch lookup would answer from the wrong task
    model.task_dict = {
        "red": {"test": [_doc(i, (200, 30 + 20 * i, 30), f"Which shape is number {i}?" + " Be brief." * (i % 3))
                         for i in range(6)]},
        "blue": {"val": [_doc(i, (20, 40, 150 + 15 * i), f"Count item {i}." * (1 + i % 2)) for i in range(6)]},
    }
    return model


def _doc(i: int, colour, question: str) -> dict:
    return {"image": Image.new("RGB", (30 + 9 * i, 20 + 4 * (i % 3)), colour), "question": question}


def _visual(doc):
    return [doc["image"]]


def _gen(task: str, doc_id: int, lm, until=("ASSISTANT:",), max_new=8, visual=_visual) -> Instance:
    split = "test" if task == "red" else "val"
    ctx = lm.task_dict[task][split][doc_id]["question"]
    gen = {"until": list(until), "max_new_tokens": max_new, "temperature": 0}
    return Instance("generate_until", (ctx, gen, visual, doc_id, task, split), idx=0,
                    metadata={"task": task, "doc_id": doc_id, "repeats": 1})


def _mixed(lm) -> list[Instance]:
    return [_gen("red" if i % 2 else "blue", i % 6, lm, max_new=5 + i % 4) for i in range(10)]


def test_batched_equals_unbatched_and_single_requests(lm):
    requests = _mixed(lm)
    lm.batch_size_per_gpu = 4
    batched = lm.generate_until(requests)
    lm.batch_size_per_gpu = 1
    unbatched = lm.generate_until(requests)
    assert batched == unbatched
    assert len(set(batched)) > 1, "the tiny model should not answer everything identically"


def test_batch_mixing_two_tasks_reads_each_request_doc(lm):
    seen = []

    def recording_visual(doc):
        seen.append(doc["question"])
        return [doc["image"]]

    requests = [_gen("red", 1, lm, visual=recording_visual), _gen("blue", 1, lm, visual=recording_visual)]
    lm.batch_size_per_gpu = 2
    together = lm.generate_until(requests)
    assert sorted(seen) == sorted([lm.task_dict["red"]["test"][1]["question"], lm.task_dict["blue"]["val"][1]["question"]])
    alone = [lm.generate_until([r])[0] for r in requests]
    assert together == alone


def _reference_generate(lm, doc: dict, max_new: int) -> str:
    """Plain transformers greedy generation for one request, no stop strings: what the adapter must reproduce."""
    inputs = lm.processor(images=[doc["image"]], text=[vicuna_v1(doc["question"])], return_tensors="pt")
    with torch.no_grad():
        out = lm.model.generate(**inputs, max_new_tokens=max_new, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    return lm.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_max_new_tokens_per_request(lm):
    lm.batch_size_per_gpu = 2
    short, long = lm.generate_until([_gen("red", 2, lm, until=(), max_new=3), _gen("red", 2, lm, until=(), max_new=12)])
    doc = lm.task_dict["red"]["test"][2]
    assert short == _reference_generate(lm, doc, 3)
    assert long == _reference_generate(lm, doc, 12) and long != short


def test_generation_sees_the_image(lm):
    """Regression: transformers' generate() pre-encodes images (mm_encoder_outputs); they were once dropped."""
    doc = lm.task_dict["red"]["test"][4]
    inputs = lm.processor(images=[doc["image"]], text=[vicuna_v1(doc["question"])], return_tensors="pt")
    with torch.no_grad():
        forward = lm.model(**inputs).logits[0, -1]
        blind = lm.model(**{**inputs, "pixel_values": torch.zeros_like(inputs["pixel_values"])}).logits[0, -1]
        out = lm.model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                                return_dict_in_generate=True, pad_token_id=lm.tokenizer.pad_token_id)
    assert (forward - blind).abs().max() > 1e-3, "the image must matter to the logits"
    torch.testing.assert_close(out.scores[0][0], forward, atol=1e-5, rtol=1e-5)


def test_every_until_string_cuts_at_the_earliest(lm):
    lm.batch_size_per_gpu = 1
    full = lm.generate_until([_gen("blue", 3, lm, until=(), max_new=12)])[0]
    assert len(full) >= 4
    stop_late, stop_early = full[3:5], full[1:3]
    cut = lm.generate_until([_gen("blue", 3, lm, until=(stop_late, stop_early), max_new=12)])[0]
    assert cut == full[: full.find(stop_early)].strip()


def test_generation_stops_at_the_token_that_completes_a_stop_string(lm, monkeypatch):
    """Not just cut afterwards: the row leaves the batch at that token, even far past the decoded window."""
    from stf_bench.adapter import lmms_model as adapter_mod

    generated = []

    def recording(*args, **kwargs):
        out = adapter_mod.greedy_generate.__wrapped_original__(*args, **kwargs)
        generated.extend(out)
        return out

    recording.__wrapped_original__ = adapter_mod.greedy_generate
    monkeypatch.setattr(adapter_mod, "greedy_generate", recording)
    lm.batch_size_per_gpu = 2
    full = lm.generate_until([_gen("red", 1, lm, until=(), max_new=48)])[0]
    # a short stop string that first appears late in the answer (past the few tokens the stop check decodes)
    stop, start = next((full[i:i + n], i) for n in (2, 3, 4) for i in range(20, len(full) - n)
                       if full[i:i + n] not in full[:i + n - 1] and "\ufffd" not in full[i:i + n])
    generated.clear()
    cut, other = lm.generate_until([_gen("red", 1, lm, until=(stop,), max_new=48),
                                    _gen("blue", 3, lm, until=(), max_new=48)])
    assert cut == full[:start].strip()
    ids = generated[0]
    text = lm.tokenizer.decode(ids, skip_special_tokens=True)
    assert stop in text and stop not in lm.tokenizer.decode(ids[:-1], skip_special_tokens=True)
    assert len(generated[1]) == 48  # the other row went on to its own limit


def test_gen_kwargs_are_not_mutated(lm):
    req = _gen("red", 0, lm)
    before = dict(req.args[1])
    lm.generate_until([req])
    assert req.args[1] == before


def _manual_loglikelihood(lm, doc, ctx, continuation):
    """Unbatched reference: full forward, sum of log-softmax over the continuation tokens."""
    prompt = vicuna_v1(ctx)
    n = len(lm.tokenizer(prompt + continuation)["input_ids"]) - len(lm.tokenizer(prompt)["input_ids"])
    inputs = lm.processor(images=[doc["image"]], text=[prompt + continuation], return_tensors="pt")
    with torch.no_grad():
        logits = lm.model(**inputs).logits[0].float()
    ids = inputs["input_ids"][0]
    logprobs = torch.log_softmax(logits[-n - 1:-1], -1)
    return logprobs.gather(-1, ids[-n:, None]).sum().item(), logprobs.argmax(-1)


def test_loglikelihood_sums_continuation_logprobs_and_flags_greedy(lm):
    doc = lm.task_dict["red"]["test"][0]
    _, greedy_ids = _manual_loglikelihood(lm, doc, doc["question"], " x")
    greedy_char = lm.tokenizer.decode(greedy_ids[:1])
    assert len(greedy_char) == 1 and greedy_char.isprintable(), "the seeded tiny model's first greedy token"
    other = "q" if greedy_char != "q" else "z"
    conts = [greedy_char, other, " two words"]
    requests = [Instance("loglikelihood", (doc["question"], c, _visual, 0, "red", "test"), idx=0,
                         metadata={"task": "red", "doc_id": 0, "repeats": 1}) for c in conts]
    lm.batch_size_per_gpu = 3
    batched = lm.loglikelihood(requests)
    lm.batch_size_per_gpu = 1
    single = lm.loglikelihood(requests)
    for (lp_b, g_b), (lp_s, g_s), cont in zip(batched, single, conts):
        reference, _ = _manual_loglikelihood(lm, doc, doc["question"], cont)
        assert lp_s == pytest.approx(reference, abs=1e-4)
        assert lp_b == pytest.approx(reference, abs=1e-4) and g_b == g_s
        assert lp_s < 0
    assert [g for _, g in single] == [True, False, False]
    assert single[2][0] < single[1][0], "three tokens cost more log-probability than one"


def test_loglikelihood_target_callable(lm):
    doc = lm.task_dict["blue"]["val"][2]
    req = Instance("loglikelihood", (doc["question"], lambda d: " " + d["question"][:3], _visual, 2, "blue", "val"),
                   idx=0, metadata={"task": "blue", "doc_id": 2, "repeats": 1})
    reference, _ = _manual_loglikelihood(lm, doc, doc["question"], " " + doc["question"][:3])
    assert lm.loglikelihood([req])[0][0] == pytest.approx(reference, abs=1e-4)


def test_multi_round_runs_until_doc_to_text_ends(lm):
    calls = []

    def doc_to_text(doc, previous_output, round_idx, previous_round_info):
        calls.append(round_idx)
        return None, "And then?", round_idx >= 2, previous_output, {"round": round_idx}

    first = _gen("red", 4, lm, max_new=6)
    ctx, gen, visual, doc_id, task, split = first.args
    req = Instance("generate_until_multi_round", (ctx, gen, visual, doc_to_text, doc_id, task, split), idx=0,
                   metadata={"task": task, "doc_id": doc_id, "repeats": 1})
    rounds = lm.generate_until_multi_round([req])[0]
    assert calls == [1, 2] and len(rounds) == 2
    assert rounds[0] == lm.generate_until([first])[0]


def test_clean_keeps_the_model_usable(lm):
    req = _gen("blue", 5, lm)
    before = lm.generate_until([req])
    lmms.clean(lm)  # the base class deletes every nn.Module attribute
    lm.clean()
    assert lm.generate_until([req]) == before


def test_corrupt_and_missing_images_are_skipped_not_crashed(lm):
    def corrupt(doc):
        raise OSError("cannot identify image file <_io.BytesIO object at 0x7f00deadbeef>")

    lm.skipped = {}
    good = _gen("red", 3, lm)
    answers = lm.generate_until([_gen("red", 1, lm, visual=corrupt), good, _gen("blue", 2, lm, visual=lambda d: [])])
    assert answers[0] == "" and answers[2] == "" and answers[1] == lm.generate_until([good])[0]
    assert lm.skipped == {("red", 1): "image missing or unreadable (OSError: cannot identify image file <_io.BytesIO object>)",
                          ("blue", 2): "row has no image"}
    lm.skipped = {}


def test_answers_are_cached_and_reused(lm, tmp_path):
    from stf_bench.adapter.resume import AnswerCache

    lm.answer_cache = AnswerCache(tmp_path)
    try:
        requests = _mixed(lm)[:4]
        first = lm.generate_until(requests)
        assert len(AnswerCache(tmp_path)) == 4
        lm.answer_cache = AnswerCache(tmp_path)
        assert lm.generate_until(requests) == first and lm.answer_cache.hits == 4
    finally:
        lm.answer_cache = None


def test_registered_through_the_entry_point():
    from lmms_eval.models import get_model

    from stf_bench.adapter.registration import manifests

    assert manifests()[0].model_id == "stf_bench"
    assert get_model("stf_bench") is StfBenchLmms


def test_create_from_arg_string_like_lmms_eval_cli():
    lm = StfBenchLmms.create_from_arg_string("preset=stf-tiny,k=2", {"batch_size": "3", "device": "cpu",
                                                                      "max_batch_size": None})
    assert lm.batch_size == 3 and lm.model.num_visual_tokens == 144


def test_unknown_model_is_a_clear_error():
    with pytest.raises(StfBenchError, match="unknown model preset"):
        StfBenchLmms(preset="stf-99b", device="cpu")


def test_model_that_does_not_fit_is_refused(monkeypatch):
    with pytest.raises(StfBenchError, match="needs 2.0 GiB.*1.0 GiB free"):
        check_fits(2 * 1024**3, torch.device("cpu"), "stf-7b", free=1024**3)
    monkeypatch.setattr(devices_mod, "available_memory", lambda device: 1000)
    with pytest.raises(StfBenchError, match=r"'stf-tiny' needs 1\.9 MiB .* 0\.0 MiB free"):
        StfBenchLmms(preset="stf-tiny", device="cpu")


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory, lm):
    folder = tmp_path_factory.mktemp("ckpt")
    lm.model.save_pretrained(folder)
    lm.processor.save_pretrained(folder)
    return folder


def test_checkpoint_size_is_read_from_its_headers(saved_checkpoint, lm, monkeypatch):
    n_params = sum(p.numel() for p in lm.model.parameters())
    assert devices_mod.weights_bytes(str(saved_checkpoint), {"dtype": torch.bfloat16}) == 2 * n_params
    monkeypatch.setattr(devices_mod, "available_memory", lambda device: 1000)
    with pytest.raises(StfBenchError, match="needs .* for its weights"):
        StfBenchLmms(pretrained=str(saved_checkpoint), device="cpu")


def test_checkpoint_that_does_not_match_its_config_is_a_clear_error(saved_checkpoint, tmp_path):
    import json
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(saved_checkpoint, broken)
    config = json.loads((broken / "config.json").read_text())
    config["text_config"]["intermediate_size"] *= 2
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(StfBenchError):
        StfBenchLmms(pretrained=str(broken), device="cpu")
