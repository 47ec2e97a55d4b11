"""The `llava` protocol's task functions (what tasks/stf_llava/*.yaml point at): prompts, targets, per-row scores.

Prompts are the user text LLaVA-1.5's evaluation scripts build (model_vqa_loader / model_vqa_science /
model_vqa_mmbench with their question files); the adapter wraps them in the vicuna_v1 conversation and puts the
image first. Each process_results returns what the YAML's aggregations (stf_bench.eval.scoring) consume.
"""

from __future__ import annotations

import math
from collections import Counter

from stf_bench.eval import scoring

SHORT = "\nAnswer the question using a single word or phrase."
MC = "\nAnswer with the option's letter from the given choices directly."
MC_CN = "\n请直接回答选项字母。"
VIZWIZ = "\nWhen the provided information is insufficient, respond with 'Unanswerable'." + SHORT
CHARTQA = "\nAnswer the question with a single word."  # not in LLaVA's scripts: lmms-eval's prompt


def _is_none(value) -> bool:
    """LLaVA's is_none: None, NaN, or the strings 'nan' / 'none'."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.lower() in ("nan", "none")


def doc_to_visual(doc: dict) -> list:
    """The row's one image, as RGB."""
    return [doc["image"].convert("RGB")]


# ---------------------------------------------------------------- prompts


def gqa_doc_to_text(doc: dict) -> str:
    """GQA: question + short-answer suffix."""
    return doc["question"] + SHORT


def vqav2_doc_to_text(doc: dict) -> str:
    """VQAv2: question + short-answer suffix."""
    return doc["question"] + SHORT


def pope_doc_to_text(doc: dict) -> str:
    """POPE: question + short-answer suffix."""
    return doc["question"].strip() + SHORT


def vizwiz_doc_to_text(doc: dict) -> str:
    """VizWiz: question + the unanswerable instruction + short-answer suffix."""
    return doc["question"] + VIZWIZ


def textvqa_doc_to_text(doc: dict) -> str:
    """Question, the reference OCR tokens line (llava_textvqa_val_v051_ocr), short-answer suffix."""
    tokens = list(doc.get("ocr_tokens") or [])
    ocr = f"\nReference OCR token: {', '.join(tokens)}" if tokens else ""
    return f"{doc['question']}{ocr}{SHORT}"


def sqa_doc_to_text(doc: dict) -> str:
    """SQA-IMG as in llava_test_CQM-A: optional 'Context: <hint>', the question, 'A. ...' lines, MC suffix."""
    context = f"Context: {doc['hint']}\n" if doc.get("hint") else ""
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(scoring.SQA_OPTIONS, doc["choices"]))
    return f"{context}{doc['question']}\n{options}{MC}"


def _mmbench_text(doc: dict, suffix: str) -> str:
    """model_vqa_mmbench: '<hint>\\n' if any, question, '\\nX. option' up to the first missing one, suffix."""
    question = doc["question"]
    if not _is_none(doc.get("hint")):
        question = f"{doc['hint']}\n{question}"
    for letter in "ABCD":
        if _is_none(doc.get(letter)):
            break
        question += f"\n{letter}. {doc[letter]}"
    return question + suffix


def mmbench_en_doc_to_text(doc: dict) -> str:
    """MMBench-EN: hint, question, options, English MC suffix."""
    return _mmbench_text(doc, MC)


def mmbench_cn_doc_to_text(doc: dict) -> str:
    """MMBench-CN: hint, question, options, Chinese MC suffix."""
    return _mmbench_text(doc, MC_CN)


def ocrbench_doc_to_text(doc: dict) -> str:
    """OCRBench: the bare question (not in LLaVA's scripts; lmms-eval's prompt)."""
    return doc["question"].strip()


def chartqa_doc_to_text(doc: dict) -> str:
    """ChartQA: question + single-word suffix (not in LLaVA's scripts; lmms-eval's prompt)."""
    return doc["question"] + CHARTQA


# ---------------------------------------------------------------- targets (what a perfect answer is)


def target(benchmark: str, doc: dict) -> str:
    """The reference answer of a row: the letter for multiple choice, the majority answer for 10-annotator VQA."""
    if benchmark == "scienceqa_img":
        return scoring.SQA_OPTIONS[doc["answer"]]
    if benchmark in ("textvqa_val", "vizwiz_vqa_val"):
        return Counter(a.strip().lower() for a in doc["answers"]).most_common(1)[0][0]
    if benchmark == "vqav2_val":
        return doc["multiple_choice_answer"]
    if benchmark == "ocrbench":
        return doc["answer"][0]
    return doc["answer"]


def sqa_doc_to_target(doc: dict) -> str:
    """The answer letter."""
    return target("scienceqa_img", doc)


def textvqa_doc_to_target(doc: dict) -> str:
    """The majority annotator answer."""
    return target("textvqa_val", doc)


def vizwiz_doc_to_target(doc: dict) -> str:
    """The majority annotator answer."""
    return target("vizwiz_vqa_val", doc)


def vqav2_doc_to_target(doc: dict) -> str:
    """VQAv2's multiple_choice_answer (the majority answer)."""
    return target("vqav2_val", doc)


def ocrbench_doc_to_target(doc: dict) -> str:
    """The first reference answer."""
    return target("ocrbench", doc)


# ---------------------------------------------------------------- per-row scores


def gqa_process_results(doc: dict, results: list[str]) -> dict:
    """GQA exact match after LLaVA's normalisation."""
    return {"exact_match": float(scoring.gqa_correct(results[0], doc["answer"]))}


def sqa_process_results(doc: dict, results: list[str]) -> dict:
    """SQA: right if LLaVA's parser picks the answer's index."""
    return {"exact_match": float(scoring.sqa_parse(results[0], len(doc["choices"])) == doc["answer"])}


def textvqa_process_results(doc: dict, results: list[str]) -> dict:
    """TextVQA VQA accuracy."""
    return {"exact_match": scoring.textvqa_accuracy(results[0].strip(), doc)}


def vqav2_process_results(doc: dict, results: list[str]) -> dict:
    """VQAv2 VQA accuracy."""
    return {"exact_match": scoring.vqav2_accuracy(results[0].strip(), doc)}


def vizwiz_process_results(doc: dict, results: list[str]) -> dict:
    """VizWiz VQA accuracy."""
    return {"exact_match": scoring.vizwiz_accuracy(results[0].strip(), doc)}


def pope_process_results(doc: dict, results: list[str]) -> dict:
    """One item per row for the split-averaged F1 and accuracy, and one for its own split's F1."""
    prediction = scoring.pope_parse(results[0].strip())
    truth = doc["answer"].strip().lower()
    item = {"question_id": doc["question_id"], "category": doc["category"], "prediction": prediction,
            "ground_truth": truth, "score": float(prediction == truth)}
    out = {"pope_f1_avg": item, "pope_accuracy": item}
    if doc["category"] in scoring.POPE_SPLITS:
        out[f"pope_f1_{doc['category']}"] = item
    return out


def mmbench_process_results(doc: dict, results: list[str]) -> dict:
    """The row and its prediction, scored together with its circular copies at aggregation."""
    return {"circular_accuracy": scoring.mmbench_item(doc, results[0])}


def ocrbench_process_results(doc: dict, results: list[str]) -> dict:
    """OCRBench row score (0/1), summed into points at aggregation."""
    return {"ocrbench_points": {"question_type": doc["question_type"],
                                "score": scoring.ocrbench_score(results[0].strip(), doc)}}


def chartqa_process_results(doc: dict, results: list[str]) -> dict:
    """Relaxed accuracy overall and on the row's half (human-written or augmented questions)."""
    score = float(scoring.relaxed_correct(results[0].strip(), doc["answer"]))
    split = "relaxed_human_split" if doc["type"] == "human_test" else "relaxed_augmented_split"
    return {"relaxed_overall": score, split: score}
