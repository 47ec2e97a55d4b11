"""ScienceQA-IMG (test, 2,017 questions): its declaration, the llava protocol's prompt, parser and score, its data.

The prompt is llava_test_CQM-A's; the answer parser is LLaVA main-branch eval_science_qa.py's (docs/protocols.md).
"""

from __future__ import annotations

import re

from stf_bench.accuracy.declaration import PCT, Benchmark, Metric, Source
from stf_bench.accuracy.drawing import SHAPES, shape_scene
from stf_bench.accuracy.rules import MC
from stf_bench.accuracy.sampling import COLOR_NAMES, SampleFiles, image_cell, rng_for, scene, single_file

BENCHMARK = Benchmark(
    "scienceqa_img", "SQA", Source("lmms-lab-encoder/ScienceQA", "ScienceQA", "ScienceQA-IMG", "test"),
    (Metric("exact_match", "accuracy", PCT, "mean_pct"),),
    (Metric("exact_match", "accuracy", PCT, "mean_pct"),), "scienceqa", tolerance=1.0, paper8=True,
    position=2, module=__name__, columns=("image", "question", "choices", "answer", "hint"),
    scorer_version="2")  # 2: LLaVA main-branch eval_science_qa.py parser (issue 12)

OPTIONS = ("A", "B", "C", "D", "E")


def doc_to_text(doc: dict) -> str:
    """SQA-IMG as in llava_test_CQM-A: optional 'Context: <hint>', the question, 'A. ...' lines, MC suffix."""
    context = f"Context: {doc['hint']}\n" if doc.get("hint") else ""
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(OPTIONS, doc["choices"]))
    return f"{context}{doc['question']}\n{options}{MC}"


def doc_to_target(doc: dict) -> str:
    """The answer letter."""
    return OPTIONS[doc["answer"]]


_SQA_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")  # main-branch eval_science_qa.py, verbatim pattern


def parse(prediction: str, n_choices: int) -> int:
    """LLaVA main-branch eval_science_qa.py (docs/protocols.md): the stripped text is a letter, 'X. ...', or holds
    exactly one 'The answer is X' followed by some character; -1 (scored wrong) otherwise or when out of range."""
    text = prediction.strip()  # model_vqa_science strips the decoded answer before saving it
    if text in OPTIONS:
        letter = text
    elif len(text) >= 3 and text[0] in OPTIONS and text[1:3] == ". ":
        letter = text[0]
    else:
        found = _SQA_ANSWER_IS.findall(text)
        letter = found[0] if len(found) == 1 else "FAILED"
    return OPTIONS.index(letter) if letter in OPTIONS[:n_choices] else -1




def process_results(doc: dict, results: list[str]) -> dict:
    """SQA: right if LLaVA's parser picks the answer's index."""
    return {"exact_match": float(parse(results[0], len(doc["choices"])) == doc["answer"])}


def sample_files() -> SampleFiles:
    """ScienceQA-IMG test: multiple choice with 2-4 choices, the answer an index into `choices`."""
    from datasets import Image, List, Value

    rng = rng_for("scienceqa_img")
    rows = []
    for i in range(20):
        kind_of_q = i % 3
        if kind_of_q == 0:
            shape = scene(rng, 1)[0]
            shapes = [shape]
            question, right = "Which shape is shown in the picture?", shape.kind
            choices = rng.sample([k for k in SHAPES if k != right], 1 + i % 2) + [right]
        elif kind_of_q == 1:
            shapes = scene(rng, 2)
            question, right = f"What color is the {shapes[0].kind}?", shapes[0].color
            choices = rng.sample([c for c in COLOR_NAMES if c != right], 3) + [right]
        else:
            shapes = scene(rng, 1 + i % 3)
            question, right = "How many shapes are in the picture?", str(len(shapes))
            choices = [c for c in ("1", "2", "3", "4") if c != right][: 2 + i % 2] + [right]
        rng.shuffle(choices)
        rows.append({
            "image": image_cell(shape_scene(shapes)), "question": question, "choices": choices,
            "answer": choices.index(right), "hint": "" if i % 2 else "Look closely at the picture.",
            "task": "closed choice", "grade": f"grade{2 + i % 4}", "subject": "natural science",
            "topic": "shapes and colors", "category": "Identify shapes and colors",
            "skill": "Identify shapes and colors", "lecture": "Shapes have a form and a color.",
            "solution": f"The answer is {right}.",
        })
    features = {"image": Image(), "question": Value("string"), "choices": List(Value("string")),
                "answer": Value("int8"), "hint": Value("string"), "task": Value("string"), "grade": Value("string"),
                "subject": Value("string"), "topic": Value("string"), "category": Value("string"),
                "skill": Value("string"), "lecture": Value("string"), "solution": Value("string")}
    return single_file(BENCHMARK.source, features, rows)
