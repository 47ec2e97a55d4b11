"""Scoring rules and prompt pieces shared by several benchmarks (each benchmark's own rules live in its module).

Where lmms-eval already implements a rule, it is called, not rewritten: VQA accuracy (lmms-eval's textvqa
process_results with the EvalAI normaliser, = LLaVA's m4c evaluator), relaxed correctness (numbers within 5 %).
Written here from the official code: the VQA API's answer processing and leave-one-out accuracy (used by the
VQAv2 rule and, with VizWiz's contraction map, by the VizWiz rule). lmms-eval modules are imported lazily
(importing them is slow).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter

SHORT = "\nAnswer the question using a single word or phrase."  # LLaVA-1.5's short-answer suffix
MC = "\nAnswer with the option's letter from the given choices directly."  # LLaVA-1.5's multiple-choice suffix


def doc_to_visual(doc: dict) -> list:
    """The row's one image, as RGB (every stf_llava task: tasks/stf_llava/_stf_llava_template_yaml)."""
    return [doc["image"].convert("RGB")]


def is_none(value: object) -> bool:
    """LLaVA's is_none: None, NaN, or the strings 'nan' / 'none' (what empty TSV cells become)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and value.lower() in ("nan", "none")


def majority_answer(answers: list[str]) -> str:
    """The most frequent of the annotators' answers, stripped and lower-cased (a 10-annotator row's target)."""
    return Counter(a.strip().lower() for a in answers).most_common(1)[0][0]


# ---------------------------------------------------------------- VQA accuracy (10 annotators, leave one out)


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """VQA accuracy of one prediction: mean over the 10 leave-one-out subsets of min(1, matches / 3).

    Both sides go through the EvalAI normaliser; this is lmms-eval's textvqa rule (= LLaVA's m4c evaluator).
    """
    from lmms_eval.tasks.textvqa.utils import textvqa_process_results

    doc = {"answers": list(answers), "question_id": 0}
    return float(textvqa_process_results(doc, [prediction])["exact_match"])


# The VQA API's answer processing, written from GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py
# @ a013f0043c1e2cdc995922dfe257f7149aa9af06 (processPunctuation / processDigitArticle). The VizWiz VQA API reuses
# both with one change: its contraction map writes a curly apostrophe (see _VIZWIZ_CONTRACTIONS).
_API_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_API_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
_API_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")  # the API's pattern: its '(?!<=' is a lookahead, not a lookbehind
_API_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_API_ARTICLES = ("a", "an", "the")


def api_clean(text: str) -> str:
    """Newlines and tabs to spaces, then strip (both APIs, before anything else)."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def api_punctuation(text: str) -> str:
    """processPunctuation: each mark is deleted when it touches a space (or the text has a digit,digit comma), else
    replaced by a space; then periods not followed by a digit go. The API passes re.UNICODE (32) as the count of
    `sub`, so at most 32 periods are removed."""
    out = text
    glue = _API_DIGIT_COMMA.search(text) is not None
    for mark in _API_PUNCT:
        out = out.replace(mark, "" if glue or f"{mark} " in text or f" {mark}" in text else " ")
    return _API_PERIOD.sub("", out, count=32)


def api_digit_article(text: str, contractions: dict[str, str]) -> str:
    """processDigitArticle: lower-case, split on whitespace, number words to digits, drop articles, then restore
    missing apostrophes of contractions (the map given), words joined by single spaces."""
    words = [_API_NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(contractions.get(w, w) for w in words if w not in _API_ARTICLES)


def vqa_contractions() -> dict[str, str]:
    """The VQA API's contraction map (equal to lmms-eval's EvalAIAnswerProcessor.CONTRACTIONS)."""
    from lmms_eval.tasks._task_utils.vqa_eval_metric import EvalAIAnswerProcessor

    return dict(EvalAIAnswerProcessor.CONTRACTIONS)


def leave_one_out(prediction: str, references: list[str]) -> float:
    """Mean over the references, each left out in turn, of min(1, matches among the others / 3); 0 if none."""
    scores = [min(1.0, sum(r == prediction for j, r in enumerate(references) if j != i) / 3)
              for i in range(len(references))]
    return statistics.mean(scores) if scores else 0.0


def vqa_official_accuracy(prediction: str, references: list[str]) -> float:
    """The VQA API's rule (GT-Vision-Lab/VQA vqaEval.py @ a013f00): newlines/tabs to spaces and strip on both
    sides; punctuation and digit/article processing of references AND prediction only where the ten differ;
    then the mean over leave-one-out subsets of min(1, matches / 3)."""
    refs = [api_clean(r) for r in references]
    pred = api_clean(prediction)
    if len(set(refs)) > 1:
        contractions = vqa_contractions()
        refs = [api_digit_article(api_punctuation(r), contractions) for r in refs]
        pred = api_digit_article(api_punctuation(pred), contractions)
    return leave_one_out(pred, refs)


# ---------------------------------------------------------------- relaxed accuracy


def relaxed_correct(prediction: str, answer: str) -> bool:
    """ChartQA relaxed accuracy: numbers within 5% relative error, other answers exact (case-insensitive)."""
    from lmms_eval.tasks.chartqa.utils import relaxed_correctness

    return bool(relaxed_correctness(prediction, answer))
