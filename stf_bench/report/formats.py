"""Render report tables as Markdown, LaTeX, HTML, CSV or JSON.

Published cells keep the paper's precision; reproduced cells get one more digit and their bootstrap CI. Under each
reproduced row that has a published counterpart, a difference row gives reproduced - published and the verdict.
'-' is the paper's "not reported"; '—' is a cell we have no reproduced score for. LaTeX and HTML mark the best value
per accuracy column in bold and the second best underlined, as the paper does. HTML escapes every string.
Markdown and LaTeX tables are laid out by tabulate (`stf_bench.tabular`); what a cell says is built here. The HTML
table is built here too: its rows carry a class (reproduced, difference) and its cells a provenance title, which
tabulate's HTML writer has no place for.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math

from stf_bench.accuracy import of_column
from stf_bench.report.tables import (
    AVG,
    LATENCY,
    SAMPLE_DATA,
    SPEEDUP,
    SPEEDUP_MEDIAN,
    STALE,
    TFLOPS,
    Cell,
    Row,
    Table,
)
from stf_bench.tabular import LEFT, RIGHT, latex_escape, latex_tabular, markdown_escape, markdown_table

FORMATS = ("md", "latex", "html", "csv", "json")
EXTENSIONS = {"md": "md", "latex": "tex", "html": "html", "csv": "csv", "json": "json"}
MISSING = "—"
DASH = "-"
LEGEND_PARTS = {  # what each mark means; a table's legend lists only the marks it shows (`legend`)
    "dash": "'-': not reported in the paper",
    "missing": "'—': no reproduced score",
    "ci": "[lo, hi]: 95% bootstrap CI over samples",
    "delta": "Δ: reproduced − published, with the verdict against the per-benchmark tolerance (docs/report.md)",
    "note": "[n]: a note below the table",
}
# the plots' titles, shown as their captions in the HTML report (plots.py draws them with the same titles)
PLOT_TITLES = {"accuracy_vs_tflops": "Accuracy vs compute (Table 2 / Figure 1)",
               "deltas_to_llava": "Per-benchmark deltas to LLaVA-1.5",
               "latency_vs_tokens": "Latency vs visual tokens (Table 9)"}
# columns where higher is better: the ones the paper marks best/second-best
NOT_RANKED = {TFLOPS, LATENCY, SPEEDUP, SPEEDUP_MEDIAN}
DECIMALS = {TFLOPS: 1, SPEEDUP: 1}  # the paper's precision of the columns that are not a benchmark's
REPRODUCED_DECIMALS = {TFLOPS: 3, SPEEDUP: 2, SPEEDUP_MEDIAN: 2}


def decimals(column: str, source: str) -> int:
    """Digits after the point: the paper's (a benchmark's declared `decimals`), one more for a reproduced cell."""
    bench = of_column(column)
    if bench is not None:
        return bench.decimals + (source == "reproduced")
    return REPRODUCED_DECIMALS.get(column, 2) if source == "reproduced" else DECIMALS.get(column, 1)


def fmt(value: float | None, column: str, source: str) -> str:
    """A number at the precision of its source (published: the paper's; reproduced: one more digit)."""
    if value is None:
        return MISSING
    digits = decimals(column, source)
    if value and abs(value) < 10 ** -digits:  # e.g. a tiny preset's TFLOPs: keep three significant digits
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def cell_text(cell: Cell, column: str, source: str, with_ci: bool = True) -> str:
    """A cell as plain text: value, paper dash, or missing; with its CI when it has one."""
    if cell.dash:
        return DASH
    if cell.value is None and source == "published":
        return ""  # not a cell of this row in the paper (e.g. the baseline's speedup)
    text = fmt(cell.value, column, source)
    if with_ci and cell.ci is not None:
        text += f" [{fmt(cell.ci[0], column, source)}, {fmt(cell.ci[1], column, source)}]"
    if cell.stale and cell.value is not None:
        text += f" ({STALE})"
    return text


def delta_text(cell: Cell, column: str) -> str:
    """'-0.38 (match)' for a reproduced cell with a published counterpart; '' otherwise."""
    if cell.verdict is None:
        return ""
    if cell.delta is None:
        return cell.verdict
    return f"{cell.delta:+.{decimals(column, 'reproduced')}f} ({cell.verdict})"


def _has_delta(row: Row) -> bool:
    return row.source == "reproduced" and row.compared_to is not None


def legend(t: Table) -> str:
    """The legend of one table: only the marks it shows (no CI or Δ explained under a table that has neither)."""
    cells = [(r, r.cells[c]) for r in t.rows for c in t.columns]
    shown = {
        "dash": any(cell.dash for _, cell in cells),
        "missing": any(r.source == "reproduced" and cell.value is None and not cell.dash for r, cell in cells),
        "ci": any(cell.ci is not None and not cell.dash for _, cell in cells),
        "delta": any(_has_delta(r) for r in t.rows),
        "note": bool(footnotes(t)[1]),
    }
    parts = [text for key, text in LEGEND_PARTS.items() if shown[key]]
    return "; ".join(parts) + "." if parts else ""


def footnotes(t: Table) -> tuple[dict[tuple[int, str | None], str], list[str]]:
    """Numbered notes of a table: a row's note (what a published row is; why a run is a different setting) and a
    published cell's note (a value printed from another method; an Avg. computed here). Returns the marks, by
    (row index, column; None for the row's name), and the notes' lines in order."""
    marks: dict[tuple[int, str | None], str] = {}
    lines: list[str] = []
    for i, r in enumerate(t.rows):
        keyed = [(None, r.note, r.method)] + ([(c, r.cells[c].note, f"{r.method}, {c}") for c in t.columns]
                                              if r.source == "published" else [])
        for column, note, what in keyed:
            if note:
                marks[(i, column)] = f"[{len(lines) + 1}]"
                lines.append(f"[{len(lines) + 1}] {what}: {note}")
    return marks, lines


def source_text(row: Row) -> str:
    """The Source column: published / reproduced, and a run of a different setting beside a published row says so."""
    return f"{row.source}, different setting" if row.beside else row.source


def _marked(text: str, mark: str | None) -> str:
    return f"{text} {mark}" if mark else text


def ranked(row: Row) -> bool:
    """Whether a row competes for best/second best: not a partial run, not the embedded sample data, not a tiny
    preset (random-width stand-ins whose scores say nothing about the method)."""
    attrs = row.attributes
    tiny = any(str(attrs.get(key) or "").endswith("-tiny") for key in ("preset", "llm"))
    return not attrs.get("partial") and attrs.get("data") != SAMPLE_DATA and not tiny


def ranks(table: Table) -> dict[tuple[int, str], str]:
    """(row index, column) -> 'best' | 'second' over the ranked value rows (`ranked`), for higher-is-better
    columns."""
    out: dict[tuple[int, str], str] = {}
    for column in table.columns:
        if column in NOT_RANKED:
            continue
        values = [(i, r.cells[column].value) for i, r in enumerate(table.rows)
                  if r.cells[column].value is not None and ranked(r)
                  and not r.cells[column].stale]  # nor a stale scorer's cell
        distinct = sorted({v for _, v in values}, reverse=True)
        if len(distinct) < 2:
            continue
        for i, v in values:
            if v == distinct[0]:
                out[(i, column)] = "best"
            elif v == distinct[1]:
                out[(i, column)] = "second"
    return out


# ------------------------------------------------------------------------------------------------ markdown
def _header(t: Table) -> list[str]:
    return ["Method", "Source", *t.columns]


def _align(t: Table) -> list[str]:
    return [LEFT, LEFT] + [RIGHT] * len(t.columns)


def to_markdown(tables: list[Table]) -> str:
    """GitHub-flavoured Markdown, one section per table; every string escaped (`markdown_table`)."""
    parts = []
    for t in tables:
        lines = [f"### Table {t.id}: {markdown_escape(t.title)}", ""]
        if t.note:
            lines += [f"_{markdown_escape(t.note)}_", ""]
        rows = []
        notes, note_lines = footnotes(t)
        for i, r in enumerate(t.rows):
            rows.append([_marked(r.method, notes.get((i, None))), source_text(r),
                         *(_marked(cell_text(r.cells[c], c, r.source), notes.get((i, c))) for c in t.columns)])
            if _has_delta(r):
                rows.append([f"Δ vs {r.compared_to or ''}", "difference", *(delta_text(r.cells[c], c) for c in t.columns)])
        lines += [markdown_table(_header(t), rows, _align(t)), ""]
        lines += [markdown_escape(n) + "  " for n in note_lines] + ([""] if note_lines else [])
        lines += [legend(t), ""] if legend(t) else []
        parts.append("\n".join(lines))
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------ LaTeX
def latex_column(column: str) -> str:
    """'VQA^T' -> 'VQA$^{T}$'; other names escaped."""
    if "^" in column:
        base, sup = column.split("^", 1)
        return f"{latex_escape(base)}$^{{\\mathrm{{{latex_escape(sup)}}}}}$"
    return latex_escape(column)


def _latex_cell(cell: Cell, column: str, source: str, mark: str | None) -> str:
    """A value cell: escaped, in bold (best) or underlined (second best), then its CI in small type."""
    text = latex_escape(cell_text(cell, column, source, with_ci=False))
    if mark == "best":
        text = f"\\textbf{{{text}}}"
    elif mark == "second":
        text = f"\\underline{{{text}}}"
    if cell.ci is not None and not cell.dash:  # as docs/report.md says: reproduced cells carry their CI
        text += (f" {{\\scriptsize [{latex_escape(fmt(cell.ci[0], column, source))}, "
                 f"{latex_escape(fmt(cell.ci[1], column, source))}]}}")
    return text


def to_latex(tables: list[Table]) -> str:
    """booktabs tables; best per accuracy column in bold, second best underlined; CIs in small type."""
    parts = []
    for t in tables:
        marks = ranks(t)
        notes, note_lines = footnotes(t)
        rows = []
        for i, r in enumerate(t.rows):
            rows.append([latex_escape(_marked(r.method, notes.get((i, None)))), latex_escape(source_text(r)),
                         *(_marked(_latex_cell(r.cells[c], c, r.source, marks.get((i, c))),
                                   latex_escape(notes[(i, c)]) if (i, c) in notes else None) for c in t.columns)])
            if _has_delta(r):
                rows.append([f"\\quad $\\Delta$ vs {latex_escape(r.compared_to or '')}", "",
                             *(f"{{\\scriptsize {latex_escape(delta_text(r.cells[c], c))}}}" for c in t.columns)])
        header = ["Method", "Source", *(latex_column(c) for c in t.columns)]
        lines = [r"\begin{table}[t]", r"\centering", r"\small",
                 f"\\caption{{Table {latex_escape(t.id)}: {latex_escape(t.title)}}}",
                 latex_tabular(header, rows, _align(t), booktabs=True)]
        if t.note:
            lines.append(f"\\par\\footnotesize {latex_escape(t.note)}")
        lines += [f"\\par\\footnotesize {latex_escape(n)}" for n in [*note_lines, legend(t)] if n]
        lines.append(r"\end{table}")
        parts.append("\n".join(lines))
    return "% generated by stf-bench report; needs \\usepackage{booktabs}\n" + "\n\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------------ HTML
HTML_STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:.5em}"
              "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,td:nth-child(2),"
              "th:first-child{text-align:left}tr.reproduced{background:#eef6ff}tr.difference{color:#555;"
              "font-size:85%}.ci{color:#666;font-size:85%;white-space:nowrap}p.legend{font-size:85%;color:#444}")


def html_header(column: str) -> str:
    """A column name as HTML: the paper's superscripts (`VQA^T` -> `VQA<sup>T</sup>`), the rest escaped."""
    base, sep, sup = column.partition("^")
    return html.escape(base) + (f"<sup>{html.escape(sup)}</sup>" if sep else "")


def to_html(tables: list[Table], footer: dict[str, str | None] | None = None,
            figures: list[tuple[str, bytes]] | None = None) -> str:
    """A standalone HTML page; every string that came from a model or a file is escaped. `footer`: what the
    page was made with and from (stf-bench version, commit, date, store), printed at its end. `figures`:
    (name, SVG bytes) of the plots, embedded as data: URIs so that the page needs no other file."""
    e = html.escape
    body = []
    for t in tables:
        marks = ranks(t)
        body.append(f"<h2>Table {e(t.id)}: {e(t.title)}</h2>")
        if t.note:
            body.append(f"<p><em>{e(t.note)}</em></p>")
        body.append("<table><thead><tr><th>Method</th><th>Source</th>"
                    + "".join(f"<th>{html_header(c)}</th>" for c in t.columns) + "</tr></thead><tbody>")
        notes, note_lines = footnotes(t)
        for i, r in enumerate(t.rows):
            tds = []
            for c in t.columns:
                cell = r.cells[c]
                text = e(cell_text(cell, c, r.source, with_ci=False))
                if (i, c) in notes:
                    text += f"<sup>{e(notes[(i, c)])}</sup>"
                if marks.get((i, c)) == "best":
                    text = f"<b>{text}</b>"
                elif marks.get((i, c)) == "second":
                    text = f"<u>{text}</u>"
                if cell.ci is not None and not cell.dash:
                    text += (f' <span class="ci">[{e(fmt(cell.ci[0], c, r.source))}, '
                             f'{e(fmt(cell.ci[1], c, r.source))}]</span>')
                title = "; ".join(x for x in (cell.source, cell.note) if x)
                tds.append(f'<td title="{e(title)}">{text}</td>' if title else f"<td>{text}</td>")
            name = e(r.method) + (f"<sup>{e(notes[(i, None)])}</sup>" if (i, None) in notes else "")
            body.append(f'<tr class="{e(r.source)}"><td>{name}</td><td>{e(source_text(r))}</td>{"".join(tds)}</tr>')
            if _has_delta(r):
                body.append(f'<tr class="difference"><td>Δ vs {e(r.compared_to or "")}</td><td>difference</td>'
                            + "".join(f"<td>{e(delta_text(r.cells[c], c))}</td>" for c in t.columns) + "</tr>")
        body.append("</tbody></table>")
        body += [f'<p class="legend">{e(n)}</p>' for n in [*note_lines, legend(t)] if n]
    body += [_html_figure(name, svg) for name, svg in figures or []]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>stf-bench report</title>"
            f"<style>{HTML_STYLE}</style></head><body>\n<h1>stf-bench report</h1>\n" + "\n".join(body)
            + "\n" + _html_footer(footer) + "</body></html>\n")


def _html_figure(name: str, svg: bytes) -> str:
    """One plot as an `<img>` with its SVG inlined as base64 (an `<img>` never runs what an SVG might carry),
    captioned with its title (`PLOT_TITLES`), not its file name."""
    data = base64.b64encode(svg).decode("ascii")
    title = html.escape(PLOT_TITLES.get(name, name.replace("_", " ")))
    return (f'<figure><img alt="{title}" src="data:image/svg+xml;base64,{data}">'
            f"<figcaption>{title}</figcaption></figure>")


def _html_footer(footer: dict[str, str | None] | None) -> str:
    """`<footer>` listing `footer`'s items ('unknown' for a missing value), or nothing."""
    if not footer:
        return ""
    items = "; ".join(f"{html.escape(k)} {html.escape(str(v) if v else 'unknown')}" for k, v in footer.items())
    return f'<footer class="legend">Made with {items}.</footer>\n'



# ------------------------------------------------------------------------------------------------ CSV / JSON
CSV_FIELDS = ["table", "method", "source", "column", "value", "dash", "ci_low", "ci_high", "n", "compared_to",
              "delta", "verdict", "protocol", "note", "cell_source", "beside", "row_note"]


def _csv_text(text: str | None) -> str:
    """Neutralise spreadsheet formulas in strings from models or files."""
    text = "" if text is None else str(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@") and text != DASH else text


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def to_csv(tables: list[Table]) -> str:
    """Long format: one line per cell, with CI, difference and verdict."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for t in tables:
        for r in t.rows:
            for c in t.columns:
                cell = r.cells[c]
                writer.writerow({
                    "table": t.id, "method": _csv_text(r.method), "source": r.source, "column": c,
                    "value": "" if cell.value is None else repr(cell.value), "dash": int(cell.dash),
                    "ci_low": "" if cell.ci is None else repr(cell.ci[0]),
                    "ci_high": "" if cell.ci is None else repr(cell.ci[1]), "n": "" if cell.n is None else cell.n,
                    "compared_to": _csv_text(r.compared_to), "delta": "" if cell.delta is None else repr(cell.delta),
                    "verdict": cell.verdict or "", "protocol": _csv_text(r.protocol), "note": _csv_text(cell.note),
                    "cell_source": _csv_text(cell.source), "beside": _csv_text(r.beside),
                    "row_note": _csv_text(r.note)})
    return buf.getvalue()


def table_json(t: Table) -> dict:
    """{table, title, columns, note, rows: [{method, source, cells: {column: value}, ...}]}."""
    rows = []
    for r in t.rows:
        row = {"method": r.method, "source": r.source, "cells": {c: _num(r.cells[c].value) for c in t.columns}}
        dashes = [c for c in t.columns if r.cells[c].dash]
        if dashes:
            row["dashes"] = dashes
        if r.note:
            row["note"] = r.note
        if r.beside:
            row["beside"] = r.beside
        if r.source == "reproduced":
            row.update(
                ci={c: list(r.cells[c].ci) for c in t.columns if r.cells[c].ci is not None},
                n={c: r.cells[c].n for c in t.columns if r.cells[c].n is not None},
                compared_to=r.compared_to,
                delta={c: r.cells[c].delta for c in t.columns if r.cells[c].delta is not None},
                verdict={c: r.cells[c].verdict for c in t.columns if r.cells[c].verdict is not None},
                notes={c: r.cells[c].note for c in t.columns if r.cells[c].note},
                protocol=r.protocol, run_ids=r.run_ids, attributes=r.attributes)
        else:
            row["sources"] = {c: r.cells[c].source for c in t.columns if r.cells[c].source}
            cell_notes = {c: r.cells[c].note for c in t.columns if r.cells[c].note}
            if cell_notes:
                row["notes"] = cell_notes
        rows.append(row)
    return {"table": t.id, "title": t.title, "columns": t.columns, "note": t.note, "rows": rows}


def to_json(tables: list[Table]) -> str:
    """One table: its object; several: {"tables": [...]}."""
    obj = table_json(tables[0]) if len(tables) == 1 else {"tables": [table_json(t) for t in tables]}
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n"


RENDERERS = {"md": to_markdown, "latex": to_latex, "html": to_html, "csv": to_csv, "json": to_json}


def render(tables: list[Table], fmt_name: str, footer: dict[str, str | None] | None = None,
           figures: list[tuple[str, bytes]] | None = None) -> str:
    """Render `tables` in one of FORMATS; `footer` (provenance) and `figures` (plots) go into the HTML page."""
    if fmt_name == "html":
        return to_html(tables, footer, figures)
    return RENDERERS[fmt_name](tables)


__all__ = ["render", "FORMATS", "EXTENSIONS", "AVG"]
