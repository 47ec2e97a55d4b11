"""Scoring rules on rows built like the real datasets, with hand-worked expected values.

The llava protocol must follow LLaVA-1.5's official rules; the lmms-eval protocol must equal lmms-eval's own
functions (checked on the task objects lmms-eval builds, in tests/run/test_task_specs.py, and on single rows here).
"""

from __future__ import annotations

import importlib
import math

import pytest

from stf_bench.accuracy import (
    chartqa,
    gqa,
    mmbench,
    mmbench_cn_dev,
    mmbench_en_dev,
    ocrbench,
    pope,
    rules,
    scienceqa_img,
    textvqa_val,
    vizwiz_vqa_val,
    vqav2_val,
)

# ---------------------------------------------------------------- VQA accuracy: min(1, matches/3) over 10 leave-one-out


def _crowd(right: str, n_right: int, wrong: str = "cat") -> list[str]:
    return [right] * n_right + [wrong] * (10 - n_right)


@pytest.mark.parametrize("n_right, expected", [
    (0, 0.0),
    (1, 0.3),   # left-out is the match (1/10): 0 left -> 0; otherwise 1 left -> 1/3.  9/10 * 1/3 = 0.3
    (2, 0.6),   # 2/10 * 1/3 + 8/10 * 2/3 = 0.6
    (3, 0.9),   # 3/10 * 2/3 + 7/10 * 1 = 0.9
    (4, 1.0),   # at least 3 matches remain in every subset
    (10, 1.0),
])
def test_vqa_accuracy_leave_one_out(n_right, expected):
    assert rules.vqa_accuracy("dog", _crowd("dog", n_right)) == pytest.approx(expected)


def test_vqa_accuracy_normalises_both_sides():
    crowd = ["two"] * 3 + ["2"] + ["a dog"] * 6
    assert rules.vqa_accuracy("2", crowd) == pytest.approx(1.0)  # "two" -> "2": four matches
    assert rules.vqa_accuracy("Dog.", crowd) == pytest.approx(1.0)  # case, period and article
    assert rules.vqa_accuracy("dogs", crowd) == 0.0


def _vqav2_doc(crowd: list[str]) -> dict:
    return {"question_id": 1, "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                                          for i, a in enumerate(crowd)]}


def test_vqav2_rule_matches_hand_worked_values_and_keeps_the_doc():
    doc = _vqav2_doc(["Yes"] * 2 + ["no"] * 8)
    before = [dict(a) for a in doc["answers"]]
    assert vqav2_val.accuracy("yes", doc) == pytest.approx(0.6)
    assert vqav2_val.accuracy("No.", doc) == pytest.approx(1.0)  # normalised like LLaVA's submission script
    assert doc["answers"] == before  # lmms-eval's function edits answers in place; ours works on a copy


# Expected values reasoned from LLaVA's convert_vqav2_for_submission (EvalAI normaliser on the prediction) and
# GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py @ a013f00: strip both sides; punctuation and
# digit/article processing of references and prediction only when the ten references differ.
@pytest.mark.parametrize("prediction, crowd, expected", [
    ("Yes.", ["yes"] * 10, 1.0),                       # the prediction is normalised by the submission script
    ("YES", ["yes"] * 10, 1.0),
    ("dog", ["Dog"] * 10, 0.0),                        # ten agree: references compared raw (lmms-eval: 1.0)
    ("2", ["Two"] * 10, 0.0),                          # ... no number-word mapping of the references either
    ("two", ["2"] * 10, 1.0),                          # the prediction's "two" becomes "2"
    ("two", ["two"] * 3 + ["2"] + ["a dog"] * 6, 1.0),  # they differ: "two" -> "2" on both sides, 4 matches
    ("Dog.", ["two"] * 3 + ["2"] + ["a dog"] * 6, 1.0),  # article and period dropped on both sides
    ("dogs", ["two"] * 3 + ["2"] + ["a dog"] * 6, 0.0),
    ("The answer is yes", ["yes"] * 10, 0.0),          # "answer is yes" after the article goes
    ("yes\nno", ["yes"] * 10, 0.0),                     # multi-line: "yes no"
    ("yes or no", ["yes"] * 5 + ["no"] * 5, 0.0),      # hedge
    ("", ["yes"] * 10, 0.0),
    ("no", ["yes"] * 9 + ["no"], 0.3),                 # one match: 9 of 10 subsets give 1/3
])
def test_vqav2_official_table(prediction, crowd, expected):
    assert vqav2_val.accuracy(prediction, _vqav2_doc(crowd)) == pytest.approx(expected)


def test_vqa_official_differs_from_lmms_eval_on_unnormalised_references():
    from lmms_eval.tasks.vqav2.utils import vqav2_process_results

    doc = _vqav2_doc(["Dog"] * 10)
    assert vqav2_process_results(doc, ["dog"])["exact_match"] == 1.0  # lmms-eval normalises the ten every time
    assert vqav2_val.accuracy("dog", _vqav2_doc(["Dog"] * 10)) == 0.0


# Expected values reasoned from LLaVA's scripts/convert_vizwiz_for_submission.py (EvalAI normaliser on the
# prediction) and the VizWiz VQA API's vqaEval.py `evaluate` (vendored in TRI-ML/vlm-evaluation
# vlm_eval/util/evaluation/vizwiz/eval.py @ 7292fd6): the prediction is processed again, the ten references never.
@pytest.mark.parametrize("prediction, crowd, expected", [
    ("Unanswerable", ["unanswerable"] * 3 + ["red"] * 7, 0.9),
    ("Red.", ["red"] * 10, 1.0),                        # case and the period go from the prediction
    ("red", ["Red"] * 10, 0.0),                         # ... but a reference keeps its capital (lmms-eval: 1.0)
    ("red", [" red"] * 10, 0.0),                        # ... and its space: references are not even stripped
    ("yes", ["Yes"] * 8 + ["yes"] * 2, 0.6),            # two raw matches (lmms-eval: 1.0)
    ("two", ["2"] * 10, 1.0),                           # number words become digits in the prediction
    ("2", ["two"] * 10, 0.0),                           # ... never in a reference
    ("the red one", ["red 1"] * 10, 1.0),               # article dropped, "one" -> "1"
    ("The answer is red", ["red"] * 10, 0.0),           # "answer is red"
    ("red\nblue", ["red"] * 10, 0.0),                   # multi-line: "red blue"
    ("red or blue", ["red"] * 5 + ["blue"] * 5, 0.0),   # hedge
    ("1,000", ["1000"] * 10, 1.0),                      # the EvalAI normaliser deletes commas
    ("3.5", ["3.5"] * 10, 1.0),                         # a period before a digit stays
    ("dont know", ["don't know"] * 10, 1.0),            # EvalAI restores the straight apostrophe first
    ("dont know", ["don\u2019t know"] * 10, 0.0),       # curly apostrophe in a reference: no match
    ("it's red", ["it's red"] * 10, 0.0),               # EvalAI splits "'s" off: "it 's red"
    ("\uff32\uff25\uff24", ["red"] * 10, 0.0),           # full-width letters are not folded
    ("caf\u00e9", ["cafe"] * 10, 0.0),                  # nor accents
    ("", ["unanswerable"] * 10, 0.0),
    ("", [""] * 10, 1.0),                               # an empty prediction matches empty references
    ("no", ["yes"] * 9 + ["no"], 0.3),
])
def test_vizwiz_official_table(prediction, crowd, expected):
    doc = {"question_id": "VizWiz_val_00000001", "answers": list(crowd)}
    assert vizwiz_vqa_val.accuracy(prediction, doc) == pytest.approx(expected)
    assert doc["answers"] == crowd  # the doc is not modified


def test_vizwiz_api_rule_processes_the_prediction_only():
    # the API's own processing (no EvalAI step): contractions gain a curly apostrophe, "a"/"the" go, "none" -> "0"
    assert vizwiz_vqa_val.official_accuracy("dont", ["don\u2019t"] * 10) == 1.0
    assert vizwiz_vqa_val.official_accuracy("dont", ["don't"] * 10) == 0.0
    assert vizwiz_vqa_val.official_accuracy("None", ["0"] * 10) == 1.0
    assert vizwiz_vqa_val.official_accuracy("a (blue) box", ["blue box"] * 10) == 1.0
    assert vizwiz_vqa_val.official_accuracy("blue", ["Blue"] * 10) == 0.0


def test_vizwiz_differs_from_lmms_eval_on_unnormalised_references():
    from lmms_eval.tasks.vizwiz_vqa.utils import vizwiz_vqa_process_results

    assert vizwiz_vqa_process_results({"question_id": "q", "answers": ["Red"] * 10}, ["red"])["exact_match"] == 1.0
    assert vizwiz_vqa_val.accuracy("red", {"question_id": "q", "answers": ["Red"] * 10}) == 0.0


def test_vizwiz_and_textvqa_rules():
    doc = {"question_id": "VizWiz_val_00000001", "answers": ["unanswerable"] * 3 + ["red"] * 7}
    assert vizwiz_vqa_val.accuracy("Unanswerable", doc) == pytest.approx(0.9)
    assert textvqa_val.accuracy("RED", {"question_id": 7, "answers": doc["answers"]}) == pytest.approx(1.0)


# ---------------------------------------------------------------- POPE


@pytest.mark.parametrize("text, parsed", [
    ("Yes", "yes"), ("No", "no"), ("no", "no"),
    ("Yes, there is a dog in the image.", "yes"),
    ("No, there is no dog.", "no"),
    ("There is not a dog in the image.", "no"),
    ("Yes. There is no cat, though.", "yes"),  # only the first sentence counts
    ("There is nothing.", "yes"),  # words, not substrings
    ("NO", "yes"),  # LLaVA matches 'No', 'no', 'not' exactly: an all-caps NO is read as yes
    ("Absolutely", "yes"),
])
def test_pope_lenient_parsing(text, parsed):
    assert pope.parse(text) == parsed


def _pope_items(category: str, pairs: list[tuple[str, str]]) -> list[dict]:
    return [{"category": category, "prediction": p, "ground_truth": g, "score": float(p == g), "question_id": str(i)}
            for i, (p, g) in enumerate(pairs)]


def test_pope_f1_is_averaged_over_splits():
    # adversarial: TP=2 FP=1 FN=1 -> P=R=2/3, F1=2/3; popular: perfect -> 1; random: always yes on 2 yes + 2 no
    # -> P=1/2, R=1, F1=2/3.  Average (2/3 + 1 + 2/3)/3 = 7/9.
    adversarial = _pope_items("adversarial", [("yes", "yes"), ("yes", "yes"), ("yes", "no"), ("no", "yes"),
                                              ("no", "no")])
    popular = _pope_items("popular", [("yes", "yes"), ("no", "no")])
    random = _pope_items("random", [("yes", "yes"), ("yes", "yes"), ("yes", "no"), ("yes", "no")])
    items = adversarial + popular + random
    assert pope.f1(adversarial) == pytest.approx(2 / 3)
    assert pope.f1(random) == pytest.approx(2 / 3)
    assert pope.f1_average(items) == pytest.approx(7 / 9)
    # pooled F1 (lmms-eval's `pope` task) differs: TP=5 FP=3 FN=1 -> P=5/8, R=5/6, F1=5/7
    assert pope.f1(items) == pytest.approx(5 / 7)


def test_pope_process_results_feeds_each_split_and_the_average():
    doc = {"question_id": "3", "category": "popular", "answer": "no", "question": "Is there a dog in the image?"}
    out = pope.process_results(doc, ["No, there is not."])
    assert set(out) == {"pope_f1_avg", "pope_accuracy", "pope_f1_popular"}
    assert out["pope_f1_popular"]["prediction"] == "no" and out["pope_accuracy"]["score"] == 1.0


# ---------------------------------------------------------------- MMBench circular


def _mmbench_rows(index: int, options: list[str], right: str) -> list[dict]:
    rows = []
    for k in range(len(options)):
        rotated = options[k:] + options[:k]
        rows.append({"index": index + k * 1_000_000, "question": "What color is the circle?", "hint": None,
                     "answer": "ABCD"[rotated.index(right)], **dict(zip("ABCD", rotated + [None] * 4)),
                     "category": "attribute_recognition", "L2-category": "finegrained_perception (instance-level)",
                     "source": "test", "split": "dev"})
    return rows


def _answer_all(rows: list[dict], wrong_at: set[int] = frozenset(), style: str = "letter") -> list[dict]:
    items = []
    for k, row in enumerate(rows):
        letter = row["answer"] if k not in wrong_at else next(x for x in "ABCD" if x != row["answer"] and row[x])
        text = {"letter": letter, "dotted": f"{letter}. {row[letter]}", "text": f"It is {row[letter]}"}[style]
        items.append(mmbench.item_of(row, text))
    return items


def test_mmbench_circular_needs_every_copy_right():
    q1 = _mmbench_rows(7, ["red", "blue", "green", "black"], "green")
    q2 = _mmbench_rows(8, ["one", "two", "three"], "two")
    assert [r["answer"] for r in q1] == ["C", "B", "A", "D"]  # the right option moves with each rotation
    assert mmbench.circular(_answer_all(q1) + _answer_all(q2)) == pytest.approx(1.0)
    # one wrong copy of q1 sinks q1 only: 1 of 2 questions
    assert mmbench.circular(_answer_all(q1, wrong_at={2}) + _answer_all(q2)) == pytest.approx(0.5)
    # a copy answered wrongly fails the question even if the original is right
    assert mmbench.circular(_answer_all(q2, wrong_at={1})) == 0.0


@pytest.mark.parametrize("style", ["dotted", "text"])
def test_mmbench_extracts_answers_without_a_judge(style):
    q = _mmbench_rows(3, ["red", "blue", "green", "black"], "blue")
    assert mmbench.circular(_answer_all(q, style=style)) == pytest.approx(1.0)


_COLOURS = {"A": "red", "B": "blue", "C": "green", "D": "black"}


# Expected values reasoned from open-compass/VLMEvalKit vlmeval/utils/matching_util.py @ aca64dbb (can_infer =
# can_infer_option, then can_infer_text): ".()[],:;!*#{}" become spaces, the answer is split into words, exactly one
# option letter among the words wins; "Z" (a word, or a refusal phrase) is a refusal; otherwise exactly one option
# text occurring (lower-cased) in the answer. None and "Z" both count wrong under exact matching.
@pytest.mark.parametrize("prediction, choices, inferred", [
    ("B", _COLOURS, "B"), ("B.", _COLOURS, "B"), ("(B)", _COLOURS, "B"), ("**B**", _COLOURS, "B"),
    ("B: blue", _COLOURS, "B"), ("Option B", _COLOURS, "B"), (" B\n", _COLOURS, "B"),
    ("The answer is B.", _COLOURS, "B"),
    ("I think it is B because the circle is blue", _COLOURS, "B"),  # any position (the 2025-08 rule: last 4 words)
    ("B. red", _COLOURS, "B"),                  # the letter wins over the text of option A
    ("A blue circle", _COLOURS, "A"),           # the article "A" is read as option A
    ("b", _COLOURS, None),                      # lower-case letters are not options
    ("B or C", _COLOURS, None),                 # hedge: two letters, and no option text
    ("B\nC", _COLOURS, None),                   # multi-line: two letters
    ("A. red B. blue", _COLOURS, None),         # two letters, two texts
    ("B,C", _COLOURS, None),                    # "," separates: two letters
    ("Blue", _COLOURS, "B"),                    # option text, any case
    ("It is blue, not red.", _COLOURS, None),   # two option texts
    ("I am tired.", _COLOURS, "A"),             # text match is a substring match: "tired" holds "red"
    ("bluegreen", _COLOURS, None),
    ("D", {"A": "red", "B": "blue", "C": "green"}, None),  # not an option of this row
    ("[A]", {"A": "B", "B": "A"}, "A"),         # the letter in brackets, though option texts are letters
    ("Z", _COLOURS, "Z"), ("Cannot determine the answer", _COLOURS, "Z"),  # refusals
    ("\uff22", _COLOURS, None),                  # full-width B
    ("\u7b54\u6848\u662fB", _COLOURS, None),       # "答案是B": no separate letter, no option text
    ("\u9009 B", _COLOURS, "B"),                  # "选 B": the letter stands alone
    ("", _COLOURS, None),
])
def test_mmbench_can_infer_table(prediction, choices, inferred):
    assert mmbench.can_infer(prediction, dict(choices)) == inferred


def test_mmbench_unmatched_and_double_answers_fail_the_question():
    q = _mmbench_rows(4, ["red", "blue", "green", "black"], "blue")
    items = _answer_all(q)
    assert mmbench.circular(items) == 1.0
    other = next(x for x in "ABCD" if x != q[2]["answer"])
    hedged = [*items[:2], mmbench.item_of(q[2], f"{q[2]['answer']} or {other}"), *items[3:]]
    assert mmbench.circular(hedged) == 0.0  # one copy names two options
    unmatched = [*items[:3], mmbench.item_of(q[3], "I cannot tell")]
    assert mmbench.circular(unmatched) == 0.0  # one copy says nothing readable
    refused = [mmbench.item_of(q[0], "Z"), *items[1:]]
    assert mmbench.circular(refused) == 0.0
    assert mmbench.question_hits(unmatched) == {4: False}


def test_mmbench_copies_without_their_main_row_are_not_scored():
    q = _mmbench_rows(6, ["red", "blue"], "red")
    assert mmbench.question_hits(_answer_all(q)[1:]) == {}
    assert math.isnan(mmbench.circular(_answer_all(q)[1:]))


def test_mmbench_llava_rule_is_stricter_than_lmms_evals_fallback():
    q = _mmbench_rows(9, ["red", "blue", "green", "black"], "blue")
    hedges = [mmbench.item_of(r, f"{r['answer']} or {next(x for x in 'ABCD' if x != r['answer'])}") for r in q]
    assert mmbench.lmms_circular(hedges) == 1.0  # lmms-eval's extractor takes the first letter
    assert mmbench.circular(hedges) == 0.0


def test_mmbench_prompt_follows_llava():
    row = {**_mmbench_rows(5, ["red", "blue", "green"], "blue")[0], "hint": "Look at the shapes."}
    assert mmbench_en_dev.doc_to_text(row) == ("Look at the shapes.\nWhat color is the circle?\nA. red\nB. blue\n"
                                              "C. green\nAnswer with the option's letter from the given choices "
                                              "directly.")
    assert mmbench_cn_dev.doc_to_text({**row, "hint": "nan"}).endswith("C. green\n请直接回答选项字母。")


# ---------------------------------------------------------------- SQA, GQA, OCRBench, ChartQA


# Expected values reasoned from haotian-liu/LLaVA main, llava/eval/eval_science_qa.py @ c121f04: exact letter, or
# text[0] letter + ". ", else re.findall(r'The answer is ([A-Z]).') with exactly one hit; answers are stripped first
# (model_vqa_science). "Hmm. The answer is A" was 0 under the unmerged PR #1279 parser: main needs a char after X.
@pytest.mark.parametrize("text, n, index", [
    ("B", 3, 1), ("B. blue", 3, 1), ("The answer is C.", 3, 2), ("Hmm. The answer is A", 2, -1),
    ("b", 3, -1), ("D", 3, -1), ("(B)", 3, -1), ("B.blue", 3, -1),
    (" B \n", 3, 1),                                 # stripped before scoring
    ("B.", 3, -1),                                   # too short for "X. ", no "The answer is"
    ("The answer is C", 3, -1),                      # the pattern's "." needs one more character
    ("The answer is AB", 3, 0),                      # ... any character, even a letter
    ("The answer is B\nbecause", 3, -1),             # "." does not match a newline
    ("The answer is A. The answer is A.", 3, -1),    # two hits: FAILED
    ("the answer is B.", 3, -1),                     # case-sensitive
    ("The answer is the letter C.", 3, -1),          # article before the letter
    ("Answer: B. The answer is B.", 3, 1),           # "An" is not "X. ", one regex hit
    ("The answer is D.", 3, -1), ("The answer is Z.", 3, -1),  # beyond the choices
    ("A. circle\nB. square", 2, 0),                  # multi-line: the first "X. " wins
    ("B or C", 3, -1),                               # hedge
    ("\uff22", 3, -1),                               # full-width B
    ("", 3, -1), ("E", 5, 4),
])
def test_sqa_parser_is_llavas(text, n, index):
    assert scienceqa_img.parse(text, n) == index


def test_sqa_prompt_and_score():
    doc = {"question": "Which shape is shown?", "choices": ["circle", "square"], "answer": 1, "hint": "A picture."}
    assert scienceqa_img.doc_to_text(doc) == ("Context: A picture.\nWhich shape is shown?\nA. circle\nB. square\n"
                                       "Answer with the option's letter from the given choices directly.")
    assert scienceqa_img.process_results(doc, ["B"])["exact_match"] == 1.0
    assert scienceqa_img.process_results(doc, ["A"])["exact_match"] == 0.0
    assert not scienceqa_img.doc_to_text({**doc, "hint": ""}).startswith("Context")


@pytest.mark.parametrize("text, answer, ok", [
    ("Yes.", "yes", True), (" left ", "left", True), ("Left...", "left", True), ("the left", "left", False),
])
def test_gqa_normalisation(text, answer, ok):
    assert gqa.correct(text, answer) is ok


def test_textvqa_prompt_carries_ocr_tokens():
    doc = {"question": "what is the first word?", "ocr_tokens": ["HOTEL", "MARKET"]}
    assert textvqa_val.doc_to_text(doc) == ("what is the first word?\nReference OCR token: HOTEL, MARKET\n"
                                           "Answer the question using a single word or phrase.")
    assert "Reference" not in textvqa_val.doc_to_text({**doc, "ocr_tokens": []})


def test_ocrbench_points_and_the_reset_aggregate(tmp_path, monkeypatch):
    from lmms_eval.tasks.ocrbench import utils as ocr

    monkeypatch.chdir(tmp_path)  # lmms-eval's aggregate writes results/ocrbench_results.txt into the cwd

    items = [{"question_type": "Regular Text Recognition", "score": s} for s in (1, 0, 1, 1)]
    assert ocrbench.points(items) == pytest.approx(750.0)
    # lmms-eval's own aggregate accumulates a module-global total: a second call doubles it
    first = ocr.ocrbench_aggregate_accuracy(items, None)
    assert ocr.ocrbench_aggregate_accuracy(items, None) == pytest.approx(2 * first)
    # ours resets it, so every call returns lmms-eval's first-call value (points / 1000)
    assert ocrbench.lmms_aggregate(items) == pytest.approx(0.003)
    assert ocrbench.lmms_aggregate(items) == pytest.approx(0.003)


def test_ocrbench_row_rule():
    doc = {"dataset": "HME100k", "question_type": "Handwritten Mathematical Expression Recognition",
           "answer": ["x+1=3"], "question": "q"}
    assert ocrbench.score("$x + 1 = 3$", doc) == 1  # HME ignores spaces
    doc = {"dataset": "IIIT5K", "question_type": "Regular Text Recognition", "answer": ["hotel"], "question": "q"}
    assert ocrbench.score("It says HOTEL", doc) == 1 and ocrbench.score("motel", doc) == 0


@pytest.mark.parametrize("pred, answer, ok", [
    ("10.4", "10", True), ("10.6", "10", False), ("5%", "0.05", True), ("fig", "Fig", True), ("Figs", "Fig", False),
])
def test_chartqa_relaxed_accuracy(pred, answer, ok):
    assert rules.relaxed_correct(pred, answer) is ok


def test_chartqa_rows_feed_their_split():
    out = chartqa.process_results({"type": "augmented_test", "answer": "12"}, ["12.3"])
    assert out == {"relaxed_overall": 1.0, "relaxed_augmented_split": 1.0}


# ---------------------------------------------------------------- lmms-eval protocol: its own functions


def test_lmms_mmbench_static_equals_lmms_evals_evaluator():
    from lmms_eval.tasks.mmbench.mmbench_evals import MMBench_Evaluator

    q = _mmbench_rows(1, ["a", "b", "c", "d"], "c") + _mmbench_rows(2, ["x", "y"], "y")
    items = _answer_all(q[:4], wrong_at={3}) + _answer_all(q[4:])
    expected, _, _ = MMBench_Evaluator(sys_prompt="There are several options:").eval_result(items, "static")
    assert mmbench.lmms_static_for("mmbench_en_dev")(items) == pytest.approx(100 * expected) == pytest.approx(50.0)


def test_mmbench_category_block_names_the_benchmark_and_prints_once(capsys):
    """lmms-eval's evaluator prints "Category Acc. (dev):" for EN and CN alike: one block per call instead, on stderr,
    headed by the benchmark, nothing on stdout (`--format json`)."""
    q = _mmbench_rows(1, ["a", "b", "c", "d"], "c") + _mmbench_rows(2, ["x", "y"], "y")
    items = _answer_all(q[:4], wrong_at={3}) + _answer_all(q[4:])
    for name in ("mmbench_en_dev", "mmbench_cn_dev"):
        mmbench.lmms_static_for(name)(items)
    out, err = capsys.readouterr()
    assert out == "" and "Category Acc." not in err
    assert [line.split(":")[0] for line in err.splitlines() if not line.startswith(" ")] == [
        "mmbench_en_dev", "mmbench_cn_dev"]


def test_empty_inputs_do_not_pretend_to_score():
    assert math.isnan(ocrbench.points([]))
    assert math.isnan(mmbench.circular([]))


def test_pope_split_without_a_yes_prediction_scores_f1_zero():
    # LLaVA's eval_pope.py computes precision = TP / (TP + FP): with no "yes" prediction in a split that divides by
    # zero and the script stops; stf-bench scores that split's F1 as 0 and averages it with the others.
    silent = _pope_items("adversarial", [("no", "yes"), ("no", "no"), ("no", "yes")])
    perfect = _pope_items("popular", [("yes", "yes"), ("no", "no")])
    assert pope.f1(silent) == 0.0
    assert pope.f1_average(silent + perfect) == pytest.approx(0.5)


# ---------------------------------------------------------------- thread safety (lmms-eval 0.7.3 scores each row in
# 4 threads: process_docs_parallel=4). Each check runs the same work serially and from many threads with the GIL
# switched every microsecond, and wants the same values.


@pytest.fixture
def frequent_thread_switches():
    import sys

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def _in_threads(work, items, workers: int = 8) -> list:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, items))


def _row_scoring_jobs() -> list[tuple]:
    """(process_results, doc, prediction) for every sample row of every stf_llava task YAML, each row with its
    right answer and two wrong ones."""
    import re

    import yaml

    from stf_bench.accuracy import BENCHMARKS
    from stf_bench.run.task_specs import TASKS_DIR

    def function(path: str):
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)

    jobs = []
    for bench, declared in BENCHMARKS.items():
        text = (TASKS_DIR / f"stf_{bench}.yaml").read_text()
        process = function(re.search(r"process_results: !function ([\w.]+)", text).group(1))
        target = yaml.safe_load(re.sub(r"!function ([\w.]+)", r"\1", text))["doc_to_target"]
        rows = next(rows for _, rows in declared.hook("sample_files")().values() if "question" in rows[0])
        for doc in rows:
            right = function(target)(doc) if "." in target else doc[target]
            right = "ABCDE"[right] if isinstance(right, int) else str(right)
            for prediction in (right, f"The answer is {right}.", "No, it's two dogs."):
                jobs.append((process, doc, prediction))
    return jobs


def test_row_scorers_give_the_same_values_in_concurrent_threads(frequent_thread_switches):
    import copy
    import json

    jobs = _row_scoring_jobs()
    assert {job[0].__module__.rpartition(".")[2] for job in jobs} >= {"gqa", "vizwiz_vqa_val", "ocrbench", "mmbench"}

    def score(job):
        process, doc, prediction = job
        return json.dumps(process(doc, [prediction]), sort_keys=True, default=str)

    serial = [score(job) for job in copy.deepcopy(jobs)]
    assert len(set(serial)) > len(jobs) // 10  # the rows and predictions really score differently
    for _ in range(3):
        assert _in_threads(score, copy.deepcopy(jobs)) == serial


def test_ocrbench_aggregates_in_concurrent_threads_each_count_their_own_rows(tmp_path, monkeypatch,
                                                                            frequent_thread_switches):
    monkeypatch.chdir(tmp_path)  # lmms-eval's aggregate writes results/ocrbench_results.txt into the cwd
    runs = [[{"question_type": "Regular Text Recognition", "score": int(i % n == 0)} for i in range(3000)]
            for n in (1, 2, 3, 5, 7, 11, 13, 17)]
    serial = [ocrbench.lmms_aggregate(items) for items in runs]
    assert serial == [sum(i["score"] for i in items) / 1000 for items in runs]
    for _ in range(3):
        assert _in_threads(ocrbench.lmms_aggregate, runs) == serial


def test_mmbench_aggregates_in_concurrent_threads_leave_stdout_alone(frequent_thread_switches):
    import sys

    stdout = sys.stdout
    items = [{"index": i + copy * 1_000_000, "question": f"q{i}", "answer": "A", "hint": "nan", "source": "s",
              "split": "dev", "category": "c", "L2-category": "l", "A": "cat", "B": "dog", "C": "nan", "D": "nan",
              "prediction": "A" if i % 2 else "B"} for i in range(6) for copy in range(2)]
    serial = mmbench.lmms_circular(items)
    assert _in_threads(lambda _: mmbench.lmms_circular(items), range(8)) == [serial] * 8
    assert sys.stdout is stdout
