"""Trivial deterministic models through lmms-eval's simple_evaluate on the samples: units and protocol rules.

An oracle that answers each row's known answer must score 100 everywhere (OCRBench 1000) under both protocols;
a model that answers nonsense scores 0 except where the rule says otherwise (LLaVA's POPE parser reads anything
without 'no'/'not' as yes, so always-yes on balanced labels gives F1 = 2/3); and a chatty but right POPE model
is right under the paper's lenient parsing and wrong under lmms-eval's strict one.
"""

from __future__ import annotations

import zlib

import pytest
from scripted_lm import ScriptedLM

from stf_bench import accuracy as benchmarks
from stf_bench.compat import lmms_evaluator_patched
from stf_bench.data import samples
from stf_bench.run import task_specs


def _target(bench: str, doc: dict) -> str:
    """The row's right answer, as its benchmark module gives it."""
    return benchmarks.BENCHMARKS[bench].target(doc)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STF_BENCH_CACHE", str(root))
        samples.ensure_samples()
    return root


def _run(cache, monkeypatch, tmp_path, answer, protocol, names=None) -> dict:
    import lmms_eval.evaluator as evaluator

    monkeypatch.setenv("STF_BENCH_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # lmms-eval writes submission files into the cwd when given no output path
    setup = task_specs.resolve(list(names or benchmarks.names()), protocol)
    with lmms_evaluator_patched():  # as the runner does: no filelock patch (it fails on filelock >= 4.3)
        results = evaluator.simple_evaluate(model=ScriptedLM(answer), tasks=setup.task_specs,
                                            task_manager=setup.task_manager, log_samples=False, bootstrap_iters=0,
                                            verbosity="ERROR")
    return task_specs.paper_scores(results, setup.lmms_names)


@pytest.mark.parametrize("protocol", task_specs.PROTOCOLS)
def test_oracle_scores_100_in_the_papers_units(cache, monkeypatch, tmp_path, protocol):
    out = _run(cache, monkeypatch, tmp_path, _target, protocol)
    assert list(out) == list(benchmarks.names())
    for bench, metrics in out.items():
        expected = 1000.0 if bench == "ocrbench" else 100.0
        assert metrics, bench
        assert all(v == pytest.approx(expected) for v in metrics.values()), (bench, metrics)
    assert out["pope"]["f1"] == pytest.approx(100.0)


@pytest.mark.parametrize("protocol, pope_f1", [("llava", 200 / 3), ("lmms-eval", 0.0)])
def test_nonsense_scores_zero_except_where_the_rule_says(cache, monkeypatch, tmp_path, protocol, pope_f1):
    out = _run(cache, monkeypatch, tmp_path, lambda bench, doc: "zzz", protocol)
    assert out["pope"]["f1"] == pytest.approx(pope_f1)  # LLaVA: 'zzz' has no 'no' -> yes on every row
    for bench, metrics in out.items():
        if bench != "pope":
            assert list(metrics.values())[0] == 0.0, bench


def _chatty_pope(bench, doc):
    return "Yes, there is one in the image." if doc["answer"] == "yes" else "No, there is not."


@pytest.mark.parametrize("protocol, f1", [("llava", 100.0), ("lmms-eval", 0.0)])
def test_pope_parsing_is_the_protocol_difference(cache, monkeypatch, tmp_path, protocol, f1):
    out = _run(cache, monkeypatch, tmp_path, _chatty_pope, protocol, names=("pope",))
    assert out["pope"]["f1"] == pytest.approx(f1)


def _mixed(bench, doc):
    """Right on about two rows in three, a near miss otherwise: exercises partial credit and both branches."""
    right = _target(bench, doc)
    if zlib.crc32(f"{doc['question']}|{right}".encode()) % 3:
        return right
    return {"pope": "yes" if right == "no" else "no", "scienceqa_img": "A" if right != "A" else "B",
            "ocrbench": "unreadable"}.get(
        bench, f"{right} maybe" if bench != "chartqa" else "0")


def test_lmms_eval_protocol_equals_lmms_evals_own_functions(cache, monkeypatch, tmp_path):
    """Same rows, same predictions: the run's numbers equal lmms-eval's per-row functions aggregated by hand."""
    import statistics

    import datasets
    from lmms_eval.tasks.chartqa.utils import chartqa_process_results
    from lmms_eval.tasks.ocrbench.utils import ocrbench_process_results
    from lmms_eval.tasks.pope.utils import pope_aggregate_f1_score, pope_process_results
    from lmms_eval.tasks.scienceqa.utils import sqa_process_results
    from lmms_eval.tasks.textvqa.utils import textvqa_process_results
    from lmms_eval.tasks.vizwiz_vqa.utils import vizwiz_vqa_process_results
    from lmms_eval.tasks.vqav2.utils import vqav2_process_results_val

    from stf_bench.data.sources import locate

    per_row = {"textvqa_val": (textvqa_process_results, "exact_match"), "vqav2_val": (vqav2_process_results_val,
               "exact_match"), "vizwiz_vqa_val": (vizwiz_vqa_process_results, "exact_match"),
               "scienceqa_img": (sqa_process_results, "exact_match"), "chartqa": (chartqa_process_results,
                                                                                 "relaxed_overall")}
    names = (*per_row, "pope", "ocrbench")
    out = _run(cache, monkeypatch, tmp_path, _mixed, "lmms-eval", names=names)
    for bench in names:
        rows = datasets.load_dataset("parquet", data_files=locate([bench])[bench].data_files())
        rows = list(next(iter(rows.values())))
        preds = [_mixed(bench, r) for r in rows]
        if bench in per_row:
            fn, key = per_row[bench]
            expected = 100 * statistics.mean(fn(r, [p])[key] for r, p in zip(rows, preds))
        elif bench == "pope":
            expected = 100 * pope_aggregate_f1_score([pope_process_results(r, [p])["pope_f1_score"]
                                                      for r, p in zip(rows, preds)])
        else:
            expected = 1000 * statistics.mean(ocrbench_process_results(r, [p])["ocrbench_accuracy"]["score"]
                                               for r, p in zip(rows, preds))
        headline = list(out[bench].values())[0]
        assert headline == pytest.approx(expected), bench
        assert 0 < headline < (1000 if bench == "ocrbench" else 100), bench  # partial credit, not all-or-nothing


def test_one_wrong_circular_copy_fails_the_question(cache, monkeypatch, tmp_path):
    """Answer every MMBench row right except the first circular copy of one question: that question fails."""
    victim = {}

    def answer(bench, doc):
        base = doc["index"] % 1_000_000
        victim.setdefault(bench, base)
        if doc["index"] == victim[bench] + 1_000_000:
            return next(x for x in "ABCD" if x != doc["answer"] and doc[x])
        return doc["answer"]

    out = _run(cache, monkeypatch, tmp_path, answer, "llava", names=("mmbench_en_dev", "mmbench_cn_dev"))
    assert out["mmbench_en_dev"]["circular_accuracy"] == pytest.approx(90.0)  # 9 of 10 questions
    assert out["mmbench_cn_dev"]["circular_accuracy"] == pytest.approx(90.0)
