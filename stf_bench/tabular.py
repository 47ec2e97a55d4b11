"""Tables drawn by tabulate: terminal text, Markdown and LaTeX, from cells that are already formatted strings.

What a cell says (precision, CIs, the paper's bold/underline marks, Δ rows) is the caller's; here only the layout.
Markdown cells are escaped here; LaTeX cells arrive escaped (`latex_escape`) or marked up by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import DataRow, Line, TableFormat, tabulate

LEFT, RIGHT = "left", "right"
# LaTeX's special characters in text (a model's name, a file's note), with the text-mode command for each.
LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
                  ">": r"\textgreater{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in text from a model or a file."""
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in text)


def markdown_escape(text: str) -> str:
    """A string made safe for one Markdown table cell (or a heading): no column break, no line break."""
    return text.replace("|", "\\|").replace("\n", " ")


def _aligns(align: Sequence[str] | None, n: int) -> list[str]:
    aligns = list(align or [LEFT] * n)
    if len(aligns) != n or set(aligns) - {LEFT, RIGHT}:
        raise ValueError(f"align: {n} of {LEFT!r}/{RIGHT!r}, not {aligns!r}")
    return aligns


def _rows(rows: Sequence[Sequence[str]]) -> list[list[str]]:
    return [list(r) for r in rows]


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None,
               rule: bool = True) -> str:
    """Columns for a terminal, two spaces apart; a dashed rule under the headers unless `rule` is False."""
    return tabulate(_rows(rows), list(headers), tablefmt="simple" if rule else "plain",
                    colalign=_aligns(align, len(headers)), disable_numparse=True)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """A GitHub pipe table; every cell escaped. Cells are not padded (a changed number changes one line of a
    diff); the rule under the headers carries the alignment (`---:` for a right-aligned column)."""
    aligns = _aligns(align, len(headers))
    rule = "|" + "|".join("---:" if a == RIGHT else "---" for a in aligns) + "|"
    fmt = TableFormat(lineabove=None, linebelowheader=lambda _widths, _aligns: rule, linebetweenrows=None,
                      linebelow=None, headerrow=DataRow("|", "|", "|"), datarow=DataRow("|", "|", "|"), padding=1,
                      with_header_hide=None)
    return tabulate([[markdown_escape(c) for c in r] for r in rows], [markdown_escape(h) for h in headers],
                    tablefmt=fmt, stralign=None, numalign=None, disable_numparse=True)


def latex_tabular(headers: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None,
                  booktabs: bool = False) -> str:
    """A `tabular` of cells that are LaTeX already (escaped or marked up: nothing is escaped here); booktabs
    rules (`\\toprule`...) or `\\hline`. Each row starts at its line's start, columns aligned in the source."""
    aligns = _aligns(align, len(headers))
    top, mid, bottom = (r"\toprule", r"\midrule", r"\bottomrule") if booktabs else (r"\hline",) * 3
    begin = r"\begin{tabular}{" + "".join("r" if a == RIGHT else "l" for a in aligns) + "}"
    row = DataRow("", " & ", r" \\")
    fmt = TableFormat(lineabove=Line(f"{begin}\n{top}", "", "", ""), linebelowheader=Line(mid, "", "", ""),
                      linebetweenrows=None, linebelow=Line(f"{bottom}\n" + r"\end{tabular}", "", "", ""),
                      headerrow=row, datarow=row, padding=0, with_header_hide=None)
    return tabulate(_rows(rows), list(headers), tablefmt=fmt, colalign=aligns, disable_numparse=True)


__all__ = ["LEFT", "RIGHT", "latex_escape", "markdown_escape", "text_table", "markdown_table", "latex_tabular"]
