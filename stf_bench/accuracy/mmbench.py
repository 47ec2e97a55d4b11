"""What MMBench's two dev sets (English and Chinese) share: the prompt, circular evaluation with
MMBench's judge-free answer matching (no GPT judge unless asked for), lmms-eval's evaluator wrappers, the integer
`index`, the bootstrap by question group, and the sample rows. Not a benchmark itself: the two modules that are
declare their language's suffix and data, and take the rest from here.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import sys
import threading
from collections.abc import Callable, Sequence

import numpy as np

from stf_bench.accuracy.declaration import PCT, Metric, Source
from stf_bench.accuracy.drawing import SHAPES, shape_scene
from stf_bench.accuracy.rules import is_none
from stf_bench.accuracy.sampling import (
    CN_COLORS,
    CN_SHAPES,
    COLOR_NAMES,
    SampleFiles,
    image_cell,
    rng_for,
    scene,
    single_file,
)
from stf_bench.accuracy.units import Record, Units, mean_statistic
from stf_bench.errors import StfBenchError

SYS_PROMPT = "There are several options:"  # MMBench's evaluator prompt: lmms-eval's mmbench.yaml metadata
COPY = 1_000_000  # MMBench's circular copies of question q have index q + k * 1e6
CIRCULAR = Metric("circular_accuracy", "circular_accuracy", PCT, "mmbench_circular")
LMMS_CIRCULAR = Metric("gpt_eval_score", "circular_accuracy", 1.0, "mmbench_circular")  # lmms-eval reports x100
COLUMNS = ("image", "index", "question", "hint", "answer", "A", "B", "category", "L2-category", "source", "split")


def prompt(doc: dict, suffix: str) -> str:
    """model_vqa_mmbench: '<hint>\\n' if any, question, '\\nX. option' up to the first missing one, suffix."""
    question = doc["question"]
    if not is_none(doc.get("hint")):
        question = f"{doc['hint']}\n{question}"
    for letter in "ABCD":
        if is_none(doc.get(letter)):
            break
        question += f"\n{letter}. {doc[letter]}"
    return question + suffix


def process_results(doc: dict, results: list[str]) -> dict:
    """The row and its prediction, scored together with its circular copies at aggregation."""
    return {"circular_accuracy": item_of(doc, results[0])}


# MMBench's judge-free answer matching: VLMEvalKit's exact-matching path (`can_infer` in vlmeval/utils/matching_util.py,
# circular grouping in vlmeval/dataset/utils/multiple_choice.py), written from open-compass/VLMEvalKit @
# aca64dbb3113ebf09683e379c65fb8b5107cba3f, the last commit before the 2025-08 rule change (c3371551: the letter must
# be among the last four words, text matching refuses long answers; a67ace5, 2026-06, adds an "answer is X" regex).
UNMATCHED = "Z"  # what can_infer returns for a refusal; never a right answer
_MMB_SEPARATORS = ".()[],:;!*#{}"  # can_infer_option turns each into a space before splitting into words
_MMB_REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
                 "I'm sorry, but without the image provided", "Cannot determine the answer")
_MMB_API_FAILURE = "Failed to obtain answer via API"


def choices_of(item: dict) -> dict[str, str]:
    """The options a row offers, letter -> text (VLMEvalKit's build_choices: every letter column that is present)."""
    return {k: str(item[k]) for k in "ABCDEFGHIJ" if k in item and not is_none(item[k])}


def _mmbench_option(answer: str, choices: dict[str, str]) -> str | None:
    """can_infer_option (VERBOSE unset): the one option letter standing as a word, 'Z' for a refusal; else None."""
    if _MMB_API_FAILURE in answer:
        return None
    if any(refusal in answer for refusal in _MMB_REFUSALS):
        return UNMATCHED
    words = answer.translate(str.maketrans(_MMB_SEPARATORS, " " * len(_MMB_SEPARATORS))).split()
    named = [letter for letter in choices if letter in words]
    if len(named) == 1:
        return named[0]
    if not named and UNMATCHED in words:
        return UNMATCHED
    return None


def _mmbench_text(answer: str, choices: dict[str, str]) -> str | None:
    """can_infer_text: the one option whose text (lower-cased) occurs in the lower-cased answer; else None."""
    low = answer.lower()
    hits = [letter for letter, text in choices.items() if text.lower() in low]
    return hits[0] if len(hits) == 1 else None


def can_infer(prediction: object, choices: dict[str, str]) -> str | None:
    """VLMEvalKit's can_infer: the option letter, 'Z' (a refusal) or None when nothing, or more than one option,
    can be read. Under exact matching both 'Z' and None count wrong."""
    answer = str(prediction)
    return _mmbench_option(answer, choices) or _mmbench_text(answer, choices)


def question_hits(items: list[dict]) -> dict[int, bool]:
    """Circular evaluation under exact matching: question q (its main row has index q < 1e6) is right iff every
    row with index % 1e6 == q gets its own answer from can_infer. Copies whose main row is absent are not scored."""
    groups: dict[int, list[dict]] = {}
    for item in items:
        groups.setdefault(int(item["index"]) % COPY, []).append(item)
    mains = sorted({int(i["index"]) for i in items if int(i["index"]) < COPY})
    return {q: all(can_infer(r["prediction"], choices_of(r)) == r["answer"] for r in groups[q])
            for q in mains}


def circular(items: list[dict]) -> float:
    """MMBench circular accuracy (fraction) of the llava protocol: VLMEvalKit's exact matching, no judge; NaN when
    no question is scored."""
    hits = question_hits(list(items))
    return statistics.mean(float(h) for h in hits.values()) if hits else float("nan")


_STDOUT_SWAP = threading.Lock()


def lmms_circular(items: list[dict], eval_method: str = "static", benchmark: str = "MMBench") -> float:
    """lmms-eval's MMBench evaluator (fraction): MMBench's matching, then (static) lmms-eval's MCQ extractor, or
    (openai) the GPT judge. Used by the lmms-eval protocol and, when asked for, the judge. The evaluator's own
    per-category printout (headed the same for EN and CN) is replaced by one block on stderr naming `benchmark`."""
    if not items:
        return float("nan")
    if eval_method == "static":
        from lmms_eval.tasks.mmbench.mmbench_evals import MMBench_Evaluator

        evaluator = MMBench_Evaluator(sys_prompt=SYS_PROMPT)
    else:  # the GPT judge, only when the user asked for it (needs OPENAI_API_KEY)
        from lmms_eval.tasks.mmbench.en_utils import mmbench_evaluator as evaluator
    # stdout stays clean for `--format json`; sys.stdout is process-wide, so one thread at a time swaps it (two
    # interleaved redirects could restore each other's StringIO and swallow everything printed after)
    with _STDOUT_SWAP, contextlib.redirect_stdout(io.StringIO()):
        overall, category, l2_category = evaluator.eval_result(list(items), eval_method=eval_method)
    print(category_block(benchmark, eval_method, category, l2_category), file=sys.stderr)
    return float(overall)


def category_block(benchmark: str, eval_method: str, category: dict, l2_category: dict) -> str:
    """The per-category accuracies (fractions, as lmms-eval returns them) as one block headed by the benchmark."""
    lines = [f"{benchmark}: accuracy by category (lmms-eval's MMBench evaluator, {eval_method} matching)"]
    for title, values in (("category", category), ("L2 category", l2_category)):
        lines.append(f"  {title}:")
        lines += [f"    {name}: {100.0 * value:.1f}%" for name, value in sorted(values.items())]
    return "\n".join(lines)


def lmms_static_for(benchmark: str) -> Callable[..., float]:
    """lmms-eval's MMBench dev aggregate for `benchmark` with eval_method='static' (no GPT judge), x100 as
    lmms-eval reports it."""
    def lmms_mmbench_static(results: list[dict], args=None) -> float:
        return 100.0 * lmms_circular(results, "static", benchmark)

    return lmms_mmbench_static


def circular_judge_for(benchmark: str) -> Callable[[list[dict]], float]:
    """MMBench circular accuracy of `benchmark` with the GPT judge for unparsable answers: only when asked for."""
    def mmbench_circular_judge(items: list[dict]) -> float:
        return lmms_circular(items, "openai", benchmark)

    return mmbench_circular_judge


def item_of(doc: dict, prediction: str) -> dict:
    """What MMBench's evaluator needs from one row and its prediction."""
    keys = ("index", "question", "answer", "hint", "source", "split", "category", "L2-category", "A", "B", "C", "D")
    return {**{k: doc.get(k) for k in keys}, "prediction": prediction.strip()}


def task_overrides(benchmark: str, protocol: str, judge: bool) -> dict:
    """The lmms-eval protocol scores with lmms-eval's static matcher unless the judge is asked for; the llava
    protocol calls the judge only when asked for."""
    if protocol == "lmms-eval" and not judge:
        return {"metric_list": [{"metric": "gpt_eval_score", "aggregation": lmms_static_for(benchmark),
                                 "higher_is_better": True}]}
    if protocol == "llava" and judge:
        return {"metric_list": [{"metric": "circular_accuracy", "aggregation": circular_judge_for(benchmark),
                                 "higher_is_better": True}]}
    return {}


def int_index(dataset):
    """process_docs: `index` as int64 (one version of the hub's card types it as strings, and MMBench's evaluator
    compares it with 1e6 to find the circular copies, docs/facts.md section 3)."""
    from datasets import Value

    feature = dataset.features.get("index") if dataset.features else None
    if feature is None or getattr(feature, "dtype", None) == "int64":
        return dataset
    try:
        return dataset.cast_column("index", Value("int64"))
    except (ValueError, TypeError) as exc:
        raise StfBenchError(f"mmbench: the `index` column ({feature.dtype}) does not hold integers ({exc}); "
                            f"is this MMBench's dev split?") from None


def local_process_docs(files):
    """process_docs for local parquet files: the integer `index`."""
    return int_index


# ---------------------------------------------------------------- bootstrap: one unit per question group


def bootstrap_units(metric: Metric, samples: Sequence[Record]) -> Units | None:
    """One unit per MMBench question: 1 if every circular copy is answered right (the llava protocol's
    circular_accuracy: VLMEvalKit's exact matching; lmms-eval's gpt_eval_score: its static matcher)."""
    records = [s.metrics.get(metric.key) for s in samples]
    if not all(isinstance(r, dict) and "index" in r and "answer" in r and "prediction" in r for r in records):
        return None
    if metric.key == "circular_accuracy":
        answers: dict[int, list[str]] = {}
        for r in sorted(records, key=lambda r: int(r["index"])):
            answers.setdefault(int(r["index"]) % COPY, []).append(str(r["answer"]))
        found = question_hits(records)
        if not found:
            return None
        hits = np.asarray([float(h) for h in found.values()]).reshape(-1, 1)
        return Units([str(q) for q in found], ["".join(answers[q]) for q in found], hits, mean_statistic(100.0))
    import pandas as pd
    from lmms_eval.tasks.mmbench.mmbench_evals import MMBench_Evaluator

    evaluator = MMBench_Evaluator(sys_prompt=SYS_PROMPT)
    data = pd.DataFrame(records).sort_values(by="index")
    data["prediction"] = [str(x) for x in data["prediction"]]
    data.columns = [c if c in "ABCD" else c.lower() for c in data.columns]
    answer_map = dict(zip(data["index"], data["answer"]))
    groups = data.groupby(data["index"] % COPY)
    keys, targets, hits = [], [], []
    for question, sub in groups:
        if question not in answer_map:
            return None  # a copy without its main question: not the layout lmms-eval scores
        keys.append(str(question))
        targets.append("".join(str(a) for a in sub["answer"]))
        hits.append(float(evaluator.eval_sub_data(sub, answer_map, static_only=True)))
    return Units(keys, targets, np.asarray(hits, dtype=float).reshape(-1, 1), mean_statistic(100.0))


# ---------------------------------------------------------------- sample data


def _rows(lang: str) -> list[dict]:
    """MMBench dev: 10 questions with 2-4 options, each followed by its circular copies at index + k * 1e6."""
    rng = rng_for(f"mmbench_{lang}")
    color = (lambda c: CN_COLORS[c]) if lang == "cn" else (lambda c: c)
    shape = (lambda k: CN_SHAPES[k]) if lang == "cn" else (lambda k: k)
    base = []
    for q in range(10):
        n_options = 4 if q < 7 else (3 if q < 9 else 2)
        shapes = scene(rng, 2 if q % 2 else 3)
        if q % 3 == 2 and n_options <= 3:
            target = shapes[0]
            question = (f"图中{color(target.color)}的物体是什么形状？" if lang == "cn"
                        else f"What shape is the {target.color} object?")
            right, wrong = shape(target.kind), [shape(k) for k in SHAPES if k != target.kind]
            category, l2 = "object_localization", "finegrained_perception (instance-level)"
        elif q % 3 == 1:
            question = "图中有几个形状？" if lang == "cn" else "How many shapes are in the image?"
            right, wrong = str(len(shapes)), [n for n in ("1", "2", "3", "4", "5") if n != str(len(shapes))]
            category, l2 = "image_scene", "coarse_perception"
        else:
            target = shapes[0]
            question = (f"图中{shape(target.kind)}是什么颜色？" if lang == "cn"
                        else f"What color is the {target.kind}?")
            right, wrong = color(target.color), [color(c) for c in COLOR_NAMES if c != target.color]
            category, l2 = "attribute_recognition", "finegrained_perception (instance-level)"
        options = rng.sample(wrong, n_options - 1) + [right]
        rng.shuffle(options)
        hint = None if q % 2 else ("图中是一些简单的形状。" if lang == "cn" else "The image shows simple shapes.")
        base.append((100 + 3 * q, question, hint, options, right, category, l2, image_cell(shape_scene(shapes))))
    rows = []
    for index, question, hint, options, right, category, l2, image in base:
        for k in range(len(options)):  # k = 0 is the question itself; k >= 1 its circular copies
            rotated = options[k:] + options[:k]
            letters = dict(zip("ABCD", rotated + [None] * (4 - len(rotated))))
            rows.append({
                "index": index + k * COPY, "question": question, "hint": hint,
                "answer": "ABCD"[rotated.index(right)], **letters, "category": category, "image": image,
                "source": "stf-bench-samples", "L2-category": l2, "comment": None, "split": "dev",
            })
    return rows


def sample_files(source: Source, lang: str) -> SampleFiles:
    """MMBench (en or cn config), dev split."""
    from datasets import Image, Value

    features = {"index": Value("int64"), "question": Value("string"), "hint": Value("string"),
                "answer": Value("string"), "A": Value("string"), "B": Value("string"), "C": Value("string"),
                "D": Value("string"), "category": Value("string"), "image": Image(), "source": Value("string"),
                "L2-category": Value("string"), "comment": Value("string"), "split": Value("string")}
    return single_file(source, features, _rows(lang))
