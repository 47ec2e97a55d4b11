"""TextVQA val (5,000 questions): its declaration, the llava protocol's prompt (with the reference OCR tokens),
target and VQA accuracy, its data."""

from __future__ import annotations

import hashlib

from stf_bench.accuracy.declaration import PCT, Benchmark, Metric, Source
from stf_bench.accuracy.drawing import text_image
from stf_bench.accuracy.rules import SHORT, majority_answer, vqa_accuracy
from stf_bench.accuracy.sampling import WORDS, SampleFiles, annotators, image_cell, rng_for, single_file

_VQA_EM = Metric("exact_match", "vqa_accuracy", PCT, "mean_pct")
BENCHMARK = Benchmark(
    "textvqa_val", "VQA^T", Source("lmms-lab-encoder/textvqa", "textvqa", None, "validation"),
    (_VQA_EM,), (_VQA_EM,), "textvqa", tolerance=0.7, paper8=True,
    position=3, module=__name__, columns=("image", "question", "answers", "question_id"))


def doc_to_text(doc: dict) -> str:
    """Question, the reference OCR tokens line (llava_textvqa_val_v051_ocr), short-answer suffix."""
    tokens = list(doc.get("ocr_tokens") or [])
    ocr = f"\nReference OCR token: {', '.join(tokens)}" if tokens else ""
    return f"{doc['question']}{ocr}{SHORT}"


def doc_to_target(doc: dict) -> str:
    """The majority annotator answer."""
    return majority_answer(doc["answers"])


def accuracy(prediction: str, doc: dict) -> float:
    """TextVQA accuracy (lmms-eval's textvqa_process_results = LLaVA's TextVQAAccuracyEvaluator)."""
    return vqa_accuracy(prediction, doc["answers"])


def process_results(doc: dict, results: list[str]) -> dict:
    """TextVQA VQA accuracy."""
    return {"exact_match": accuracy(results[0].strip(), doc)}


def sample_files() -> SampleFiles:
    """TextVQA val: words rendered on signs; ten annotator answers; the OCR tokens of the sign."""
    from datasets import Image, List, Value

    rng = rng_for("textvqa_val")
    rows = []
    for i in range(20):
        first, second = rng.sample(WORDS, 2)
        number = str(rng.randint(10, 999))
        if i % 3 == 0:
            lines, question, answer = [first], "what word is written on the sign?", first.lower()
        elif i % 3 == 1:
            lines, question, answer = [first, second], "what is the first word on the sign?", first.lower()
        else:
            lines, question, answer = [first, number], "what number is on the sign?", number
        img = text_image(lines, scale=3, border=(90, 90, 90))
        crowd = annotators(rng, answer, [w.lower() for w in lines if w.lower() != answer] + ["sign"], 6 + i % 3)
        crowd = [a.upper() if k == 0 and a == answer else a for k, a in enumerate(crowd)]  # case varies, as in life
        image_id = hashlib.sha1(f"textvqa{i}".encode()).hexdigest()[:16]
        rows.append({
            "image_id": image_id, "question_id": 34602 + i, "question": question,
            "question_tokens": question.rstrip("?").split() + ["?"], "image": image_cell(img),
            "image_width": img.width, "image_height": img.height,
            "flickr_original_url": f"https://example.invalid/{image_id}_o.jpg",
            "flickr_300k_url": f"https://example.invalid/{image_id}_z.jpg",
            "answers": crowd, "image_classes": ["Sign", "Billboard"], "set_name": "val",
            "ocr_tokens": [w for line in lines for w in line.split()],
        })
    features = {"image_id": Value("string"), "question_id": Value("int64"), "question": Value("string"),
                "question_tokens": List(Value("string")), "image": Image(), "image_width": Value("int64"),
                "image_height": Value("int64"), "flickr_original_url": Value("string"),
                "flickr_300k_url": Value("string"), "answers": List(Value("string")),
                "image_classes": List(Value("string")), "set_name": Value("string"),
                "ocr_tokens": List(Value("string"))}
    return single_file(BENCHMARK.source, features, rows)
