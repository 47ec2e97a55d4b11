"""Plain text, Markdown and LaTeX renderings of one small table (JSON is the report dict itself)."""

from __future__ import annotations

from collections.abc import Sequence

from stf_bench.tabular import LEFT, RIGHT, latex_escape, latex_tabular, markdown_table, text_table

FORMATS = ("table", "json", "md", "latex")


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
