"""Scoring rules: the paper's (LLaVA-1.5 official evaluation) and the fixes the lmms-eval protocol needs.

Where lmms-eval already implements a rule, it is called, not rewritten: VQA accuracy (textvqa process_results,
EvalAI normaliser), POPE precision/recall/F1, MMBench's circular evaluator (static method: no
judge model), OCRBench's per-row check, ChartQA's relaxed correctness. What LLaVA does differently is here:
the VQA API's and the VizWiz API's reference handling (VQAv2 / VizWiz val), POPE's lenient yes/no parsing and per-split F1 average, the SQA answer parser, GQA's normalisation, OCRBench
points without the module-global total. lmms-eval modules are imported lazily (importing them is slow).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import re
import statistics
import sys
import threading
from collections.abc import Callable, Iterable

from stf_bench.benchmarks import MMBENCH_COPY, MMBENCH_SYS_PROMPT
from stf_bench.compat import fresh_ocrbench_totals

POPE_SPLITS = ("adversarial", "popular", "random")
SQA_OPTIONS = ("A", "B", "C", "D", "E")


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


def _api_clean(text: str) -> str:
    """Newlines and tabs to spaces, then strip (both APIs, before anything else)."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def _api_punctuation(text: str) -> str:
    """processPunctuation: each mark is deleted when it touches a space (or the text has a digit,digit comma), else
    replaced by a space; then periods not followed by a digit go. The API passes re.UNICODE (32) as the count of
    `sub`, so at most 32 periods are removed."""
    out = text
    glue = _API_DIGIT_COMMA.search(text) is not None
    for mark in _API_PUNCT:
        out = out.replace(mark, "" if glue or f"{mark} " in text or f" {mark}" in text else " ")
    return _API_PERIOD.sub("", out, count=32)


def _api_digit_article(text: str, contractions: dict[str, str]) -> str:
    """processDigitArticle: lower-case, split on whitespace, number words to digits, drop articles, then restore
    missing apostrophes of contractions (the map given), words joined by single spaces."""
    words = [_API_NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(contractions.get(w, w) for w in words if w not in _API_ARTICLES)


def _vqa_contractions() -> dict[str, str]:
    """The VQA API's contraction map (equal to lmms-eval's EvalAIAnswerProcessor.CONTRACTIONS)."""
    from lmms_eval.tasks._task_utils.vqa_eval_metric import EvalAIAnswerProcessor

    return dict(EvalAIAnswerProcessor.CONTRACTIONS)


# In the VizWiz API's map, every apostrophe is U+2019 except in these eight values and these two keys (checked
# against the copy vendored in TRI-ML/vlm-evaluation, which writes a backtick where the API has U+2019).
_VIZWIZ_STRAIGHT_VALUES = frozenset({"aint", "arent", "cant", "couldve", "couldnt", "weve", "wheres", "whove"})
_VIZWIZ_STRAIGHT_KEYS = frozenset({"couldn'tve", "hadn'tve"})


@functools.cache
def _vizwiz_contractions() -> dict[str, str]:
    """The VizWiz API's contraction map: the VQA API's, with curly apostrophes (so 'dont' becomes 'don\u2019t')."""
    curly = "\u2019"
    return {(k if k in _VIZWIZ_STRAIGHT_KEYS else k.replace("'", curly)):
            (v if k in _VIZWIZ_STRAIGHT_VALUES else v.replace("'", curly))
            for k, v in _vqa_contractions().items()}


def _leave_one_out(prediction: str, references: list[str]) -> float:
    """Mean over the references, each left out in turn, of min(1, matches among the others / 3); 0 if none."""
    scores = [min(1.0, sum(r == prediction for j, r in enumerate(references) if j != i) / 3)
              for i in range(len(references))]
    return statistics.mean(scores) if scores else 0.0


def vqa_official_accuracy(prediction: str, references: list[str]) -> float:
    """The VQA API's rule (GT-Vision-Lab/VQA vqaEval.py @ a013f00): newlines/tabs to spaces and strip on both
    sides; punctuation and digit/article processing of references AND prediction only where the ten differ;
    then the mean over leave-one-out subsets of min(1, matches / 3)."""
    refs = [_api_clean(r) for r in references]
    pred = _api_clean(prediction)
    if len(set(refs)) > 1:
        contractions = _vqa_contractions()
        refs = [_api_digit_article(_api_punctuation(r), contractions) for r in refs]
        pred = _api_digit_article(_api_punctuation(pred), contractions)
    return _leave_one_out(pred, refs)


def vqav2_accuracy(prediction: str, doc: dict) -> float:
    """LLaVA's VQAv2 pipeline on val: EvalAI-normalise the prediction (convert_vqav2_for_submission), then the VQA
    API's rule (vqa_official_accuracy); the doc's answers are not modified."""
    from lmms_eval.tasks._task_utils.vqa_eval_metric import EvalAIAnswerProcessor

    return vqa_official_accuracy(EvalAIAnswerProcessor()(prediction), [a["answer"] for a in doc["answers"]])


def vizwiz_official_accuracy(prediction: str, references: list[str]) -> float:
    """The VizWiz VQA API's rule (its vqaEval.py `evaluate`, by Qing Li, distributed at vizwiz.org; vendored in
    TRI-ML/vlm-evaluation vlm_eval/util/evaluation/vizwiz/eval.py @ 7292fd6): the prediction alone is cleaned,
    punctuation-processed and digit/article-processed; the references are compared as stored (not even stripped);
    then the mean over leave-one-out subsets of min(1, matches / 3)."""
    pred = _api_digit_article(_api_punctuation(_api_clean(prediction)), _vizwiz_contractions())
    return _leave_one_out(pred, list(references))


def vizwiz_accuracy(prediction: str, doc: dict) -> float:
    """LLaVA's VizWiz pipeline on val: EvalAI-normalise the prediction (scripts/convert_vizwiz_for_submission.py),
    then the VizWiz API's rule (vizwiz_official_accuracy); the doc's answers are not modified."""
    from lmms_eval.tasks._task_utils.vqa_eval_metric import EvalAIAnswerProcessor

    return vizwiz_official_accuracy(EvalAIAnswerProcessor()(prediction), list(doc["answers"]))


def textvqa_accuracy(prediction: str, doc: dict) -> float:
    """TextVQA accuracy (lmms-eval's textvqa_process_results = LLaVA's TextVQAAccuracyEvaluator)."""
    return vqa_accuracy(prediction, doc["answers"])


# ---------------------------------------------------------------- GQA, SQA


def gqa_correct(prediction: str, answer: str) -> bool:
    """LLaVA's GQA rule: strip, drop trailing periods, lower-case (convert_gqa_for_eval), then exact match."""
    return prediction.strip().rstrip(".").lower() == answer


_SQA_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")  # main-branch eval_science_qa.py, verbatim pattern


def sqa_parse(prediction: str, n_choices: int) -> int:
    """LLaVA main-branch eval_science_qa.py (docs/protocols.md): the stripped text is a letter, 'X. ...', or holds
    exactly one 'The answer is X' followed by some character; -1 (scored wrong) otherwise or when out of range."""
    text = prediction.strip()  # model_vqa_science strips the decoded answer before saving it
    if text in SQA_OPTIONS:
        letter = text
    elif len(text) >= 3 and text[0] in SQA_OPTIONS and text[1:3] == ". ":
        letter = text[0]
    else:
        found = _SQA_ANSWER_IS.findall(text)
        letter = found[0] if len(found) == 1 else "FAILED"
    return SQA_OPTIONS.index(letter) if letter in SQA_OPTIONS[:n_choices] else -1


# ---------------------------------------------------------------- POPE


def pope_parse(prediction: str) -> str:
    """LLaVA's eval_pope: keep the first sentence, drop commas; 'no' if it has the word No/no/not, else 'yes'."""
    text = prediction.split(".")[0] if "." in prediction else prediction
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def pope_f1(items: list[dict]) -> float:
    """F1 of yes-as-positive over items {prediction, ground_truth} (lmms-eval's pope_aggregate_f1_score)."""
    from lmms_eval.tasks.pope.utils import pope_aggregate_f1_score

    return float(pope_aggregate_f1_score(items))


def pope_f1_average(items: list[dict]) -> float:
    """The paper's POPE number: F1 computed within each split (category), then averaged over the splits present."""
    by_split: dict[str, list[dict]] = {}
    for item in items:
        by_split.setdefault(item["category"], []).append(item)
    return statistics.mean(pope_f1(group) for group in by_split.values())


def pope_accuracy(items: list[dict]) -> float:
    """Share of items whose parsed answer equals the label."""
    return statistics.mean(float(i["prediction"] == i["ground_truth"]) for i in items)


# ---------------------------------------------------------------- MMBench (circular)


# MMBench's judge-free answer matching: VLMEvalKit's exact-matching path (`can_infer` in vlmeval/utils/matching_util.py,
# circular grouping in vlmeval/dataset/utils/multiple_choice.py), written from open-compass/VLMEvalKit @
# aca64dbb3113ebf09683e379c65fb8b5107cba3f, the last commit before the 2025-08 rule change (c3371551: the letter must
# be among the last four words, text matching refuses long answers; a67ace5, 2026-06, adds an "answer is X" regex).
MMBENCH_UNMATCHED = "Z"  # what can_infer returns for a refusal; never a right answer
_MMB_SEPARATORS = ".()[],:;!*#{}"  # can_infer_option turns each into a space before splitting into words
_MMB_REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
                 "I'm sorry, but without the image provided", "Cannot determine the answer")
_MMB_API_FAILURE = "Failed to obtain answer via API"


def _is_missing(value: object) -> bool:
    """An absent option: None, NaN, or the strings 'nan' / 'none' (what the TSV's empty cells become)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and value.lower() in ("nan", "none")


def mmbench_choices(item: dict) -> dict[str, str]:
    """The options a row offers, letter -> text (VLMEvalKit's build_choices: every letter column that is present)."""
    return {k: str(item[k]) for k in "ABCDEFGHIJ" if k in item and not _is_missing(item[k])}


def _mmbench_option(answer: str, choices: dict[str, str]) -> str | None:
    """can_infer_option (VERBOSE unset): the one option letter standing as a word, 'Z' for a refusal; else None."""
    if _MMB_API_FAILURE in answer:
        return None
    if any(refusal in answer for refusal in _MMB_REFUSALS):
        return MMBENCH_UNMATCHED
    words = answer.translate(str.maketrans(_MMB_SEPARATORS, " " * len(_MMB_SEPARATORS))).split()
    named = [letter for letter in choices if letter in words]
    if len(named) == 1:
        return named[0]
    if not named and MMBENCH_UNMATCHED in words:
        return MMBENCH_UNMATCHED
    return None


def _mmbench_text(answer: str, choices: dict[str, str]) -> str | None:
    """can_infer_text: the one option whose text (lower-cased) occurs in the lower-cased answer; else None."""
    low = answer.lower()
    hits = [letter for letter, text in choices.items() if text.lower() in low]
    return hits[0] if len(hits) == 1 else None


def mmbench_can_infer(prediction: object, choices: dict[str, str]) -> str | None:
    """VLMEvalKit's can_infer: the option letter, 'Z' (a refusal) or None when nothing, or more than one option,
    can be read. Under exact matching both 'Z' and None count wrong."""
    answer = str(prediction)
    return _mmbench_option(answer, choices) or _mmbench_text(answer, choices)


def mmbench_question_hits(items: list[dict]) -> dict[int, bool]:
    """Circular evaluation under exact matching: question q (its main row has index q < 1e6) is right iff every
    row with index % 1e6 == q gets its own answer from can_infer. Copies whose main row is absent are not scored."""
    groups: dict[int, list[dict]] = {}
    for item in items:
        groups.setdefault(int(item["index"]) % MMBENCH_COPY, []).append(item)
    mains = sorted({int(i["index"]) for i in items if int(i["index"]) < MMBENCH_COPY})
    return {q: all(mmbench_can_infer(r["prediction"], mmbench_choices(r)) == r["answer"] for r in groups[q])
            for q in mains}


def mmbench_circular(items: list[dict]) -> float:
    """MMBench circular accuracy (fraction) of the llava protocol: VLMEvalKit's exact matching, no judge; NaN when
    no question is scored."""
    hits = mmbench_question_hits(list(items))
    return statistics.mean(float(h) for h in hits.values()) if hits else float("nan")


_STDOUT_SWAP = threading.Lock()


def lmms_mmbench_circular(items: list[dict], eval_method: str = "static", benchmark: str = "mmbench") -> float:
    """lmms-eval's MMBench evaluator (fraction): MMBench's matching, then (static) lmms-eval's MCQ extractor, or
    (openai) the GPT judge. Used by the lmms-eval protocol and, when asked for, the judge. The evaluator's own
    per-category printout (headed the same for EN and CN) is replaced by one block on stderr naming `benchmark`."""
    if not items:
        return float("nan")
    if eval_method == "static":
        from lmms_eval.tasks.mmbench.mmbench_evals import MMBench_Evaluator

        evaluator = MMBench_Evaluator(sys_prompt=MMBENCH_SYS_PROMPT)
    else:  # the GPT judge, only when the user asked for it (needs OPENAI_API_KEY)
        from lmms_eval.tasks.mmbench.en_utils import mmbench_evaluator as evaluator
    # stdout stays clean for `--format json`; sys.stdout is process-wide, so one thread at a time swaps it (two
    # interleaved redirects could restore each other's StringIO and swallow everything printed after)
    with _STDOUT_SWAP, contextlib.redirect_stdout(io.StringIO()):
        overall, category, l2_category = evaluator.eval_result(list(items), eval_method=eval_method)
    print(mmbench_category_block(benchmark, eval_method, category, l2_category), file=sys.stderr)
    return float(overall)


def mmbench_category_block(benchmark: str, eval_method: str, category: dict, l2_category: dict) -> str:
    """The per-category accuracies (fractions, as lmms-eval returns them) as one block headed by the benchmark."""
    lines = [f"{benchmark}: accuracy by category (lmms-eval's MMBench evaluator, {eval_method} matching)"]
    for title, values in (("category", category), ("L2 category", l2_category)):
        lines.append(f"  {title}:")
        lines += [f"    {name}: {100.0 * value:.1f}%" for name, value in sorted(values.items())]
    return "\n".join(lines)


def lmms_mmbench_static_for(benchmark: str) -> Callable[..., float]:
    """lmms-eval's MMBench dev aggregate for `benchmark` with eval_method='static' (no GPT judge), x100 as
    lmms-eval reports it."""
    def lmms_mmbench_static(results: list[dict], args=None) -> float:
        return 100.0 * lmms_mmbench_circular(results, "static", benchmark)

    return lmms_mmbench_static


def mmbench_circular_judge_for(benchmark: str) -> Callable[[list[dict]], float]:
    """MMBench circular accuracy of `benchmark` with the GPT judge for unparsable answers: only when asked for."""
    def mmbench_circular_judge(items: list[dict]) -> float:
        return lmms_mmbench_circular(items, "openai", benchmark)

    return mmbench_circular_judge


def mmbench_item(doc: dict, prediction: str) -> dict:
    """What MMBench's evaluator needs from one row and its prediction."""
    keys = ("index", "question", "answer", "hint", "source", "split", "category", "L2-category", "A", "B", "C", "D")
    return {**{k: doc.get(k) for k in keys}, "prediction": prediction.strip()}


# ---------------------------------------------------------------- OCRBench, ChartQA


def ocrbench_score(prediction: str, doc: dict) -> int:
    """1 if a reference answer occurs in the prediction under OCRBench's rules (lmms-eval's per-row check)."""
    from lmms_eval.tasks.ocrbench.utils import ocrbench_process_results

    return int(ocrbench_process_results(doc, [prediction])["ocrbench_accuracy"]["score"])


def ocrbench_points(items: Iterable[dict]) -> float:
    """OCRBench in points out of 1000: 1000 x the mean row score (on the full 1000-question set, the total)."""
    scores = [float(i["score"]) for i in items]
    return 1000.0 * statistics.mean(scores) if scores else float("nan")


def relaxed_correct(prediction: str, answer: str) -> bool:
    """ChartQA relaxed accuracy: numbers within 5% relative error, other answers exact (case-insensitive)."""
    from lmms_eval.tasks.chartqa.utils import relaxed_correctness

    return bool(relaxed_correctness(prediction, answer))


# ---------------------------------------------------------------- fixes used by the lmms-eval protocol


def lmms_ocrbench_aggregate(results: list[dict], args=None) -> float:
    """lmms-eval's OCRBench aggregate with its module-global per-category totals reset first (they accumulate
    across calls, so a second evaluation in one process would double the score), safe in concurrent threads."""
    from lmms_eval.tasks.ocrbench import utils as ocr

    with fresh_ocrbench_totals():  # and no other thread's aggregate touches them meanwhile
        return ocr.ocrbench_aggregate_accuracy(results, args)
