"""POPE (test: adversarial, popular and random splits, 9,000 questions): its declaration, the llava protocol's
prompt, LLaVA's lenient yes/no parsing, the F1 of each split averaged over the splits, its bootstrap (rows with
per-split confusion counts) and its data."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

from stf_bench.accuracy.declaration import PCT, Benchmark, Metric, Source
from stf_bench.accuracy.drawing import SHAPES, shape_scene
from stf_bench.accuracy.rules import SHORT
from stf_bench.accuracy.sampling import COLOR_NAMES, SampleFiles, image_cell, rng_for, scene, single_file
from stf_bench.accuracy.units import Record, Units

BENCHMARK = Benchmark(
    "pope", "POPE", Source("lmms-lab-encoder/POPE", "POPE", None, "test"),
    (Metric("pope_f1_avg", "f1", PCT, "pope_f1_split_avg"),
     Metric("pope_f1_adversarial", "f1_adversarial"), Metric("pope_f1_popular", "f1_popular"),
     Metric("pope_f1_random", "f1_random"), Metric("pope_accuracy", "accuracy")),
    (Metric("pope_f1_score", "f1", PCT, "pope_f1"), Metric("pope_accuracy", "accuracy"),
     Metric("pope_precision", "precision"), Metric("pope_recall", "recall")),
    "pope", tolerance=0.5, paper8=True,
    position=4, module=__name__, columns=("image", "question", "answer", "category", "question_id"))

SPLITS = ("adversarial", "popular", "random")  # the llava protocol's F1 is the mean of one F1 per split


def doc_to_text(doc: dict) -> str:
    """POPE: question + short-answer suffix."""
    return doc["question"].strip() + SHORT


def parse(prediction: str) -> str:
    """LLaVA's eval_pope: keep the first sentence, drop commas; 'no' if it has the word No/no/not, else 'yes'."""
    text = prediction.split(".")[0] if "." in prediction else prediction
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def f1(items: list[dict]) -> float:
    """F1 of yes-as-positive over items {prediction, ground_truth} (lmms-eval's pope_aggregate_f1_score)."""
    from lmms_eval.tasks.pope.utils import pope_aggregate_f1_score

    return float(pope_aggregate_f1_score(items))


def f1_average(items: list[dict]) -> float:
    """The paper's POPE number: F1 computed within each split (category), then averaged over the splits present."""
    by_split: dict[str, list[dict]] = {}
    for item in items:
        by_split.setdefault(item["category"], []).append(item)
    return statistics.mean(f1(group) for group in by_split.values())


def accuracy(items: list[dict]) -> float:
    """Share of items whose parsed answer equals the label."""
    return statistics.mean(float(i["prediction"] == i["ground_truth"]) for i in items)


def process_results(doc: dict, results: list[str]) -> dict:
    """One item per row for the split-averaged F1 and accuracy, and one for its own split's F1."""
    prediction = parse(results[0].strip())
    truth = doc["answer"].strip().lower()
    item = {"question_id": doc["question_id"], "category": doc["category"], "prediction": prediction,
            "ground_truth": truth, "score": float(prediction == truth)}
    out = {"pope_f1_avg": item, "pope_accuracy": item}
    if doc["category"] in SPLITS:
        out[f"pope_f1_{doc['category']}"] = item
    return out


def metric_label(metric: str, metrics: dict) -> str:
    """The metric's name in `stf-bench run`'s table: the split-mean F1 says so when fewer than three splits were
    scored."""
    if metric == "f1" and any(f"f1_{s}" in metrics for s in SPLITS):
        splits = [s for s in SPLITS if f"f1_{s}" in metrics]
        if len(splits) < len(SPLITS):
            return f"f1 (mean of {len(splits)} of {len(SPLITS)} splits: {', '.join(splits)})"
    return metric


# ---------------------------------------------------------------- bootstrap: rows, F1 from confusion counts


def _f1_pct(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 of 'yes' as lmms-eval computes it (0 where precision + recall is 0), in percent."""
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 200.0 * tp / np.where(denom > 0, denom, 1), 0.0)


def _pooled_f1(sums: np.ndarray, n: int) -> np.ndarray:
    return _f1_pct(sums[:, 0], sums[:, 1], sums[:, 2])


def _split_avg_f1(sums: np.ndarray, n: int) -> np.ndarray:
    """Mean over splits (present in the resample) of each split's F1; columns are (tp, fp, fn, count) per split."""
    per = sums.reshape(sums.shape[0], -1, 4)
    f1s = _f1_pct(per[..., 0], per[..., 1], per[..., 2])
    present = per[..., 3] > 0
    return (f1s * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def _confusion(v: object) -> tuple[bool, bool, bool] | None:
    if not isinstance(v, dict) or "prediction" not in v or "ground_truth" not in v:
        return None
    pred, gt = str(v["prediction"]), str(v["ground_truth"])
    return pred == "yes" and gt == "yes", pred == "yes" and gt == "no", pred == "no" and gt == "yes"


def bootstrap_units(metric: Metric, samples: Sequence[Record]) -> Units | None:
    """F1 metrics: one unit per row holding its (tp, fp, fn), per split for the split-averaged F1 (resampled rows
    keep their split); None when a record lacks them. Other metrics: None (the caller's row mean applies)."""
    if metric.aggregator not in ("pope_f1", "pope_f1_split_avg"):
        return None
    keys = [str(s.doc_id) for s in samples]
    targets = [str(s.target) for s in samples]
    raw = [s.metrics.get(metric.key) for s in samples]
    counts = [_confusion(v) for v in raw]
    if any(c is None for c in counts):
        return None
    if metric.aggregator == "pope_f1":
        return Units(keys, targets, np.asarray(counts, dtype=float).reshape(-1, 3), _pooled_f1)
    if not all("category" in v for v in raw):
        return None
    splits = sorted({str(v["category"]) for v in raw})
    values = np.zeros((len(raw), 4 * len(splits)))
    for i, (v, c) in enumerate(zip(raw, counts)):
        j = 4 * splits.index(str(v["category"]))
        values[i, j:j + 4] = (*c, 1.0)
    return Units(keys, targets, values, _split_avg_f1)


def sample_files() -> SampleFiles:
    """POPE test: yes/no object questions in three blocks (adversarial, popular, random), half yes, half no."""
    from datasets import Image, Value

    rng = rng_for("pope")
    scenes = [scene(rng, 3) for _ in range(6)]
    rows = []
    for category in ("adversarial", "popular", "random"):
        for s, shapes in enumerate(scenes):
            present = rng.choice(shapes)
            taken = {(x.kind, x.color) for x in shapes}
            absent = rng.choice([(k, c) for k in SHAPES for c in COLOR_NAMES if (k, c) not in taken])
            for kind, color, answer in ((present.kind, present.color, "yes"), (absent[0], absent[1], "no")):
                n = len(rows)
                rows.append({
                    "id": str(n), "question_id": str(n + 1), "question": f"Is there a {color} {kind} in the image?",
                    "answer": answer, "image_source": f"samples_{s:06d}", "image": image_cell(shape_scene(shapes)),
                    "category": category,
                })
    features = {"id": Value("string"), "question_id": Value("string"), "question": Value("string"),
                "answer": Value("string"), "image_source": Value("string"), "image": Image(),
                "category": Value("string")}
    return single_file(BENCHMARK.source, features, rows)
