"""ChartQA (test, 2,500 questions): its declaration, the prompt (lmms-eval's), relaxed accuracy overall and on the
human / augmented halves, and its data."""

from __future__ import annotations

from stf_bench.accuracy.declaration import PCT, Benchmark, Metric, Source
from stf_bench.accuracy.drawing import bar_chart
from stf_bench.accuracy.rules import relaxed_correct
from stf_bench.accuracy.sampling import SampleFiles, image_cell, rng_for, single_file

_METRICS = (Metric("relaxed_overall", "relaxed_accuracy", PCT, "mean_pct"),
            Metric("relaxed_human_split", "relaxed_human"), Metric("relaxed_augmented_split", "relaxed_augmented"))
BENCHMARK = Benchmark(
    "chartqa", "ChartQA", Source("lmms-lab-encoder/ChartQA", "ChartQA", None, "test"),
    _METRICS, _METRICS, "chartqa", tolerance=0.8,
    position=10, module=__name__, columns=("image", "question", "answer", "type"))

PROMPT = "\nAnswer the question with a single word."  # not in LLaVA's scripts: lmms-eval's prompt


def doc_to_text(doc: dict) -> str:
    """ChartQA: question + single-word suffix (not in LLaVA's scripts; lmms-eval's prompt)."""
    return doc["question"] + PROMPT


def process_results(doc: dict, results: list[str]) -> dict:
    """Relaxed accuracy overall and on the row's half (human-written or augmented questions)."""
    score = float(relaxed_correct(results[0].strip(), doc["answer"]))
    split = "relaxed_human_split" if doc["type"] == "human_test" else "relaxed_augmented_split"
    return {"relaxed_overall": score, split: score}


def sample_files() -> SampleFiles:
    """ChartQA test: bar charts, value and argmax questions, half human-written, half augmented."""
    from datasets import Image, Value

    rng = rng_for("chartqa")
    rows = []
    for i in range(10):
        labels = rng.sample(["Apple", "Pear", "Plum", "Fig", "Kiwi", "Lime", "Date"], 3 + i % 3)
        values = rng.sample(range(5, 96), len(labels))
        img = image_cell(bar_chart(labels, [float(v) for v in values], title=f"Sales {2010 + i}"))
        pick = rng.randrange(len(labels))
        kind = "human_test" if i < 5 else "augmented_test"
        rows.append({"type": kind, "question": f"What is the value of {labels[pick]}?", "answer": str(values[pick]),
                     "image": img})
        rows.append({"type": kind, "question": "Which category has the highest value?",
                     "answer": labels[values.index(max(values))], "image": img})
    features = {"type": Value("string"), "question": Value("string"), "answer": Value("string"), "image": Image()}
    return single_file(BENCHMARK.source, features, rows)

