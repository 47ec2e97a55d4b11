"""Plot helpers: the published frontier."""

from __future__ import annotations

from stf_bench.report.plots import pareto_frontier, tick_label


def test_pareto_frontier_is_the_best_accuracy_at_no_more_compute():
    points = [(1.9, 63.4), (1.9, 66.3), (5.0, 66.3), (7.6, 66.0), (7.6, 65.5), (0.5, 39.8)]
    assert pareto_frontier(points) == [(0.5, 39.8), (1.9, 66.3), (7.6, 66.3)]
    assert pareto_frontier([]) == []


def test_tick_labels_use_mathtext_superscripts():
    assert tick_label("VQA^T") == "VQA$^{T}$" and tick_label("GQA") == "GQA"
