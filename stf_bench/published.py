"""The paper's published numbers, loaded from `baselines/` (tables.yaml: layout; published.csv: one line per cell).

Every published cell carries its table, row, column and source; a '-' in the paper is kept as a dash (shown as
such, never treated as a number). Tables 10 and 11 have columns but no published cells in our copy of the paper.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from stf_bench.errors import StfBenchError
from stf_bench.resources import shipped_dir

BASELINES_ENV = "STF_BENCH_BASELINES"
DASH = "-"
CSV_FIELDS = ["table", "method", "column", "value", "source"]


@dataclass(frozen=True)
class PublishedRow:
    """One published row: its cells (None where the paper prints '-'), the sources, and its match attributes.

    `match`: the runs judged as its reproduction. `beside`: runs of a different setting (a training-free method
    beside a fine-tuned row) placed after it, labelled with `beside_note`, never judged against it. `note`: what the
    row is (a footnote); `cell_notes`: a footnote per cell (e.g. a value the paper printed from another method);
    `not_judged`: columns whose cell is not the row's own value, so no run is judged against it there."""

    method: str
    cells: dict[str, float | None]
    sources: dict[str, str]
    match: dict = field(default_factory=dict)
    beside: dict = field(default_factory=dict)
    beside_note: str = ""
    note: str = ""
    cell_notes: dict[str, str] = field(default_factory=dict)
    not_judged: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    """One of the paper's tables: id, title, columns in the paper's order, published rows in order."""

    id: str
    title: str
    columns: list[str]
    rows: list[PublishedRow]
    members: str | list[str]
    accepts: list[dict]
    note: str = ""

    def row(self, method: str) -> PublishedRow:
        """The published row called `method`."""
        for r in self.rows:
            if r.method == method:
                return r
        raise KeyError(method)


@dataclass(frozen=True)
class Published:
    """All tables plus the eight benchmarks that make up Avg."""

    paper: str
    benchmarks: list[str]
    tables: dict[str, TableSpec]


def baselines_dir(path: str | os.PathLike | None = None) -> Path:
    """`path`, else $STF_BENCH_BASELINES, else the shipped `baselines/` folder (`stf_bench.resources`)."""
    if path is None:
        path = os.environ.get(BASELINES_ENV) or shipped_dir("baselines")
    return Path(path)


def load_published(path: str | os.PathLike | None = None) -> Published:
    """Load and validate tables.yaml + published.csv; any inconsistency is a StfBenchError naming the file."""
    return _load(str(baselines_dir(path).resolve()))


@lru_cache(maxsize=4)
def _load(folder: str) -> Published:
    layout_path, cells_path = Path(folder) / "tables.yaml", Path(folder) / "published.csv"
    for p in (layout_path, cells_path):
        if not p.is_file():
            raise StfBenchError(f"{p}: missing; the published numbers live in baselines/ (tables.yaml and "
                                f"published.csv); set {BASELINES_ENV} to a copy of that folder")
    try:
        layout = yaml.safe_load(layout_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise StfBenchError(f"{layout_path}: not valid YAML ({exc})") from None
    if not isinstance(layout, dict) or not isinstance(layout.get("tables"), dict):
        raise StfBenchError(f"{layout_path}: expected a mapping with 'paper', 'benchmarks' and 'tables'")
    cells = _read_cells(cells_path)
    tables: dict[str, TableSpec] = {}
    for tid, spec in layout["tables"].items():
        tid = str(tid)
        columns = [str(c) for c in spec.get("columns", [])]
        rows = []
        for r in spec.get("rows") or []:
            method = str(r["method"])
            got = cells.pop((tid, method), {})
            unknown = set(got) - set(columns)
            if unknown:
                raise StfBenchError(f"{cells_path}: table {tid} row {method!r} has cells for columns "
                                    f"{sorted(unknown)} that tables.yaml does not list")
            if not got:
                raise StfBenchError(f"{cells_path}: table {tid} row {method!r} has no cells")
            cell_notes = {str(c): str(n) for c, n in (r.get("cell_notes") or {}).items()}
            if set(cell_notes) - set(got):
                raise StfBenchError(f"{layout_path}: table {tid} row {method!r} has cell_notes for "
                                    f"{sorted(set(cell_notes) - set(got))}, which have no published cell")
            not_judged = tuple(str(c) for c in r.get("not_judged") or ())
            if set(not_judged) - set(cell_notes):
                raise StfBenchError(f"{layout_path}: table {tid} row {method!r}: not_judged "
                                    f"{sorted(set(not_judged) - set(cell_notes))} needs a cell note saying why")
            if r.get("beside") and not r.get("beside_note"):
                raise StfBenchError(f"{layout_path}: table {tid} row {method!r}: `beside` needs a `beside_note` "
                                    f"saying why those runs are a different setting")
            where = f"{layout_path}: table {tid} row {method!r}"
            rows.append(PublishedRow(method, {c: v for c, (v, _) in got.items()},
                                     {c: s for c, (_, s) in got.items()}, with_preset(r.get("match") or {}, where),
                                     with_preset(r.get("beside") or {}, where), str(r.get("beside_note") or ""),
                                     str(r.get("note") or ""), cell_notes, not_judged))
        members = spec.get("members", "any")
        tables[tid] = TableSpec(tid, str(spec.get("title", f"Table {tid}")), columns, rows,
                                members if members == "any" else list(members or []),
                                [dict(a) for a in spec.get("accepts") or []], str(spec.get("note", "")))
    if cells:
        table, method = next(iter(cells))
        raise StfBenchError(f"{cells_path}: cells for table {table} row {method!r}, which {layout_path} does not list")
    return Published(str(layout.get("paper", "")), [str(b) for b in layout.get("benchmarks", [])], tables)


PRESET_KEY = "method.preset"


def with_preset(pattern: dict, where: str) -> dict:
    """A match pattern whose `method.preset: N` is replaced by the arguments the method declares for its published
    N-token setting (`Method.presets`), as `method.ARG` keys: the row follows the method's own declaration. A method
    that is not registered here (the report renders without the model code, or without a plug-in) keeps the key,
    which no run has, so that nothing is matched; a registered method without that preset is an error."""
    pattern = dict(pattern)
    if PRESET_KEY not in pattern:
        return pattern
    try:
        from stf_bench.methods.registry import find_method
    except Exception:  # the model code is optional for a report
        return pattern
    method = find_method(str(pattern.get("method")))
    if method is None:
        return pattern
    tokens = int(pattern.pop(PRESET_KEY))
    if tokens not in method.presets:
        raise StfBenchError(f"{where}: {method.name} declares no {tokens}-token preset; it declares "
                            f"{sorted(method.presets) or 'none'} (Method.presets)")
    pattern.update({f"method.{k}": v for k, v in method.presets[tokens].items()})
    return pattern


def _read_cells(path: Path) -> dict[tuple[str, str], dict[str, tuple[float | None, str]]]:
    out: dict[tuple[str, str], dict[str, tuple[float | None, str]]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != CSV_FIELDS:
            raise StfBenchError(f"{path}: expected the header {','.join(CSV_FIELDS)}, got {reader.fieldnames}")
        for line_no, rec in enumerate(reader, start=2):
            raw = (rec["value"] or "").strip()
            if raw == DASH:
                value = None
            else:
                try:
                    value = float(raw)
                except ValueError:
                    raise StfBenchError(f"{path}:{line_no}: value {raw!r} is neither a number nor '-'") from None
                if not math.isfinite(value):
                    raise StfBenchError(f"{path}:{line_no}: value {raw!r} is not finite")
            if not rec["source"]:
                raise StfBenchError(f"{path}:{line_no}: every published cell needs a source")
            row = out.setdefault((rec["table"], rec["method"]), {})
            if rec["column"] in row:
                raise StfBenchError(f"{path}:{line_no}: duplicate cell {rec['table']}/{rec['method']}/{rec['column']}")
            row[rec["column"]] = (value, rec["source"])
    return out
