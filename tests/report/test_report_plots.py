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
    from stf_bench.accuracy import BENCHMARKS, paper8
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
    assert labels[0].startswith("published frontier") and not any(label.startswith("reproduced") for label in labels)


def test_every_legend_entry_of_the_accuracy_plot_is_drawn(tmp_path, monkeypatch):
    """Table 2's published frontier is one point (STC dominates every other row): a step line through one point
    draws nothing, so the frontier must still be visible (ringed points) for its legend entry to be true."""
    from matplotlib.lines import Line2D

    from stf_bench.published import load_published
    from stf_bench.report import plots
    from stf_bench.report.tables import build_tables

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out_dir, stem: figures.append(fig) or [])
    (table2,) = build_tables(load_published(), None, ["2"])
    plots.accuracy_vs_tflops(table2, tmp_path)
    ax = figures[0].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    (frontier,) = [line for line in ax.get_lines() if line.get_label().startswith("published frontier")]
    assert frontier.get_label() in labels
    assert isinstance(frontier, Line2D) and frontier.get_visible()
    assert len(frontier.get_xdata()) >= 2 or frontier.get_marker() not in (None, "None", "", " ")
    assert list(zip(frontier.get_xdata(), frontier.get_ydata(), strict=True)) == [(1.9, 66.3)]


def test_latency_plot_keeps_published_and_reproduced_on_separate_axes(tmp_path, monkeypatch):
    from stf_bench.report import plots
    from stf_bench.report.tables import LATENCY, SPEEDUP, Cell, Row, Table

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out_dir, stem: figures.append(fig) or [])
    pub = [Row(m, "published", {LATENCY: Cell(v), SPEEDUP: Cell()}) for m, v in
           (("LLaVA-1.5-7B", 346.2), ("STF-7B (ours, k=2, E=1)", 103.8))]
    rep = [Row(f"{m} (cpu, float32, batch 2)", "reproduced", {LATENCY: Cell(v), SPEEDUP: Cell()},
               attributes={"visual_tokens": n, "device": "cpu", "batch_size": 2})
           for m, v, n in (("llava-tiny", 45.3, 576), ("stf-tiny", 35.6, 144))]
    plots.latency_vs_tokens(Table("9", "t", [LATENCY, SPEEDUP], pub + rep), tmp_path)
    axes = figures[0].axes
    assert len(axes) == 2
    ys = [sorted(y for line in ax.get_lines() for y in line.get_ydata()) for ax in axes]
    assert ys == [[103.8, 346.2], [35.6, 45.3]]
    assert "A100" in axes[0].get_title() and "batch 2" in axes[1].get_title() and "cpu" in axes[1].get_title()
