"""Plots (matplotlib, Agg): accuracy vs TFLOPs, per-benchmark deltas to LLaVA-1.5, latency vs visual tokens.

Each is written as PNG and SVG. Published points come from the paper's tables, reproduced points from the store;
a reproduced model without the numbers a plot needs is listed in the figure's footnote, never plotted as zero.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stf_bench.report.formats import PLOT_TITLES  # noqa: E402
from stf_bench.report.tables import AVG, LATENCY, SAMPLE_DATA, TFLOPS, Row, Table  # noqa: E402

BASELINE_METHOD = "LLaVA-1.5 (full tuning)"
ZOO_METHOD = "LLaVA-1.5-7B"
ZOO_LLM = "vicuna-1.5-7b"
# Visual tokens of Table 9's published models (576 for LLaVA-1.5; 144 = 25% for STF k=2, E=1; paper section 4.1).
PUBLISHED_TOKENS = {"LLaVA-1.5-7B": 576, "STF-7B (ours, k=2, E=1)": 144}


def tick_label(column: str) -> str:
    """'VQA^T' -> 'VQA$^{T}$' (matplotlib mathtext)."""
    base, _, sup = column.partition("^")
    return f"{base}$^{{{sup}}}$" if sup else column


def _save(fig: plt.Figure, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def _footnote(fig: plt.Figure, skipped: list[str]) -> None:
    if skipped:
        text = "not plotted: " + "; ".join(skipped)
        fig.text(0.01, -0.02, text if len(text) < 300 else text[:297] + "...", fontsize=7, va="top", wrap=True)


def pareto_frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The Pareto frontier: the points no other point beats (as accurate or more at no more TFLOPs), by TFLOPs.

    Only real points: nothing is extended past the last one, so no line runs through a dominated point."""
    frontier: list[tuple[float, float]] = []
    best = -np.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            frontier.append((x, y))
            best = y
    return frontier


def accuracy_vs_tflops(table2: Table, out_dir: Path) -> list[Path]:
    """Avg. of the eight benchmarks against TFLOPs: Table 2's published methods, their frontier, our rows."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts, skipped = [], []
    for r in table2.rows:
        x, y = r.cells[TFLOPS].value, r.cells[AVG].value
        if r.attributes.get("data") == SAMPLE_DATA:
            skipped.append(f"{r.method} (sample data, not the benchmarks)")
            continue
        if x is None or y is None:
            if r.source == "reproduced":
                skipped.append(f"{r.method} ({'no paper-convention TFLOPs' if x is None else 'Avg. needs all eight'})")
            continue
        pts.append((x, y, r))
    for x, y, r in pts:
        marker, color = ("o", "tab:blue") if r.source == "published" else ("*", "tab:red")
        ax.scatter(x, y, marker=marker, color=color, s=60 if marker == "*" else 30, zorder=3)
        ax.annotate(r.method, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        if r.source == "reproduced" and r.cells[AVG].ci is not None:
            lo, hi = r.cells[AVG].ci
            ax.errorbar(x, y, yerr=[[y - lo], [hi - y]], color=color, capsize=3)
    frontier = pareto_frontier([(x, y) for x, y, r in pts if r.source == "published"])
    if frontier:  # drawn with its points ringed, so that a one-point frontier (one method dominates) is still seen
        ax.plot(*zip(*frontier), drawstyle="steps-post", color="tab:blue", alpha=0.5, marker="o", markersize=11,
                markerfacecolor="none", label="published frontier" if len(frontier) > 1 else
                "published frontier (one point: it dominates every other published row)")
    ax.scatter([], [], marker="o", color="tab:blue", label="published (paper, Table 2)")
    if any(r.source == "reproduced" for _, _, r in pts):  # no legend entry for what is not drawn
        ax.scatter([], [], marker="*", color="tab:red", label="reproduced (this store)")
    ax.set_xlabel("TFLOPs (LLM over visual tokens, paper convention)")
    ax.set_ylabel("Avg. of 8 benchmarks (%)")
    ax.set_title(PLOT_TITLES["accuracy_vs_tflops"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    _footnote(fig, skipped)
    return _save(fig, out_dir, "accuracy_vs_tflops")


def _baseline_for(row: Row, table2: Table, zoo: Table | None) -> tuple[Row | None, str]:
    """Published rows: LLaVA-1.5 (full tuning). Reproduced: a reproduced LLaVA-1.5 of the same LLM and protocol,
    else the published model zoo."""
    if row.source == "published":
        return next((r for r in table2.rows if r.method == BASELINE_METHOD), None), BASELINE_METHOD
    for r in table2.rows:
        if (r.source == "reproduced" and r is not row and r.attributes.get("projector") == "mlp2x_gelu"
                and r.attributes.get("llm") == row.attributes.get("llm") and r.protocol == row.protocol):
            return r, r.method
    if row.attributes.get("llm") not in (None, ZOO_LLM):
        return None, f"a reproduced LLaVA-1.5 on {row.attributes.get('llm')}"
    ref = next((r for r in zoo.rows if r.source == "published"), None) if zoo else None
    return ref, f"{ZOO_METHOD} (model zoo)"


def deltas_to_llava(table2: Table, zoo: Table | None, benchmarks: list[str], out_dir: Path) -> list[Path]:
    """Per-benchmark difference of each method to LLaVA-1.5 (grouped bars)."""
    series, skipped = [], []
    for r in table2.rows:
        if r.source == "published" and r.method in (BASELINE_METHOD, "LLaVA-1.5 (lora)"):
            continue
        if r.source == "reproduced" and r.attributes.get("projector") == "mlp2x_gelu":
            continue
        if r.attributes.get("data") == SAMPLE_DATA:
            skipped.append(f"{r.method} (sample data, not the benchmarks)")
            continue
        base, base_name = _baseline_for(r, table2, zoo)
        if base is None:
            skipped.append(f"{r.method} (no reference: {base_name})")
            continue
        deltas = [r.cells[b].value - base.cells[b].value if r.cells.get(b) and r.cells[b].value is not None
                  and base.cells.get(b) and base.cells[b].value is not None else np.nan for b in benchmarks]
        if all(np.isnan(deltas)):
            skipped.append(f"{r.method} (no benchmark in common with {base_name})")
            continue
        series.append((f"{r.method}" + ("" if r.source == "published" else f" − {base_name}"), deltas, r.source))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(benchmarks))
    for i, (label, deltas, source) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, deltas, width, label=label,
               hatch="//" if source == "reproduced" else None, edgecolor="black", linewidth=0.3)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, [tick_label(b) for b in benchmarks])
    ax.set_ylabel("difference to LLaVA-1.5 (points)")
    hatched = "; hatched: reproduced" if any(source == "reproduced" for _, _, source in series) else ""
    ax.set_title(f"{PLOT_TITLES['deltas_to_llava']} (published: vs '{BASELINE_METHOD}'{hatched})", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if series:
        ax.legend(fontsize=6, ncol=2, loc="best")
    _footnote(fig, skipped)
    return _save(fig, out_dir, "deltas_to_llava")


def latency_vs_tokens(table9: Table, out_dir: Path) -> list[Path]:
    """Mean TTFT per sample against the number of visual tokens: the paper's 7B-on-A100 points and our measurements,
    each on its own panel and axis (device, model size and batch differ: their milliseconds are not comparable)."""
    skipped = []
    pub = [(PUBLISHED_TOKENS[r.method], r.cells[LATENCY].value, r.method) for r in table9.rows
           if r.source == "published" and r.method in PUBLISHED_TOKENS and r.cells[LATENCY].value is not None]
    groups: dict[str, list[tuple[int, float, str]]] = {}
    for r in table9.rows:
        if r.source != "reproduced":
            continue
        tokens, ttft = r.attributes.get("visual_tokens"), r.cells[LATENCY].value
        if tokens is None or ttft is None:
            skipped.append(r.method)
            continue
        batch = r.attributes.get("batch_size")
        group = f"{r.attributes.get('device', 'unknown device')}, batch {batch or 'unknown'}"
        groups.setdefault(group, []).append((tokens, ttft, r.method))
    panels = ([("published: 7B models, one A100, batch 16", pub, True)] if pub else []) + [
        (where, pts, False) for where, pts in sorted(groups.items())]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.5 * max(1, len(panels)), 4.5), squeeze=False)
    for i, (ax, (where, pts, published)) in enumerate(zip(axes[0], panels, strict=False)):
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o--" if published else "*-", markersize=9,
                color="tab:blue" if published else f"C{i + 1}",
                label="published (paper, Table 9)" if published else "reproduced (this store)")
        for tokens, ttft, label in pts:
            ax.annotate(label.split(" (")[0], (tokens, ttft), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set_title(where if len(where) < 60 else where[:57] + "...", fontsize=9)
        ax.set_xlabel("visual tokens fed to the LLM")
        ax.set_ylabel("time to first token per sample (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(PLOT_TITLES["latency_vs_tokens"] + (": one panel per device and batch" if len(panels) > 1 else ""))
    _footnote(fig, skipped)
    return _save(fig, out_dir, "latency_vs_tokens")


# which table each plot is drawn from (the HTML page of that table embeds it)
PLOT_TABLE = {"accuracy_vs_tflops": "2", "deltas_to_llava": "2", "latency_vs_tokens": "9"}


def write_plots(tables: dict[str, Table], benchmarks: list[str], out_dir: Path) -> list[Path]:
    """Every plot whose table was built; returns the files written."""
    paths: list[Path] = []
    if "2" in tables:
        paths += accuracy_vs_tflops(tables["2"], out_dir)
        paths += deltas_to_llava(tables["2"], tables.get("zoo"), benchmarks, out_dir)
    if "9" in tables:
        paths += latency_vs_tokens(tables["9"], out_dir)
    return paths
