"""VizWiz-VQA val: its declaration, the llava protocol's prompt and target, the VizWiz API's accuracy (the
prediction alone processed, references as stored), its data."""

from __future__ import annotations

import functools

from stf_bench.accuracy.declaration import PCT, Benchmark, Metric, Source
from stf_bench.accuracy.drawing import SHAPES, Shape, shape_scene, text_image
from stf_bench.accuracy.rules import (
    SHORT,
    api_clean,
    api_digit_article,
    api_punctuation,
    leave_one_out,
    majority_answer,
    vqa_contractions,
)
from stf_bench.accuracy.sampling import COLOR_NAMES, WORDS, SampleFiles, annotators, image_cell, rng_for, single_file

_VQA_EM = Metric("exact_match", "vqa_accuracy", PCT, "mean_pct")
BENCHMARK = Benchmark(
    "vizwiz_vqa_val", "VisWiz", Source("lmms-lab-encoder/VizWiz-VQA", "VizWiz-VQA", None, "val"),
    (_VQA_EM,), (_VQA_EM,), "vizwiz_vqa", tolerance=0.6, paper8=True,
    published_split="published: test-dev (EvalAI server); ours: val",
    position=8, module=__name__, columns=("image", "question", "answers"),
    scorer_version="2")  # 2: the VizWiz API, the prediction only is processed (issue 12)

PROMPT = "\nWhen the provided information is insufficient, respond with 'Unanswerable'." + SHORT


def doc_to_text(doc: dict) -> str:
    """VizWiz: question + the unanswerable instruction + short-answer suffix."""
    return doc["question"] + PROMPT


def doc_to_target(doc: dict) -> str:
    """The majority annotator answer."""
    return majority_answer(doc["answers"])


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
            for k, v in vqa_contractions().items()}


def official_accuracy(prediction: str, references: list[str]) -> float:
    """The VizWiz VQA API's rule (its vqaEval.py `evaluate`, by Qing Li, distributed at vizwiz.org; vendored in
    TRI-ML/vlm-evaluation vlm_eval/util/evaluation/vizwiz/eval.py @ 7292fd6): the prediction alone is cleaned,
    punctuation-processed and digit/article-processed; the references are compared as stored (not even stripped);
    then the mean over leave-one-out subsets of min(1, matches / 3)."""
    pred = api_digit_article(api_punctuation(api_clean(prediction)), _vizwiz_contractions())
    return leave_one_out(pred, list(references))


def accuracy(prediction: str, doc: dict) -> float:
    """LLaVA's VizWiz pipeline on val: EvalAI-normalise the prediction (scripts/convert_vizwiz_for_submission.py),
    then the VizWiz API's rule (vizwiz_official_accuracy); the doc's answers are not modified."""
    from lmms_eval.tasks._task_utils.vqa_eval_metric import EvalAIAnswerProcessor

    return official_accuracy(EvalAIAnswerProcessor()(prediction), list(doc["answers"]))


def process_results(doc: dict, results: list[str]) -> dict:
    """VizWiz VQA accuracy."""
    return {"exact_match": accuracy(results[0].strip(), doc)}


def sample_files() -> SampleFiles:
    """VizWiz-VQA val: single objects and words, plus blank photos whose answer is 'unanswerable'."""
    from datasets import Image, List, Value

    rng = rng_for("vizwiz_vqa_val")
    rows = []
    for i in range(20):
        if i % 5 == 4:
            grey = 120 + 10 * (i % 7)
            img = shape_scene([], background=(grey, grey, grey))
            question, answer, category, others = "What is this?", "unanswerable", "unanswerable", ["nothing"]
        elif i % 5 in (0, 1):
            shape = Shape(rng.choice(SHAPES), rng.choice(COLOR_NAMES), 0.5, 0.5, radius=55)
            img = shape_scene([shape])
            if i % 5 == 0:
                question, answer, others = "What color is this?", shape.color, ["unanswerable", "dark"]
            else:
                question, answer, others = "What shape is this?", shape.kind, ["unanswerable", "object"]
            category = "other"
        else:
            word = rng.choice(WORDS)
            img = text_image([word], scale=4)
            question, answer, category, others = "What does this say?", word.lower(), "other", ["unanswerable", "text"]
        rows.append({"question_id": f"VizWiz_val_{i:08d}", "image": image_cell(img), "question": question,
                     "answers": annotators(rng, answer, others, 5 + i % 5), "category": category})
    features = {"question_id": Value("string"), "image": Image(), "question": Value("string"),
                "answers": List(Value("string")), "category": Value("string")}
    return single_file(BENCHMARK.source, features, rows)
