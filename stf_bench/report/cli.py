"""`stf-bench report`: the paper's tables with published and reproduced rows, in md/latex/html/csv/json, plus plots."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from stf_bench.errors import StfBenchError, writable_dir
from stf_bench.files import write_files_atomically
from stf_bench.published import load_published
from stf_bench.report.bootstrap import DEFAULT_ITERS, DEFAULT_SEED
from stf_bench.report.formats import EXTENSIONS, FORMATS, render
from stf_bench.report.tables import build_tables, collect_reproduced, table_ids
from stf_bench.store.cli import add_db_argument
from stf_bench.store.db import Store, resolve_db_path

DEFAULT_OUTPUT = Path("reports")
PLOT_TABLES = ("2", "9", "zoo")  # what the plots read, built even when not asked for as tables


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `stf-bench report`."""
    parser.add_argument("--table", default="all",
                        help="2, 3, ..., 14, zoo, benchmarks (every benchmark, reproduced rows), a comma list, "
                             "or all (default)")
    parser.add_argument("--format", default="md", help=f"{', '.join(FORMATS)}, a comma list, or all (default: md)")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help="where to write (default: reports/)")
    add_db_argument(parser)
    parser.add_argument("--bootstrap-iters", type=int, default=DEFAULT_ITERS, help="bootstrap resamples per CI")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--baselines", help="folder with tables.yaml and published.csv (default: baselines/)")
    parser.add_argument("--include-partial", action="store_true",
                        help="also show partial runs (--limit, fewer rows than the task's full set) on rows of their "
                             "own, marked and unranked; they never replace a full run's cell")
    parser.add_argument("--include-sample-data", action="store_true",
                        help="also show runs on the embedded sample data (data=samples) in the paper's tables; they "
                             "are not benchmark scores (the every-benchmark table always shows them)")
    parser.add_argument("--stdout", action="store_true", help="also print the rendered tables (single format)")


def formats(choice: str) -> list[str]:
    """'all' -> every format; 'md,json' -> ['md', 'json']."""
    chosen = list(FORMATS) if choice == "all" else [c.strip() for c in choice.split(",") if c.strip()]
    bad = [c for c in chosen if c not in FORMATS]
    if bad or not chosen:
        raise StfBenchError(f"unknown format {bad[0] if bad else choice!r}; valid: {', '.join(FORMATS)} or all")
    return chosen


def open_existing(db: str | None) -> Store | None:
    """The store if it exists (a report never creates one; a corrupt one is a StfBenchError); None if there is none
    yet (`note_no_store` says so once the output folder is known to be usable)."""
    path = resolve_db_path(db)
    return Store(path) if path.exists() else None


def note_no_store(db: str | None) -> None:
    """The note that a report without a store shows published numbers only."""
    print(f"stf-bench report: no results store at {resolve_db_path(db)}; published numbers only "
          f"(record runs with `stf-bench run` or `stf-bench ingest`)", file=sys.stderr)


def provenance(store_path: Path | None) -> dict[str, str | None]:
    """What a report was made with and from: stf-bench version, commit, date (UTC) and the results store."""
    from stf_bench import __version__
    from stf_bench.store.db import git_commit, now_utc

    return {"stf-bench": __version__, "commit": git_commit(), "date": now_utc(),
            "store": str(store_path) if store_path is not None else "none (published numbers only)"}


def run(args: argparse.Namespace) -> int:
    """Build the tables once, write each format (per table and combined) and the plots; list the files."""
    if args.bootstrap_iters < 1:
        raise StfBenchError(f"--bootstrap-iters {args.bootstrap_iters}: must be at least 1")
    published = load_published(args.baselines)
    ids = table_ids(args.table, published)
    fmts = formats(args.format)  # bad options first: they leave no output folder behind
    store = open_existing(args.db)  # a corrupt store, too: it fails before the output folder is created
    try:
        writable_dir(args.output_dir)  # before any work: a read-only folder is one line, not an OSError at the end
        if store is None:
            note_no_store(args.db)
        with contextlib.redirect_stdout(sys.stderr):  # lmms-eval's MMBench scorer prints; stdout stays ours
            reproduced = collect_reproduced(store, iters=args.bootstrap_iters, seed=args.seed,
                                            include_partial=args.include_partial) if store else []
        tables = build_tables(published, store, ids, reproduced=reproduced, include_samples=args.include_sample_data)
        plot_ids = [] if args.no_plots else [t for t in PLOT_TABLES if t in published.tables and t not in ids]
        plot_tables = {t.id: t for t in [*tables, *build_tables(published, store, plot_ids, reproduced=reproduced,
                                                                include_samples=args.include_sample_data)]}
    finally:
        if store is not None:
            store.close()
    out: Path = writable_dir(args.output_dir)
    written: list[Path] = []
    footer = provenance(resolve_db_path(args.db) if store is not None else None)
    figures: dict[str, list[tuple[str, bytes]]] = {}  # table id -> its plots, for the HTML pages
    if not args.no_plots:
        from stf_bench.report.plots import PLOT_TABLE, write_plots

        plots = write_plots(plot_tables, published.benchmarks, out / "plots")
        written += plots
        for p in plots:
            if p.suffix == ".svg":
                figures.setdefault(PLOT_TABLE[p.stem], []).append((p.stem, p.read_bytes()))
    pages: list[tuple[Path, list[str]]] = []
    for f in fmts:
        for t in tables:
            pages.append((out / f"table_{t.id}.{EXTENSIONS[f]}", [render([t], f, footer, figures.get(t.id))]))
        if len(tables) > 1:
            every = [fig for t in tables for fig in figures.get(t.id, [])]
            pages.append((out / f"report.{EXTENSIONS[f]}", [render(tables, f, footer, every)]))
    write_files_atomically(pages, out, subject="tables")  # all of them or none
    written += [path for path, _ in pages]
    log = sys.stdout
    if args.stdout and len(fmts) == 1:
        print(render(tables, fmts[0]))
        log = sys.stderr  # stdout holds only the rendered tables (e.g. JSON for a pipe)
    n_rep = sum(r.source == "reproduced" for t in tables for r in t.rows)
    for p in written:
        print(p, file=log)
    print(f"{len(tables)} table(s), {n_rep} reproduced row(s), {len(written)} file(s) in {out}", file=log)
    return 0
