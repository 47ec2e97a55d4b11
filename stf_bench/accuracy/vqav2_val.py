"""VQAv2 val: its declaration, the llava protocol's prompt and target, the VQA API's accuracy (references processed
only where the ten differ), its data. Its rows are also the requests of `stf-bench latency` and the prefill FLOPs
(the paper's Table 9 times VQAv2 prompts)."""

from __future__ import annotations

from stf_bench.accuracy.declaration import PCT, Benchmark, Metric, Source
from stf_bench.accuracy.drawing import SHAPES, Shape, shape_scene
from stf_bench.accuracy.rules import SHORT, vqa_official_accuracy
from stf_bench.accuracy.sampling import (
    CELLS,
    COLOR_NAMES,
    SampleFiles,
    annotators,
    image_cell,
    rng_for,
    scene,
    single_file,
)

_VQA_EM = Metric("exact_match", "vqa_accuracy", PCT, "mean_pct")
BENCHMARK = Benchmark(
    "vqav2_val", "VQA^v2", Source("lmms-lab-encoder/VQAv2", "VQAv2", None, "validation"),
    (_VQA_EM,), (_VQA_EM,), "vqav2", tolerance=0.3, paper8=True,
    published_split="published: test-dev (EvalAI server); ours: val",
    position=7, module=__name__, columns=("image", "question", "answers", "multiple_choice_answer", "question_id"),
    scorer_version="2",  # 2: the VQA API's reference handling (issue 12)
    latency_prompts=True)


def doc_to_text(doc: dict) -> str:
    """VQAv2: question + short-answer suffix."""
    return doc["question"] + SHORT


def doc_to_target(doc: dict) -> str:
    """VQAv2's multiple_choice_answer (the majority answer)."""
    return doc["multiple_choice_answer"]


def accuracy(prediction: str, doc: dict) -> float:
    """LLaVA's VQAv2 pipeline on val: EvalAI-normalise the prediction (convert_vqav2_for_submission), then the VQA
    API's rule (vqa_official_accuracy); the doc's answers are not modified."""
    from lmms_eval.tasks._task_utils.vqa_eval_metric import EvalAIAnswerProcessor

    return vqa_official_accuracy(EvalAIAnswerProcessor()(prediction), [a["answer"] for a in doc["answers"]])




def process_results(doc: dict, results: list[str]) -> dict:
    """VQAv2 VQA accuracy."""
    return {"exact_match": accuracy(results[0].strip(), doc)}


def plural(kind: str) -> str:
    return kind + "s"


def sample_files() -> SampleFiles:
    """VQAv2 val: counting, colour and yes/no questions with ten {answer, answer_confidence, answer_id}."""
    from datasets import Image, List, Value

    rng = rng_for("vqav2_val")
    rows = []
    for i in range(20):
        image_id = 262000 + 13 * i
        if i % 3 == 0:
            kind = rng.choice(SHAPES)
            count = rng.randint(1, 4)
            shapes = [Shape(kind, rng.choice(COLOR_NAMES), x, y) for x, y in rng.sample(CELLS, count)]
            question, answer, qtype, atype = f"How many {plural(kind)} are there?", str(count), "how many", "number"
            others = [str(count + 1), str(max(count - 1, 0))]
        elif i % 3 == 1:
            shapes = scene(rng, 2)
            question, answer, qtype, atype = (f"What color is the {shapes[0].kind}?", shapes[0].color,
                                              "what color is the", "other")
            others = [shapes[1].color, "dark " + shapes[0].color]
        else:
            shapes = scene(rng, 2)
            asked = shapes[0] if i % 2 else Shape(shapes[0].kind, next(c for c in COLOR_NAMES
                                                                       if c not in {s.color for s in shapes}), 0, 0)
            answer = "yes" if i % 2 else "no"
            question, qtype, atype = f"Is there a {asked.color} {asked.kind}?", "is there a", "yes/no"
            others = ["no" if answer == "yes" else "yes"]
        crowd = annotators(rng, answer, others, 6 + i % 4)
        rows.append({
            "question_type": qtype, "multiple_choice_answer": answer,
            "answers": [{"answer": a, "answer_confidence": "yes" if a == answer else "maybe", "answer_id": k + 1}
                        for k, a in enumerate(crowd)],
            "image_id": image_id, "answer_type": atype, "question_id": image_id * 1000 + i, "question": question,
            "image": image_cell(shape_scene(shapes)),
        })
    features = {"question_type": Value("string"), "multiple_choice_answer": Value("string"),
                "answers": List({"answer": Value("string"), "answer_confidence": Value("string"),
                                 "answer_id": Value("int64")}),
                "image_id": Value("int64"), "answer_type": Value("string"), "question_id": Value("int64"),
                "question": Value("string"), "image": Image()}
    return single_file(BENCHMARK.source, features, rows)
