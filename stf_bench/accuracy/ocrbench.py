"""OCRBench (1,000 questions): its declaration, the prompt (lmms-eval's: the bare question), OCRBench's per-row
rule, the points out of 1000, the fix lmms-eval's own aggregate needs, and its data."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from stf_bench.accuracy.declaration import Benchmark, Metric, Source
from stf_bench.accuracy.drawing import text_image
from stf_bench.accuracy.sampling import WORDS, SampleFiles, image_cell, rng_for, single_file
from stf_bench.compat import fresh_ocrbench_totals

BENCHMARK = Benchmark(
    "ocrbench", "OCRBench", Source("echo840/OCRBench", "OCRBench", None, "test"),
    (Metric("ocrbench_points", "points", 1.0, "mean_points"),),  # our task: points out of 1000
    (Metric("ocrbench_accuracy", "points", 1000.0 * 1000.0, "mean_points", per_row=True),),
    "ocrbench", unit="points/1000", decimals=0, tolerance=15.0,
    position=9, module=__name__, columns=("image", "question", "answer", "question_type", "dataset"))


def doc_to_text(doc: dict) -> str:
    """OCRBench: the bare question (not in LLaVA's scripts; lmms-eval's prompt)."""
    return doc["question"].strip()


def doc_to_target(doc: dict) -> str:
    """The first reference answer."""
    return doc["answer"][0]


def score(prediction: str, doc: dict) -> int:
    """1 if a reference answer occurs in the prediction under OCRBench's rules (lmms-eval's per-row check)."""
    from lmms_eval.tasks.ocrbench.utils import ocrbench_process_results

    return int(ocrbench_process_results(doc, [prediction])["ocrbench_accuracy"]["score"])


def points(items: Iterable[dict]) -> float:
    """OCRBench in points out of 1000: 1000 x the mean row score (on the full 1000-question set, the total)."""
    scores = [float(i["score"]) for i in items]
    return 1000.0 * statistics.mean(scores) if scores else float("nan")


def process_results(doc: dict, results: list[str]) -> dict:
    """OCRBench row score (0/1), summed into points at aggregation."""
    return {"ocrbench_points": {"question_type": doc["question_type"], "score": score(results[0].strip(), doc)}}


def lmms_aggregate(results: list[dict], args=None) -> float:
    """lmms-eval's OCRBench aggregate with its module-global per-category totals reset first (they accumulate
    across calls, so a second evaluation in one process would double the score), safe in concurrent threads."""
    from lmms_eval.tasks.ocrbench import utils as ocr

    with fresh_ocrbench_totals():  # and no other thread's aggregate touches them meanwhile
        return ocr.ocrbench_aggregate_accuracy(results, args)


def task_overrides(protocol: str, judge: bool) -> dict:
    """Under the lmms-eval protocol, its aggregate with the module-global totals reset first."""
    if protocol != "lmms-eval":
        return {}
    return {"metric_list": [{"metric": "ocrbench_accuracy", "aggregation": lmms_aggregate, "higher_is_better": True}]}


OCR_TYPES = (  # (question_type, dataset) pairs as OCRBench names them
    ("Regular Text Recognition", "IIIT5K"), ("Irregular Text Recognition", "IC15"),
    ("Artistic Text Recognition", "WordArt"), ("Handwriting Recognition", "IAM"),
    ("Digit String Recognition", "ORAND"), ("Non-Semantic Text Recognition", "NonSemanticText"),
    ("Scene Text-centric VQA", "STVQA"), ("Doc-oriented VQA", "DocVQA"),
    ("Key Information Extraction", "SROIE"), ("Handwritten Mathematical Expression Recognition", "HME100k"),
)


def sample_files() -> SampleFiles:
    """OCRBench: two rows per question type (ten types), answers as lists; HME rows are formulas."""
    from datasets import Image, List, Value

    rng = rng_for("ocrbench")
    rows = []
    for i in range(20):
        qtype, dataset = OCR_TYPES[i % len(OCR_TYPES)]
        if dataset == "HME100k":
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            lines, question, answer = [f"x + {a} = {a + b}"], "Please write out the expression of the formula in " \
                "the image using LaTeX format.", [f"x+{a}={a + b}"]
        elif dataset == "ORAND":
            digits = str(rng.randint(10000, 99999))
            lines, question, answer = [digits], "what is the number in the image?", [digits]
        elif dataset in ("STVQA", "DocVQA", "SROIE"):
            word, total = rng.choice(WORDS), f"{rng.randint(1, 99)}.{rng.randint(10, 99)}"
            lines = [f"SHOP {word}", f"TOTAL {total}"]
            question = "what is the total?" if dataset != "STVQA" else "what is the name of the shop?"
            answer = [total] if dataset != "STVQA" else [word.lower(), f"shop {word.lower()}"]
        else:
            word = rng.choice(WORDS)
            lines, question, answer = [word], "what is written in the image?", [word.lower()]
        rows.append({"dataset": dataset, "question": question, "question_type": qtype, "answer": answer,
                     "image": image_cell(text_image(lines, scale=3))})
    features = {"dataset": Value("string"), "question": Value("string"), "question_type": Value("string"),
                "answer": List(Value("string")), "image": Image()}
    return single_file(BENCHMARK.source, features, rows)
