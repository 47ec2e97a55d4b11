"""Plot helpers: the published frontier."""

from __future__ import annotations

from stf_bench.report.plots import pareto_frontier, tick_label


def test_pareto_frontier_is_the_best_accuracy_at_no_more_compute():
    points = [(1.9, 63.4), (1.9, 66.3), (5.0, 66.3), (7.6, 66.0), (7.6, 65.5), (0.5, 39.8)]
    assert pareto_frontier(points) == [(0.5, 39.8), (1.9, 66.3)]  # only real, non-dominated points
    assert pareto_frontier([]) == []


def test_tick_labels_use_mathtext_superscripts():
    assert tick_label("VQA^T") == "VQA$^{T}$" and tick_label("GQA") == "GQA"


def test_deltas_title_promises_hatching_only_when_a_reproduced_series_is_drawn(tmp_path, monkeypatch):
    from stf_bench.benchmarks import BENCHMARKS, paper8
    from stf_bench.published import load_published
    from stf_bench.report import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out_dir, stem: figures.append(fig) or [])
    from stf_bench.report.tables import build_tables

    published = load_published()
    (table2,) = build_tables(published, None, ["2"])
    assert table2.rows and all(r.source == "published" for r in table2.rows)
    plots.deltas_to_llava(table2, None, [BENCHMARKS[b].column for b in paper8()], tmp_path)
    title = figures[0].axes[0].get_title()
    assert title.startswith("Per-benchmark deltas") and "hatched" not in title


def test_accuracy_plot_has_no_empty_reproduced_legend_entry(tmp_path, monkeypatch):
    from stf_bench.published import load_published
    from stf_bench.report import plots
    from stf_bench.report.tables import build_tables

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out_dir, stem: figures.append(fig) or [])
    (table2,) = build_tables(load_published(), None, ["2"])
    plots.accuracy_vs_tflops(table2, tmp_path)
    labels = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert "published frontier" in labels and not any(label.startswith("reproduced") for label in labels)
