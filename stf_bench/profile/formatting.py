"""Plain text, Markdown and LaTeX renderings of one small table (JSON is the report dict itself)."""

from __future__ import annotations

from collections.abc import Sequence

FORMATS = ("table", "json", "md", "latex")
_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], fmt: str, title: str = "",
           notes: Sequence[str] = ()) -> str:
    """`rows` of already formatted cells under `headers`, with a title above and notes below, as `fmt`."""
    if fmt == "md":
        lines = [f"**{title}**", ""] if title else []
        lines += ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else [])) + "\n"
    if fmt == "latex":
        lines = [f"% {latex_escape(title)}"] if title else []
        lines += [r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}", r"\hline",
                  " & ".join(latex_escape(h) for h in headers) + r" \\", r"\hline"]
        lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
        lines += [r"\hline", r"\end{tabular}"] + [f"% {latex_escape(n)}" for n in notes]
        return "\n".join(lines) + "\n"
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    lines = [title] if title else []
    lines += [line(headers), "  ".join("-" * w for w in widths)] + [line(row) for row in rows]
    return "\n".join(lines + [f"  {n}" for n in notes]) + "\n"
