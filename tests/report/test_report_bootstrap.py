"""Headline metrics per column, and per-sample recomputation checked against lmms-eval's own aggregate functions."""

from __future__ import annotations

import random

import numpy as np
import pytest

from stf_bench.accuracy import of_column
from stf_bench.report.bootstrap import paired_bootstrap, resample_stats, score_ci, task_units
from stf_bench.report.metrics import headline, task_column
from stf_bench.store.ingest import SampleRecord


def test_task_columns_accept_plain_and_stf_names():
    assert task_column("textvqa_val") == task_column("stf_textvqa_val") == "VQA^T"
    assert task_column("mmbench_cn_dev") == "MMB^CN" and task_column("vizwiz_vqa_val") == "VisWiz"
    assert task_column("stf_ocrbench") == "OCRBench" and task_column("chartqa") == "ChartQA"
    assert task_column("mme") is None and task_column("stf_mme") is None


def test_headline_units():
    assert headline("gqa", {"exact_match": 0.62}).value == pytest.approx(62.0)
    assert headline("mmbench_en_dev", {"gpt_eval_score": 64.3}).value == pytest.approx(64.3)  # already percent
    assert headline("stf_mmbench_en_dev", {"circular_accuracy": 0.643}).value == pytest.approx(64.3)
    assert headline("stf_pope", {"pope_f1_avg": 0.859, "pope_accuracy": 0.9}).metric.key == "pope_f1_avg"
    assert headline("pope", {"pope_f1_score": 0.859}).value == pytest.approx(85.9)
    assert headline("stf_ocrbench", {"ocrbench_points": 297.0}).value == pytest.approx(297.0)
    # lmms-eval's OCRBench: total points / 1000; on 1000 rows that is the paper's points, on 10 rows it is rescaled
    assert headline("ocrbench", {"ocrbench_accuracy": 0.297}, n=1000).value == pytest.approx(297.0)
    assert headline("ocrbench", {"ocrbench_accuracy": 0.003}, n=10).value == pytest.approx(300.0)
    assert headline("ocrbench", {"ocrbench_accuracy": 0.003}) is None  # unknown row count: no value
    assert headline("chartqa", {"relaxed_overall": 0.182}, {"relaxed_overall": 0.01}).stderr == pytest.approx(1.0)
    assert headline("gqa", {"other": 1.0}) is None and headline("mme", {"exact_match": 1.0}) is None


def _pope_rows(seed: int, n: int, splits=("adversarial", "popular", "random")) -> list[SampleRecord]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        gt, pred = rng.choice(["yes", "no"]), rng.choice(["yes", "no", "yes", "maybe"])
        item = {"prediction": pred, "ground_truth": gt, "score": float(pred == gt), "category": splits[i % len(splits)]}
        rows.append(SampleRecord(i, None, gt, pred, {"pope_f1_score": item, "pope_f1_avg": item}))
    return rows


def test_pope_f1_matches_lmms_eval(seed=3):
    from lmms_eval.tasks.pope.utils import pope_aggregate_f1_score

    rows = _pope_rows(seed, 200)
    units = task_units(of_column("POPE").headlines()[1], rows)
    assert units.point() == pytest.approx(100 * pope_aggregate_f1_score([r.metrics["pope_f1_score"] for r in rows]))


def test_pope_split_average_matches_the_per_split_f1_mean():
    from lmms_eval.tasks.pope.utils import pope_aggregate_f1_score

    rows = _pope_rows(5, 300)
    expected = np.mean([pope_aggregate_f1_score([r.metrics["pope_f1_avg"] for r in rows
                                                 if r.metrics["pope_f1_avg"]["category"] == s])
                        for s in ("adversarial", "popular", "random")])
    assert task_units(of_column("POPE").headlines()[0], rows).point() == pytest.approx(100 * expected)


def test_mmbench_circular_matches_lmms_eval_static():
    from lmms_eval.tasks.mmbench.mmbench_evals import MMBench_Evaluator

    rng = random.Random(1)
    rows, i = [], 0
    for q in range(12):
        for copy in range(2):
            answer = "ABCD"[(q + copy) % 4]
            pred = answer if rng.random() < 0.8 else "ABCD"[(q + copy + 1) % 4]
            rec = {"index": q + copy * 1_000_000, "question": f"q{q}", "answer": answer, "prediction": pred,
                   "hint": "nan", "source": "s", "split": "dev", "category": "c", "L2-category": "l",
                   "A": "a", "B": "b", "C": "c", "D": "d"}
            rows.append(SampleRecord(i, None, answer, pred, {"gpt_eval_score": rec}))
            i += 1
    expected, _, _ = MMBench_Evaluator(sys_prompt="x").eval_result([r.metrics["gpt_eval_score"] for r in rows],
                                                                   eval_method="static")
    units = task_units(of_column("MMB").headlines()[1], rows)
    assert len(units.keys) == 12 and units.point() == pytest.approx(100 * expected)


def test_ci_covers_the_score_narrows_with_n_and_is_reproducible():
    metric = of_column("GQA").headlines()[0]
    rows = [SampleRecord(i, None, "a", "a", {"exact_match": float(i % 3 != 0)}) for i in range(300)]
    point = 100 * np.mean([r.metrics["exact_match"] for r in rows])
    big = score_ci(metric, rows, point, iters=500)
    small = score_ci(metric, rows[:30], 100 * np.mean([r.metrics["exact_match"] for r in rows[:30]]), iters=500)
    assert big.ci[0] < point < big.ci[1]
    assert big.ci[1] - big.ci[0] < small.ci[1] - small.ci[0]
    assert score_ci(metric, rows, point, iters=500).ci == big.ci  # fixed seed


def test_no_ci_when_records_do_not_reproduce_the_score():
    metric = of_column("GQA").headlines()[0]
    rows = [SampleRecord(i, None, "a", "a", {"exact_match": 1.0}) for i in range(10)]
    result = score_ci(metric, rows, 50.0)
    assert result.ci is None and "give 100.0000, the results file 50.0000" in result.note
    missing = score_ci(metric, [SampleRecord(0, None, "a", "a", {})], 50.0)
    assert missing.ci is None and "lack" in missing.note


def test_paired_bootstrap_sees_a_real_difference_and_none_where_there_is_none():
    metric = of_column("SQA").headlines()[0]
    rng = random.Random(0)
    a = [SampleRecord(i, None, "t", "", {"exact_match": float(rng.random() < 0.8)}) for i in range(400)]
    b = [SampleRecord(i, None, "t", "", {"exact_match": float(rng.random() < 0.6)}) for i in range(400)]
    ua, ub = task_units(metric, a), task_units(metric, b)
    res = paired_bootstrap(ua, ub, iters=1000)
    assert res.diff == pytest.approx(ua.point() - ub.point()) and res.ci[0] > 0 and res.p_value < 0.01
    same = paired_bootstrap(ua, ua, iters=200)
    assert same.diff == 0 and same.p_value == 1.0
    assert resample_stats(ua, 10, 0).shape == (10,)


def test_llava_mmbench_units_follow_the_llava_rule():
    from stf_bench.accuracy import mmbench

    rows, i = [], 0
    preds = {0: ["A", "B"], 1: ["B or C", "C"], 2: ["C", "nothing readable"], 3: ["D.", "(A)"]}
    for q, pair in preds.items():
        for copy, pred in enumerate(pair):
            rec = {"index": q + copy * 1_000_000, "answer": "ABCD"[(q + copy) % 4], "prediction": pred,
                   "A": "a", "B": "b", "C": "c", "D": "d"}
            rows.append(SampleRecord(i, None, rec["answer"], pred, {"circular_accuracy": rec}))
            i += 1
    units = task_units(of_column("MMB").headlines()[0], rows)
    records = [r.metrics["circular_accuracy"] for r in rows]
    assert units.keys == ["0", "1", "2", "3"]
    assert units.point() == pytest.approx(100 * mmbench.circular(records)) == pytest.approx(50.0)
