"""The paper's tables with our reproduced rows beside the published ones: values, CIs, differences, verdicts.

Published rows come from `baselines/`; reproduced rows from the results store. A reproduced model is one
(model, model arguments that matter, checkpoint fingerprint, protocol); its score per column is the headline metric
of the latest run that has it. It joins every table whose membership rule accepts it and in whose columns it has
at least one value. Avg. is recomputed from the eight benchmarks and only when all eight are present. A reproduced
row that matches a published row's attributes gets a difference per cell and a verdict against `TOLERANCE`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from stf_bench.accuracy import BENCHMARKS, columns, of_column, paper8
from stf_bench.args import parse_model_args
from stf_bench.published import Published, TableSpec
from stf_bench.report.attributes import (
    TRAINING_DATA,
    architecture_args,
    identity_args,
    matches,
    row_label,
    run_attributes,
    training_note,
)
from stf_bench.report.bootstrap import DEFAULT_ITERS, DEFAULT_SEED, percentile_ci, score_ci
from stf_bench.report.metrics import headline
from stf_bench.store.db import Store

AVG = "Avg."
TFLOPS = "TFLOPs"
LATENCY = "Latency (ms)"
SPEEDUP = "Speedup"
SPEEDUP_MEDIAN = "Speedup (median)"  # the ratio of median TTFTs, beside the paper's ratio of averages
PAPER_PROTOCOL = "llava"
FLOPS_CONVENTION = "paper"
SAMPLE_DATA = "samples"  # `stf-bench run --data samples`: the embedded sample rows, not the benchmark

# Largest |reproduced - published| still called a match, for the columns that are not a benchmark's (a benchmark's
# own is its declared `tolerance`, stf_bench.accuracy): half the printed precision for TFLOPs (a deterministic
# count); 0.3x for the speedup; 0.3 for the mean of eight. docs/report.md gives the numbers behind each value.
TOLERANCE: dict[str, float] = {AVG: 0.3, TFLOPS: 0.05, SPEEDUP: 0.3, SPEEDUP_MEDIAN: 0.3}
DEVICE_DEPENDENT = {LATENCY: "absolute time depends on the device (published: one A100)"}
PROTOCOL_FREE = {TFLOPS, LATENCY, SPEEDUP, SPEEDUP_MEDIAN}

MATCH, DIFFERS, NO_PUBLISHED = "match", "differs", "no published value"


@dataclass
class Cell:
    """One cell: value (None = missing), dash (the paper prints '-'), CI, difference and verdict (reproduced)."""

    value: float | None = None
    dash: bool = False
    ci: tuple[float, float] | None = None
    delta: float | None = None
    verdict: str | None = None
    n: int | None = None
    note: str = ""
    source: str = ""
    stale: bool = False  # scored with an older scorer version than the current one: marked, never ranked


STALE = "stale scorer"


@dataclass
class Row:
    """A table row: published (from the paper) or reproduced (from the store)."""

    method: str
    source: str
    cells: dict[str, Cell]
    compared_to: str | None = None
    protocol: str | None = None
    run_ids: list[int] = field(default_factory=list)
    attributes: dict = field(default_factory=dict)
    beside: str | None = None  # the published row it sits beside as a different setting (never judged against it)
    note: str = ""  # a footnote on the whole row (what a published row is; why a run is a different setting)


@dataclass
class Table:
    """A rendered-ready table."""

    id: str
    title: str
    columns: list[str]
    rows: list[Row]
    note: str = ""


@dataclass
class Reproduced:
    """A reproduced model: its cells per column and, for CIs, the bootstrap distributions."""

    key: str
    label: str
    model: str
    attributes: dict
    protocol: str | None
    cells: dict[str, Cell] = field(default_factory=dict)
    dists: dict[str, np.ndarray] = field(default_factory=dict)
    run_ids: set[int] = field(default_factory=set)


def split_label(label: str) -> tuple[str, dict]:
    """'stf-7b (k=4,e=8)' -> ('stf-7b', {'k': 4, 'e': 8}); a plain name -> (name, {})."""
    if label.endswith(")") and " (" in label:
        name, args = label[:-1].split(" (", 1)
        try:
            return name, parse_model_args(args.replace(", ", ","))
        except Exception:
            return label, {}
    return label, {}


def _identity(model: str, args: dict, fingerprint: str | None, protocol: str | None) -> str:
    return json.dumps([model, identity_args(args), fingerprint, protocol], sort_keys=True, default=str)


PARTIAL = "partial"  # attribute of a row built from partial runs: marked, never ranked, never compared


def collect_reproduced(store: Store, *, iters: int = DEFAULT_ITERS, seed: int = DEFAULT_SEED,
                       include_partial: bool = False) -> list[Reproduced]:
    """Every reproduced model in the store, with headline scores (+ bootstrap CIs) and paper-convention TFLOPs.

    A task scored on part of its rows (--limit, a smaller data set) never fills a full model's cell: it is left out,
    or with `include_partial` shown on a row of its own marked partial (docs/report.md, "Partial runs")."""
    models: dict[str, Reproduced] = {}
    where: dict[tuple[str, str], tuple[int, str]] = {}  # (model key, column) -> (run id, task)
    heads = {}
    scores_by_run: dict[int, list] = {}
    for s in store.scores():
        scores_by_run.setdefault(s.run_id, []).append(s)
    for run in store.runs():  # oldest first: a later run's score replaces an earlier one
        partial = store.partial_tasks(run)
        for part in (False, True):
            tasks = {s.task for s in scores_by_run.get(run.id, []) if (s.task in partial) == part}
            if not tasks or (part and not include_partial):
                continue
            key = _identity(run.model, run.model_args, run.checkpoint_fingerprint, run.protocol)
            label = row_label(run.model, run.model_args, run.protocol)
            if run.checkpoint_fingerprint:
                label += f" @{run.checkpoint_fingerprint.split(':')[-1][:8]}"
            if run.training:  # a checkpoint `stf-bench train` made: said in the label, with what made it
                label += f", {training_note(run.training)}"
            attributes = run_attributes(run.model, run.model_args, run.model_config, run.training)
            if part:
                key, label = json.dumps([*json.loads(key), f"partial run #{run.id}"]), label + f" (partial run #{run.id}: " + "; ".join(
                    f"{t} {why}" for t, why in sorted(partial.items())) + ")"
                attributes = {**attributes, PARTIAL: True}
            rep = models.setdefault(key, Reproduced(key, label, run.model, attributes, run.protocol))
            _add_run_scores(rep, run.id, [s for s in scores_by_run.get(run.id, []) if s.task in tasks], where, heads,
                            store.scorer_versions(run.id))
    sample_tasks = {r.id: set(store.sample_tasks(r.id)) for r in store.runs()}
    for (key, column), (run_id, task) in where.items():
        rep, head = models[key], heads[(key, column)]
        if task not in sample_tasks.get(run_id, set()):
            rep.cells[column].note = "no per-sample records: no CI"
            continue
        result = score_ci(head.metric, store.samples(run_id, task), head.value, iters=iters, seed=seed, task=task)
        cell = rep.cells[column]
        cell.ci, cell.n = result.ci, result.n
        cell.note = "; ".join(x for x in (cell.note, result.note) if x)
        if result.dist is not None:
            rep.dists[column] = result.dist
    _attach_flops(store, models)
    return sorted(models.values(), key=lambda r: r.label)


def _add_run_scores(rep: Reproduced, run_id: int, scores: list, where: dict, heads: dict,
                    versions: dict[str, str] | None = None) -> None:
    """Put one run's headline score per task into `rep`'s cells, replacing an earlier run's; a task scored with an
    older scorer version than the current one (`versions`: what the run recorded) is marked stale."""
    from stf_bench.accuracy import scorer_versions

    versions = versions or {}
    by_task: dict[str, dict[str, tuple[float, float | None, int | None, str]]] = {}
    for s in scores:
        have = by_task.setdefault(s.task, {})
        if s.metric not in have or s.filter == "none":
            have[s.metric] = (s.value, s.stderr, s.n, s.filter)
    for task, metrics in by_task.items():
        n = next((v[2] for v in metrics.values() if v[2] is not None), None)
        head = headline(task, {m: v[0] for m, v in metrics.items()}, {m: v[1] for m, v in metrics.items()}, n)
        if head is None:
            continue
        stale = scorer_versions.is_stale(task, versions.get(task))
        note = (f"{STALE}: {task} scored with version {versions.get(task, scorer_versions.UNVERSIONED)}, current "
                f"{scorer_versions.current(task)}; re-score with `stf-bench score`") if stale else ""
        rep.cells[head.column] = Cell(head.value, n=metrics[head.metric.key][2],
                                      source=f"run #{run_id} {task} {head.metric.key}", note=note, stale=stale)
        rep.run_ids.add(run_id)
        where[(rep.key, head.column)] = (run_id, task)
        heads[(rep.key, head.column)] = head


def _attach_flops(store: Store, models: dict[str, Reproduced]) -> None:
    """Paper-convention TFLOPs: onto every reproduced model of the same preset and arguments, or a row of its own."""
    for payload in store.flops():
        if payload.get("convention") != FLOPS_CONVENTION:
            continue
        name, args = split_label(payload["model"])
        cell = Cell(float(payload["tflops"]), source=f"flops #{payload['id']} ({payload.get('counter', 'calflops')})")
        targets = [r for r in models.values() if r.model == name and architecture_args(
            _run_args(r)) == architecture_args(args)]
        if not targets:
            key = _identity(name, args, None, None)
            rep = models.setdefault(key, Reproduced(key, row_label(name, args, None), name,
                                                    run_attributes(name, args, payload.get("details")), None))
            targets = [rep]
        for rep in targets:
            rep.cells[TFLOPS] = cell


def _run_args(rep: Reproduced) -> dict:
    return json.loads(rep.key)[1]


def _member(spec: TableSpec, rep: Reproduced) -> bool:
    """In the table if it has a score in its columns and the table takes it; a model with only TFLOPs (no score)
    only where a published row is its counterpart, to check that column."""
    values = [c for c in spec.columns if c != AVG and c in rep.cells and rep.cells[c].value is not None]
    if not values:
        return False
    if all(c in PROTOCOL_FREE for c in values):
        return _counterpart(spec, rep.attributes) is not None or _beside(spec, rep.attributes) is not None
    if spec.members == "any":
        return True
    if any(matches(rep.attributes, pattern) for pattern in spec.accepts):
        return True
    return bool(spec.members) and any(pattern and matches(rep.attributes, pattern, spec.members)
                                      for r in spec.rows for pattern in (r.match, r.beside))


def _counterpart(spec: TableSpec, attrs: dict):
    return next((r for r in spec.rows if r.match and matches(attrs, r.match)), None)


def _beside(spec: TableSpec, attrs: dict):
    """The published row a run sits beside as a different setting (its `beside` pattern), or None."""
    return next((r for r in spec.rows if r.beside and matches(attrs, r.beside)), None)


def verdict(column: str, delta: float | None, published: Cell | None, protocol: str | None,
            data: str | None = None) -> str | None:
    """The verdict for one reproduced cell against its published counterpart."""
    if published is None or published.value is None:
        return NO_PUBLISHED
    if delta is None:
        return None
    if data == SAMPLE_DATA and column not in PROTOCOL_FREE:
        return "not comparable: scored on the sample data, not the benchmark"
    if column in DEVICE_DEPENDENT:
        return f"not comparable: {DEVICE_DEPENDENT[column]}"
    bench = of_column(column)
    if bench is not None and bench.published_split:
        return f"not comparable: {bench.published_split}"
    if column not in PROTOCOL_FREE and protocol != PAPER_PROTOCOL:
        return f"not comparable: protocol {protocol or 'unknown'} (the paper's is {PAPER_PROTOCOL})"
    return MATCH if abs(delta) <= tolerance(column) + 1e-9 else DIFFERS


def tolerance(column: str) -> float:
    """The largest |reproduced - published| of `column` still called a match, in its unit."""
    bench = of_column(column)
    return bench.tolerance if bench is not None else TOLERANCE[column]


def _reproduced_row(spec: TableSpec, rep: Reproduced, benchmarks: list[str]) -> Row:
    cells = {c: Cell(rep.cells[c].value, ci=rep.cells[c].ci, n=rep.cells[c].n, note=rep.cells[c].note,
                     source=rep.cells[c].source, stale=rep.cells[c].stale) if c in rep.cells else Cell()
             for c in spec.columns}
    if AVG in spec.columns:
        values = [rep.cells[b].value for b in benchmarks if b in rep.cells]
        if len(values) == len(benchmarks):
            stale = [b for b in benchmarks if rep.cells[b].stale]
            avg = Cell(float(np.mean(values)), source="mean of the eight benchmarks", stale=bool(stale),
                       note=f"{STALE} in {', '.join(stale)}" if stale else "")
            if all(b in rep.dists for b in benchmarks):
                avg.ci = percentile_ci(np.mean([rep.dists[b] for b in benchmarks], axis=0))
            cells[AVG] = avg
        else:
            missing = [b for b in benchmarks if b not in rep.cells]
            cells[AVG] = Cell(note=f"not all eight benchmarks: missing {', '.join(missing)}")
    target = None if rep.attributes.get(PARTIAL) else _counterpart(spec, rep.attributes)
    if target is not None:
        for c, cell in cells.items():
            if cell.value is None:
                continue
            pub = Cell(target.cells.get(c), dash=c in target.cells and target.cells[c] is None)
            cell.delta = cell.value - pub.value if pub.value is not None else None
            cell.verdict = verdict(c, cell.delta, pub, rep.protocol, rep.attributes.get("data"))
            if c in target.not_judged:  # the paper printed another method's value there (its cell note)
                cell.delta, cell.verdict = None, f"not comparable: {NOT_ITS_OWN} (see the published cell's note)"
    beside = None if target is not None or rep.attributes.get(PARTIAL) else _beside(spec, rep.attributes)
    return Row(rep.label, "reproduced", cells, target.method if target else None, rep.protocol,
               sorted(rep.run_ids), rep.attributes, beside.method if beside else None,
               beside.beside_note if beside else "")


NOT_ITS_OWN = "the published cell is not the row's own value"


def _published_rows(spec: TableSpec, benchmarks: list[str] | None = None) -> list[Row]:
    """The published rows, with their notes; an Avg. the source does not print is computed from the eight
    published cells when all eight are there (marked as computed), else left blank with the reason."""
    rows = []
    for r in spec.rows:
        cells = {c: Cell(r.cells.get(c), dash=c in r.cells and r.cells[c] is None, source=r.sources.get(c, ""),
                         note=r.cell_notes.get(c, "")) for c in spec.columns}
        if AVG in spec.columns and AVG not in r.cells and benchmarks:
            values = [r.cells.get(b) for b in benchmarks]
            if all(v is not None for v in values):
                cells[AVG] = Cell(float(np.mean(values)), source=f"computed by stf-bench: {AVG_COMPUTED}",
                                  note=f"{AVG_COMPUTED}; the source prints none")
            else:
                missing = [b for b, v in zip(benchmarks, values, strict=True) if v is None]
                cells[AVG] = Cell(note=f"not printed by the source, and not computable: no published "
                                       f"{', '.join(missing)}")
        rows.append(Row(r.method, "published", cells, attributes=dict(r.match), note=r.note))
    return rows


AVG_COMPUTED = "mean of the eight published cells"


def _arrange(published: list[Row], reproduced: list[Row]) -> list[Row]:
    """Each reproduced row right after the published row it is compared with, then the runs of a different setting
    that sit beside it; the others at the end."""
    rows: list[Row] = []
    for pub in published:
        rows.append(pub)
        rows += [r for r in reproduced if r.compared_to == pub.method]
        rows += [r for r in reproduced if r.compared_to is None and r.beside == pub.method]
    return rows + [r for r in reproduced if r.compared_to is None and r.beside is None]


def build_table(spec: TableSpec, reproduced: list[Reproduced], benchmarks: list[str]) -> Table:
    """One accuracy/TFLOPs table (all but Table 9)."""
    rows = [_reproduced_row(spec, rep, benchmarks) for rep in reproduced if _member(spec, rep)]
    return Table(spec.id, spec.title, spec.columns, _arrange(_published_rows(spec, benchmarks), rows), spec.note)


def latency_figures(figures: dict) -> tuple[float | None, int | None]:
    """(mean TTFT per sample in ms, visual tokens) from one model's `stf-bench latency` figures."""
    per_sample = figures.get("ttft_per_sample_ms")
    value = per_sample.get("mean") if isinstance(per_sample, dict) else per_sample
    value = float(value) if isinstance(value, int | float) and math.isfinite(value) else None
    tokens = figures.get("visual_tokens")
    return value, tokens if isinstance(tokens, int) else None


def median_ttft(figures: dict) -> float | None:
    """Median TTFT per sample in ms from one model's `stf-bench latency` figures, or None."""
    per_sample = figures.get("ttft_per_sample_ms")
    value = per_sample.get("median") if isinstance(per_sample, dict) else None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) and value > 0 else None


def build_latency_table(spec: TableSpec, store: Store | None) -> Table:
    """Table 9: published TTFTs and, per measurement, each model's TTFT and the speedup measured beside it (the
    ratio of means, as the paper's "average latency", and the ratio of medians beside it, with a row note when the
    two disagree). Each reproduced row names its model, device, dtype and batch."""
    from stf_bench.profile.formatting import speedup_disagreement

    reproduced: list[Row] = []
    records = store.latency() if store is not None else []
    for rec in records:
        ttft, tokens = latency_figures(rec["figures"])
        name, args = split_label(rec["model"])
        attrs = run_attributes(name, args)
        top = rec["payload"]
        dtype = f", {top['dtype']}" if top.get("dtype") else ""
        batch = f", batch {top['batch_size']}" if top.get("batch_size") else ", batch unknown"
        cells = {LATENCY: Cell(ttft, source=f"latency #{rec['id']}"), SPEEDUP: Cell(), SPEEDUP_MEDIAN: Cell()}
        baseline = top.get("baseline")
        row_note = ""
        if baseline and baseline != rec["model"] and isinstance(top.get("speedup"), int | float):
            base = next((r for r in records if r["measurement"] == rec["measurement"] and r["model"] == baseline),
                        None)
            mine, theirs = median_ttft(rec["figures"]), median_ttft(base["figures"]) if base else None
            median = theirs / mine if mine and theirs else None
            cells[SPEEDUP] = Cell(float(top["speedup"]), note=f"vs {baseline}, same run; ratio of mean TTFTs",
                                  source=f"latency #{rec['id']}")
            cells[SPEEDUP_MEDIAN] = Cell(median, source=f"latency #{rec['id']}" if median else "",
                                         note=f"vs {baseline}, same run; ratio of median TTFTs" if median else
                                         "no median TTFTs recorded")
            row_note = speedup_disagreement(float(top["speedup"]), median) if median else ""
        target = _counterpart(spec, attrs)
        if target is not None:
            for c, cell in cells.items():
                if cell.value is not None:
                    pub = Cell(target.cells.get(c))
                    cell.delta = cell.value - pub.value if pub.value is not None else None
                    cell.verdict = verdict(c, cell.delta, pub, None)
        reproduced.append(Row(f"{rec['model']} ({rec['device'] or 'unknown device'}{dtype}{batch})", "reproduced",
                              cells, target.method if target else None, None, [],
                              {**attrs, "visual_tokens": tokens, "device": rec["device"] or "unknown device",
                               "batch_size": top.get("batch_size")}, note=row_note))
    return Table(spec.id, spec.title, spec.columns, _arrange(_published_rows(spec), reproduced), spec.note)


EVERY_BENCHMARK = "benchmarks"
TABLE_ORDER = ["2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "zoo", EVERY_BENCHMARK]


def every_benchmark_spec() -> TableSpec:
    """The table with a column for every declared benchmark (stf_bench.accuracy): reproduced rows only, so a
    benchmark the paper does not have is still reported."""
    return TableSpec(EVERY_BENCHMARK, "Every benchmark stf-bench runs (reproduced rows; the paper's own numbers are in "
                     "its tables)", [TFLOPS, *columns()], [], "any", [])


def table_specs(published: Published) -> dict[str, TableSpec]:
    """The paper's tables (baselines/) plus the every-benchmark table, by id."""
    return {**published.tables, EVERY_BENCHMARK: every_benchmark_spec()}


def table_ids(choice: str, published: Published) -> list[str]:
    """'all' -> every table in the paper's order (then the every-benchmark table); '5' -> ['5']; '2,9' -> ['2', '9']."""
    specs = table_specs(published)
    known = [t for t in TABLE_ORDER if t in specs] + [t for t in specs if t not in TABLE_ORDER]
    if choice == "all":
        return known
    wanted = [c.strip() for c in choice.split(",") if c.strip()]
    bad = [w for w in wanted if w not in specs]
    if bad:
        from stf_bench.errors import StfBenchError

        raise StfBenchError(f"unknown table {bad[0]!r}; valid: {', '.join(known)} or all")
    return wanted


def build_tables(published: Published, store: Store | None, ids: list[str], *, iters: int = DEFAULT_ITERS,
                 seed: int = DEFAULT_SEED, reproduced: list[Reproduced] | None = None,
                 include_partial: bool = False, include_samples: bool = False) -> list[Table]:
    """The chosen tables; reproduced rows from `store` (None: published numbers only), or precomputed ones.

    A model scored on the embedded sample data (`data=samples`, from `run`, `ingest` or `score`) is not a
    benchmark score, nor is a model `stf-bench train` trained on its training samples a reproduction of a paper's
    row: either joins the paper's tables only with `include_samples`, and the every-benchmark table always (its
    label says `data=samples` / `training data=samples`)."""
    if reproduced is None:
        reproduced = collect_reproduced(store, iters=iters, seed=seed,
                                        include_partial=include_partial) if store is not None else []
    benchmark_data = [r for r in reproduced if include_samples or SAMPLE_DATA not in
                      (r.attributes.get("data"), r.attributes.get(TRAINING_DATA))]
    benchmarks = published.benchmarks or [BENCHMARKS[b].column for b in paper8()]
    specs = table_specs(published)
    out = []
    for tid in ids:
        spec = specs[tid]
        out.append(build_latency_table(spec, store) if LATENCY in spec.columns else
                   build_table(spec, reproduced if tid == EVERY_BENCHMARK else benchmark_data, benchmarks))
    return out
