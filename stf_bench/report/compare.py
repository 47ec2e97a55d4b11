"""Paired bootstrap of two models over the samples they share, per benchmark (`stf-bench compare` prints it).

A and B are run ids (`12` or `#12`), model names, or report row labels. Per benchmark column, the latest run of
each side with per-sample records is used; samples are paired by doc id (MMBench: by question, all circular copies
together) and kept only where both sides have the same target. Both sides are resampled with the same indices.
"""

from __future__ import annotations

from dataclasses import dataclass

from stf_bench.accuracy import BENCHMARKS, columns
from stf_bench.errors import StfBenchError
from stf_bench.report.attributes import identity_args, row_label
from stf_bench.report.bootstrap import DEFAULT_ITERS, DEFAULT_SEED, Units, paired_bootstrap, task_units
from stf_bench.report.metrics import column_unit, headline, task_column
from stf_bench.store.db import RunRow, Store


@dataclass
class Comparison:
    """The paired result for one benchmark column."""

    column: str
    unit: str
    task_a: str
    task_b: str
    run_a: int
    run_b: int
    n_shared: int
    n_mismatched: int
    a: float
    b: float
    diff: float
    ci: tuple[float, float]
    p_value: float
    verdict: str


def report_label(run: RunRow) -> str:
    """The run's row label as `stf-bench report` prints it, with the `@fingerprint` suffix when it has one."""
    label = row_label(run.model, run.model_args, run.protocol)
    if run.checkpoint_fingerprint:
        label += f" @{run.checkpoint_fingerprint.split(':')[-1][:8]}"
    return label


def check_task(choice: str | None) -> None:
    """A StfBenchError listing the valid names unless `choice` is None, a paper column or an lmms-eval task name."""
    if choice is None or task_column(choice) is not None or choice.lower() in {c.lower() for c in columns()}:
        return
    tasks = sorted(t for b in BENCHMARKS.values() for t in (b.name, *b.aliases))
    raise StfBenchError(f"unknown --task {choice!r}; pass a paper column ({', '.join(columns())}) or an "
                        f"lmms-eval task name ({', '.join(tasks)}, also with the stf_ prefix)")


def select_runs(store: Store, spec: str) -> list[RunRow]:
    """Runs named by `spec`: a run id, or every run of one model identity (name, row label, or the report's row
    label with its `@fingerprint`)."""
    runs = store.runs()
    ident = spec[1:] if spec.startswith("#") else spec
    if ident.isdigit():
        chosen = [r for r in runs if r.id == int(ident)]
        if not chosen:
            raise StfBenchError(f"no run #{ident} in {store.path}; `stf-bench report` lists the runs' rows")
        return chosen
    chosen = ([r for r in runs if report_label(r) == spec]
              or [r for r in runs if row_label(r.model, r.model_args, r.protocol) == spec]
              or [r for r in runs if r.model == spec])
    if not chosen:
        names = sorted({report_label(r) for r in runs})
        raise StfBenchError(f"no run of {spec!r} in {store.path}; known: {', '.join(names) or 'none'}")
    labels = {report_label(r) for r in chosen}
    if len(labels) > 1:
        raise StfBenchError(f"{spec!r} names several models ({'; '.join(sorted(labels))}); pass a row label or a "
                            f"run id")
    return chosen


def _column_units(store: Store, runs: list[RunRow]) -> dict[str, tuple[int, str, Units]]:
    """column -> (run id, task, units) from the latest run that has per-sample records for it."""
    out: dict[str, tuple[int, str, Units]] = {}
    for run in runs:  # oldest first; later runs replace earlier ones
        scores = store.scores(run.id)
        for task in store.sample_tasks(run.id):
            rows = [s for s in scores if s.task == task and s.filter == "none"]
            head = headline(task, {s.metric: s.value for s in rows}, n=next((s.n for s in rows if s.n), None))
            if head is None:
                continue
            units = task_units(head.metric, store.samples(run.id, task), task)
            if units is not None:
                out[head.column] = (run.id, task, units)
    return out


def _wanted(column: str, task_a: str, task_b: str, choice: str | None) -> bool:
    if choice is None:
        return True
    c = choice.lower()
    return c in (column.lower(), task_a.lower(), task_b.lower()) or task_column(choice) == column


@dataclass
class Side:
    """What one side of a comparison is: model, training-free method, protocol, data source, partial tasks."""

    model: str
    method: str
    protocol: str
    data: str
    partial: str
    runs: list[int]

    def describe(self) -> str:
        """'llava-tiny; method none; protocol llava; data samples; partial no (runs #1, #2)'."""
        return (f"{self.model}; method {self.method}; protocol {self.protocol}; data {self.data}; partial "
                f"{self.partial} (run{'s' if len(self.runs) > 1 else ''} {', '.join(f'#{r}' for r in self.runs)})")


def _one(values: set[str]) -> str:
    return next(iter(values)) if len(values) == 1 else " / ".join(sorted(values))


def side(store: Store, runs: list[RunRow], used: dict[int, set[str]]) -> Side:
    """The Side of the runs a comparison used (`used`: run id -> the lmms-eval tasks it contributed)."""
    from stf_bench.methods.options import method_suffix, split_method_args

    chosen = [r for r in runs if r.id in used]
    models = set()
    for run in chosen:
        rest, _, _ = split_method_args({k: v for k, v in identity_args(run.model_args).items() if k != "data"})
        models.add(run.model + (f" ({', '.join(f'{k}={v}' for k, v in rest.items())})" if rest else ""))
    partial = [f"{t} {why}" for run in chosen for t, why in store.partial_tasks(run).items() if t in used[run.id]]
    return Side(_one(models), _one({method_suffix(r.model_args).removeprefix(" + ") or "none" for r in chosen}),
                _one({r.protocol or "unknown" for r in chosen}), _one({_data(r) for r in chosen}),
                "; ".join(partial) or "no", sorted(used))


def _data(run: RunRow) -> str:
    """The run's data source as recorded (samples, hub, local), or 'unknown' (a foreign run that does not say)."""
    return str(run.model_args.get("data") or "unknown")


def check_like_with_like(a: Side, b: Side, allow: bool) -> None:
    """Refuse two sides run under different protocols, or on different known data, unless `allow`."""
    if allow:
        return
    if a.protocol != b.protocol:
        raise StfBenchError(f"A was scored under the {a.protocol} protocol, B under {b.protocol}: a protocol is "
                            f"prompts and scoring together, so the difference mixes both in; pass "
                            f"--allow-different to compare anyway")
    known = {a.data, b.data} - {"unknown"}
    if a.data != b.data and len(known) == 2:
        raise StfBenchError(f"A was scored on {a.data} data, B on {b.data}: not the same rows; pass "
                            f"--allow-different to compare anyway")


def compare(store: Store, a: str, b: str, *, task: str | None = None, iters: int = DEFAULT_ITERS,
            seed: int = DEFAULT_SEED, level: float = 0.95, allow_different: bool = False) -> list[Comparison]:
    """Paired bootstrap of A - B per shared benchmark column; two sides of different protocols or data are
    refused unless `allow_different` (`sides()` says what each side is)."""
    return compare_sides(store, a, b, task=task, iters=iters, seed=seed, level=level,
                         allow_different=allow_different)[0]


def compare_sides(store: Store, a: str, b: str, *, task: str | None = None, iters: int = DEFAULT_ITERS,
                  seed: int = DEFAULT_SEED, level: float = 0.95, allow_different: bool = False
                  ) -> tuple[list[Comparison], Side, Side]:
    """`compare`, with the Side of A and of B (the runs the comparisons used)."""
    if not 0.5 <= level < 1:
        raise StfBenchError(f"--level {level}: must be in [0.5, 1)")
    check_task(task)
    runs_a, runs_b = select_runs(store, a), select_runs(store, b)
    ua, ub = _column_units(store, runs_a), _column_units(store, runs_b)
    wanted = [c for c in columns() if c in ua and c in ub and _wanted(c, ua[c][1], ub[c][1], task)]  # paper order
    used_a: dict[int, set[str]] = {}
    used_b: dict[int, set[str]] = {}
    for column in wanted:
        used_a.setdefault(ua[column][0], set()).add(ua[column][1])
        used_b.setdefault(ub[column][0], set()).add(ub[column][1])
    side_a, side_b = side(store, runs_a, used_a), side(store, runs_b, used_b)
    if wanted:
        check_like_with_like(side_a, side_b, allow_different)
    out = []
    for column in wanted:
        (run_a, task_a, units_a), (run_b, task_b, units_b) = ua[column], ub[column]
        targets_b = dict(zip(units_b.keys, units_b.targets))
        shared = [k for k, t in zip(units_a.keys, units_a.targets) if targets_b.get(k) == t]
        mismatched = sum(1 for k in units_a.keys if k in targets_b) - len(shared)
        if not shared:
            continue
        res = paired_bootstrap(units_a.subset(shared), units_b.subset(shared), iters=iters, seed=seed, level=level)
        lo, hi = res.ci
        verdict = "A > B" if lo > 0 else "A < B" if hi < 0 else "no significant difference"
        out.append(Comparison(column, column_unit(column), task_a, task_b, run_a, run_b, res.n_shared, mismatched,
                              res.a, res.b, res.diff, res.ci, res.p_value, verdict))
    if not out:
        what = f" on {task}" if task else ""
        raise StfBenchError(f"{a!r} and {b!r} share no per-sample records{what} (same benchmark, same doc ids, same "
                            f"targets); record runs with their samples files (lmms-eval --log_samples)")
    return out, side_a, side_b
