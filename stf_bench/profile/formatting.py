"""Plain text, Markdown and LaTeX renderings of one small table (JSON is the report dict itself)."""

from __future__ import annotations

from collections.abc import Sequence

from stf_bench.tabular import LEFT, RIGHT, latex_escape, latex_tabular, markdown_table, text_table

FORMATS = ("table", "json", "md", "latex")
# FLOPs units, largest first, as (name, FLOPs per unit)
FLOPS_UNITS = (("TFLOPs", 1e12), ("GFLOPs", 1e9), ("MFLOPs", 1e6), ("kFLOPs", 1e3), ("FLOPs", 1.0))
SMALLEST_TFLOPS = 0.01  # below this a TFLOPs figure prints as 0.00xx: a smaller unit then


def flops_unit(tflops: float) -> tuple[str, float]:
    """The unit to show `tflops` (and figures of the same table) in, and the factor from TFLOPs to it: TFLOPs, the
    paper's unit, down to 0.01; below, the largest unit in which the value is at least 1 (a tiny preset's 25 MFLOPs
    would otherwise print as 0.0000 TFLOPs)."""
    if abs(tflops) >= SMALLEST_TFLOPS or tflops == 0:
        return "TFLOPs", 1.0
    flops = abs(tflops) * 1e12
    name, per_unit = next(((n, u) for n, u in FLOPS_UNITS if flops >= u), FLOPS_UNITS[-1])
    return name, 1e12 / per_unit


SPEEDUP_SPREAD = 0.10  # mean and median ratios further apart than this (relative) disagree


def speedup_disagreement(mean: float, median: float) -> str:
    """'' when the ratio of mean TTFTs and the ratio of medians tell the same story; else a sentence saying how
    they disagree: one says faster and the other slower, or they are more than `SPEEDUP_SPREAD` apart (a few slow
    outliers move the mean, not the median: the timings are too noisy to quote one figure)."""
    both = f"speedup {mean:.2f}x from the means, {median:.2f}x from the medians"
    if (mean > 1) != (median > 1) and mean != median:
        return f"{both}: they disagree on which model is faster; the timings are too noisy to quote either alone"
    if abs(mean / median - 1) > SPEEDUP_SPREAD:
        return f"{both}: they disagree by more than {SPEEDUP_SPREAD:.0%}; outliers move the mean"
    return ""


def format_flops(tflops: float, suffix: str = "") -> str:
    """'1.876 TFLOPs', '25.3 MFLOPs', '2.1 GFLOP/s' (suffix '/s'): the value in a unit that fits, the unit named."""
    name, factor = flops_unit(tflops)
    value = tflops * factor
    digits = 3 if name == "TFLOPs" else 1
    unit = name[:-1] + suffix if suffix else name
    return f"{value:.{digits}f} {unit}"


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], fmt: str, title: str = "",
           notes: Sequence[str] = ()) -> str:
    """`rows` of already formatted cells under `headers` (first column labels, the others figures, right-aligned),
    with a title above and notes below, as `fmt`."""
    align = [LEFT] + [RIGHT] * (len(headers) - 1)
    if fmt == "md":
        lines = [f"**{title}**", ""] if title else []
        lines.append(markdown_table(headers, rows, align))
        return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else [])) + "\n"
    if fmt == "latex":
        lines = [f"% {latex_escape(title)}"] if title else []
        lines.append(latex_tabular([latex_escape(h) for h in headers],
                                   [[latex_escape(c) for c in row] for row in rows], align))
        return "\n".join(lines + [f"% {latex_escape(n)}" for n in notes]) + "\n"
    lines = [title] if title else []
    lines.append(text_table(headers, rows, align))
    return "\n".join(lines + [f"  {n}" for n in notes]) + "\n"
