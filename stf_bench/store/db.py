"""The results store: one SQLite file holding runs, scores, per-sample records, FLOPs and latency rows.

Python API (what `stf-bench run`, `flops` and `latency` call):

    from stf_bench.store.db import open_store
    with open_store() as store:                      # path: argument, else $STF_BENCH_DB, else the user cache dir
        store.record_lmms_eval(results_json, samples_paths=None,   # None: the samples files beside it
                               model="stf-7b", model_args="k=2,e=1", checkpoint_fingerprint="sha256:...",
                               protocol="llava", environment={...}, model_config={...})
        store.record_flops({"model": ..., "convention": "paper", "visual_tokens": 144, "tflops": 1.876})
        store.record_latency({"models": {name: {...}}, "device": ..., "speedup": ...})

Every record call is one transaction (WAL journal, BEGIN IMMEDIATE, busy timeout): two processes writing at once
lose nothing, and an interrupted call leaves nothing half written. Records are identified by content hash
(the results file's bytes; the canonical JSON of a flops/latency object), so recording the same thing twice adds
nothing. Every call returns `RecordResult`s saying what was added. A file that is not a stf-bench store, or a
corrupt one, raises StfBenchError naming it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stf_bench.errors import StfBenchError
from stf_bench.store.ingest import (
    Parsed,
    ParsedRun,
    SampleRecord,
    Score,
    check_flops,
    check_latency,
    parse_paths,
    parse_results,
    partial_rows,
    sha256_json,
)

DB_ENV = "STF_BENCH_DB"
APP_ID = "stf-bench results store"
SCHEMA_VERSION = "3"
# schema 2 (stf-bench after issue 24): runs.lmms_eval_version holds lmms-eval's package version (schema 1 stored the
# `git describe` lmms-eval wrote, stf-bench's own commit for `stf-bench run`), and a run ingested from the embedded
# sample data is marked (model_args data=samples). A schema-1 store is migrated in place when opened (`_migrate_1`).
# schema 3 (issue 25): runs.training holds the provenance of a checkpoint `stf-bench train` made (its training.json,
# carried by the results file); NULL for every other run. Older stores get the column, NULL, when opened
# (`_migrate_2`).
READABLE_SCHEMAS = ("1", "2", SCHEMA_VERSION)
SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 120.0
LIBRARIES = ("torch", "transformers", "lmms_eval", "stf-bench", "accelerate", "datasets", "calflops")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    content_hash TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    model_args TEXT NOT NULL,
    model_config TEXT,
    checkpoint_fingerprint TEXT,
    protocol TEXT,
    environment TEXT NOT NULL,
    source_path TEXT,
    lmms_eval_version TEXT,
    results_date TEXT,
    config TEXT NOT NULL,
    created_at TEXT NOT NULL,
    training TEXT
);
CREATE TABLE IF NOT EXISTS scores (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    metric TEXT NOT NULL,
    filter TEXT NOT NULL,
    value REAL NOT NULL,
    stderr REAL,
    n INTEGER,
    PRIMARY KEY (run_id, task, metric, filter)
);
CREATE TABLE IF NOT EXISTS sample_files (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    path TEXT,
    PRIMARY KEY (run_id, task)
);
CREATE TABLE IF NOT EXISTS samples (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    doc_id INTEGER NOT NULL,
    doc_hash TEXT,
    target TEXT,
    response TEXT,
    metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, task, doc_id)
);
CREATE TABLE IF NOT EXISTS task_rows (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    scored INTEGER,
    full_set INTEGER,
    PRIMARY KEY (run_id, task)
);
CREATE TABLE IF NOT EXISTS scorer_versions (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (run_id, task)
);
CREATE TABLE IF NOT EXISTS flops (
    id INTEGER PRIMARY KEY,
    content_hash TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    convention TEXT NOT NULL,
    visual_tokens INTEGER NOT NULL,
    tflops REAL NOT NULL,
    payload TEXT NOT NULL,
    environment TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS latency (
    id INTEGER PRIMARY KEY,
    content_hash TEXT NOT NULL UNIQUE,
    measurement TEXT NOT NULL,
    model TEXT NOT NULL,
    device TEXT,
    figures TEXT NOT NULL,
    payload TEXT NOT NULL,
    environment TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class RecordResult:
    """What one record call did: kind (run|samples|flops|latency), row id, whether anything new was added."""

    kind: str
    id: int
    added: bool
    detail: str


@dataclass(frozen=True)
class RunRow:
    """A recorded lmms-eval run."""

    id: int
    model: str
    model_args: dict
    model_config: dict | None
    checkpoint_fingerprint: str | None
    protocol: str | None
    environment: dict
    source_path: str | None
    lmms_eval_version: str | None
    results_date: str | None
    config: dict
    created_at: str
    training: dict | None = None  # what made the checkpoint, when `stf-bench train` did (its training.json)


@dataclass(frozen=True)
class ScoreRow(Score):
    """One metric value of one task of one run (raw lmms-eval units)."""

    run_id: int


def default_db_path() -> Path:
    """The store used when neither --db nor $STF_BENCH_DB is given: a file in the user cache dir."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("stf-bench")) / "results.sqlite"


def resolve_db_path(path: str | os.PathLike | None = None) -> Path:
    """`path`, else $STF_BENCH_DB, else `default_db_path()`; a path the file system cannot name (too long) is a
    StfBenchError, not an OSError later."""
    env = os.environ.get(DB_ENV)
    target = Path(path) if path else Path(env) if env else default_db_path()
    try:
        target.exists()
    except OSError as exc:  # ENAMETOOLONG (a name or the whole path too long); Path.exists passes only ENOENT & co
        shown = str(target) if len(str(target)) <= 100 else f"{str(target)[:60]}...{str(target)[-30:]}"
        raise StfBenchError(f"results store {shown}: {exc.strerror}; pass a shorter --db path (or {DB_ENV}), "
                            f"or --no-store") from None
    return target


def check_store(path: str | os.PathLike | None = None) -> Path:
    """Fail now, before any work, if the store at `resolve_db_path(path)` cannot be used; creates no file."""
    target = resolve_db_path(path)
    if target.exists():
        Store(target).close()  # header, schema and app id checked
        return target
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise StfBenchError(f"{target}: cannot create the results store there ({parent} is not a writable folder); "
                            f"pass --db with a writable path, set {DB_ENV}, or --no-store")
    return target


def open_store(path: str | os.PathLike | None = None) -> Store:
    """Open (creating if needed) the results store at `resolve_db_path(path)`."""
    return Store(resolve_db_path(path))


def now_utc() -> str:
    """ISO time stamp, UTC, seconds."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def collect_environment() -> dict:
    """Library versions, Python, platform and the git commit of this checkout (no heavy imports)."""
    from stf_bench.compat import package_version

    versions = {lib: package_version(lib) for lib in LIBRARIES}
    env = {"python": sys.version.split()[0], "platform": platform.platform(), "libraries": versions,
           "git_commit": git_commit()}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        env["device"] = torch.cuda.get_device_name(0)
    else:
        env["device"] = platform.processor() or platform.machine()
    return env


def git_commit() -> str | None:
    """HEAD of the repository this package lives in, or None (no git, no commits)."""
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def infer_protocol(tasks: list[str]) -> str:
    """`llava` for our `stf_`-prefixed tasks, else `lmms-eval` (lmms-eval's own task definitions)."""
    return "llava" if tasks and all(t.startswith("stf_") for t in tasks) else "lmms-eval"


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)


class Store:
    """A results store on one SQLite file; see the module docstring for the API."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._check_foreign()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise StfBenchError(f"{self.path}: cannot open the results store ({exc}); pass --db with a writable "
                                f"path or set {DB_ENV}") from None
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StfBenchError(f"{self.path}: not a usable stf-bench results store ({exc}); expected an SQLite "
                                f"file written by stf-bench, or a new path") from None
        except StfBenchError:
            self.conn.close()
            raise

    # ------------------------------------------------------------------ setup
    def _check_foreign(self) -> None:
        if not self.path.exists():
            return
        if self.path.is_dir():
            raise StfBenchError(f"{self.path}: is a folder; expected the results store's SQLite file path")
        with self.path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
        if head and head != SQLITE_HEADER:
            raise StfBenchError(f"{self.path}: not an SQLite file; expected a stf-bench results store (pass --db "
                                f"with another path, or set {DB_ENV})")

    def _init_schema(self) -> None:
        with self._tx() as cur:
            tables = {r[0] for r in cur.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "meta" not in tables:
                raise StfBenchError(f"{self.path}: an SQLite database but not a stf-bench results store (tables: "
                                    f"{', '.join(sorted(tables))}); pass --db with another path")
            if "meta" in tables:
                meta = dict(cur.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("app") != APP_ID:
                    raise StfBenchError(f"{self.path}: an SQLite database but not a stf-bench results store")
                if meta.get("schema_version") not in READABLE_SCHEMAS:
                    raise StfBenchError(f"{self.path}: results store schema {meta.get('schema_version')}, this "
                                        f"stf-bench reads schema {', '.join(READABLE_SCHEMAS)}; use a new --db")
            for statement in filter(str.strip, SCHEMA.split(";")):
                cur.execute(statement)
            old = meta.get("schema_version") if "meta" in tables else None
            if old == "1":
                _migrate_1(cur)
            if old in ("1", "2"):
                _migrate_2(cur)
                cur.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
            cur.execute("INSERT OR IGNORE INTO meta VALUES ('app', ?), ('schema_version', ?)", (APP_ID, SCHEMA_VERSION))

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        cur = self.conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StfBenchError(f"{self.path}: the results store is busy or read-only ({exc})") from None
        try:
            yield cur
        except sqlite3.Error as exc:
            self.conn.rollback()
            raise StfBenchError(f"{self.path}: write to the results store failed, nothing recorded ({exc})") from None
        except BaseException:
            self.conn.rollback()
            raise
        try:
            cur.execute("COMMIT")
        except sqlite3.Error as exc:
            self.conn.rollback()
            raise StfBenchError(f"{self.path}: could not commit to the results store ({exc})") from None

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def record_lmms_eval(self, results_path: str | os.PathLike, samples_paths: list | None = None, *,
                         model: str | None = None, model_args: str | dict | None = None,
                         checkpoint_fingerprint: str | None = None, protocol: str | None = None,
                         environment: dict | None = None, model_config: dict | None = None,
                         scorer_versions: dict[str, str] | None = None) -> list[RecordResult]:
        """Record one lmms-eval results JSON and its samples files (None: those beside it with the same stamp).

        `scorer_versions` ({task: version}; None: the results JSON's stf_bench.scorer_versions, if any) are what the
        scores were computed with (stf_bench.accuracy.scorer_versions)."""
        run = parse_results(Path(results_path), [Path(p) for p in samples_paths] if samples_paths is not None
                            else None, model=model, model_args=model_args)
        with self._tx() as cur:
            return self._insert_run(cur, run, protocol=protocol, checkpoint_fingerprint=checkpoint_fingerprint,
                                    environment=environment, model_config=model_config,
                                    scorer_versions=scorer_versions)

    def record_flops(self, payload: dict, *, environment: dict | None = None) -> RecordResult:
        """Record a `stf-bench flops` JSON object."""
        check_flops(payload)
        with self._tx() as cur:
            return self._insert_flops(cur, payload, environment)

    def record_latency(self, payload: dict, *, environment: dict | None = None) -> list[RecordResult]:
        """Record a `stf-bench latency` JSON object (one row per model it measured)."""
        check_latency(payload)
        with self._tx() as cur:
            return self._insert_latency(cur, payload, environment)

    def add_parsed(self, parsed: Parsed, *, protocol: str | None = None,
                   checkpoint_fingerprint: str | None = None) -> list[RecordResult]:
        """Record everything `ingest.parse_paths` validated, in one transaction."""
        out: list[RecordResult] = []
        with self._tx() as cur:
            for run in parsed.runs:
                out += self._insert_run(cur, run, protocol=protocol, checkpoint_fingerprint=checkpoint_fingerprint,
                                        environment=None, model_config=None)
            for _, payload in parsed.flops:
                out.append(self._insert_flops(cur, payload, None))
            for _, payload in parsed.latency:
                out += self._insert_latency(cur, payload, None)
        return out

    def _insert_run(self, cur: sqlite3.Cursor, run: ParsedRun, *, protocol: str | None,
                    checkpoint_fingerprint: str | None, environment: dict | None,
                    model_config: dict | None, scorer_versions: dict[str, str] | None = None) -> list[RecordResult]:
        if environment is None:
            environment = {"source": "ingest", "lmms_eval_version": run.lmms_eval_version,
                           "lmms_eval_describe": run.lmms_eval_describe, "git_hash": run.git_hash,
                           "device": run.config.get("device"), "ingested_with": collect_environment()}
        version = run.lmms_eval_version or _library_version(environment, "lmms_eval")
        protocol = protocol or run.model_args.get("protocol") or infer_protocol(run.tasks)
        checkpoint_fingerprint = checkpoint_fingerprint or run.checkpoint_fingerprint
        cur.execute(
            "INSERT INTO runs (content_hash, model, model_args, model_config, checkpoint_fingerprint, protocol, "
            "environment, source_path, lmms_eval_version, results_date, config, created_at, training) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(content_hash) DO NOTHING",
            (run.content_hash, run.model, _json(run.model_args), None if model_config is None else _json(model_config),
             checkpoint_fingerprint, protocol, _json(environment), str(run.path), version, run.date,
             _json(run.config), now_utc(), None if run.training is None else _json(run.training)))
        added = cur.rowcount == 1
        run_id, stored_model = cur.execute("SELECT id, model FROM runs WHERE content_hash = ?",
                                           (run.content_hash,)).fetchone()
        results = [RecordResult("run", run_id, added, f"{run.path}: {run.model}, tasks {', '.join(run.tasks)}"
                                + ("" if added else f" (already in the store as run #{run_id}, {stored_model})"))]
        if added:
            cur.executemany("INSERT INTO scores VALUES (?,?,?,?,?,?,?)",
                            [(run_id, s.task, s.metric, s.filter, s.value, s.stderr, s.n) for s in run.scores])
            cur.executemany("INSERT INTO task_rows VALUES (?,?,?,?)",
                            [(run_id, task, scored, full) for task, (scored, full) in run.rows.items()])
            versions = scorer_versions if scorer_versions is not None else recorded_scorer_versions(run.path)
            cur.executemany("INSERT INTO scorer_versions VALUES (?,?,?)",
                            [(run_id, task, str(v)) for task, v in versions.items()])
        for samples in run.samples:
            cur.execute("INSERT INTO sample_files VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                        (run_id, samples.task, samples.content_hash, str(samples.path)))
            new = cur.rowcount == 1
            if new:
                cur.executemany("INSERT INTO samples VALUES (?,?,?,?,?,?,?)",
                                [(run_id, samples.task, r.doc_id, r.doc_hash, r.target, _json(r.response),
                                  _json(r.metrics)) for r in samples.records])
            results.append(RecordResult("samples", run_id, new, f"{samples.path}: {len(samples.records)} records"
                                        + ("" if new else " (already in the store)")))
        return results

    def _insert_flops(self, cur: sqlite3.Cursor, payload: dict, environment: dict | None) -> RecordResult:
        digest = sha256_json(payload)
        cur.execute("INSERT INTO flops (content_hash, model, convention, visual_tokens, tflops, payload, environment, "
                    "created_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(content_hash) DO NOTHING",
                    (digest, payload["model"], payload["convention"], payload["visual_tokens"], float(payload["tflops"]),
                     _json(payload), _json(environment or payload.get("environment") or collect_environment()),
                     now_utc()))
        added = cur.rowcount == 1
        row_id = cur.execute("SELECT id FROM flops WHERE content_hash = ?", (digest,)).fetchone()[0]
        return RecordResult("flops", row_id, added, f"{payload['model']} ({payload['convention']}): "
                            f"{payload['tflops']} TFLOPs" + ("" if added else " (already in the store)"))

    def _insert_latency(self, cur: sqlite3.Cursor, payload: dict, environment: dict | None) -> list[RecordResult]:
        measurement = sha256_json(payload)
        top = {k: v for k, v in payload.items() if k != "models"}
        env = _json(environment or payload.get("environment") or collect_environment())
        out = []
        for name, figures in payload["models"].items():
            digest = sha256_json({"measurement": measurement, "model": name})
            cur.execute("INSERT INTO latency (content_hash, measurement, model, device, figures, payload, environment, "
                        "created_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(content_hash) DO NOTHING",
                        (digest, measurement, name, payload_device(payload.get("device")), _json(figures), _json(top),
                         env, now_utc()))
            added = cur.rowcount == 1
            row_id = cur.execute("SELECT id FROM latency WHERE content_hash = ?", (digest,)).fetchone()[0]
            out.append(RecordResult("latency", row_id, added, f"{name} on {payload_device(payload.get('device'))}"
                                    + ("" if added else " (already in the store)")))
        return out

    # ------------------------------------------------------------------ reading
    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StfBenchError(f"{self.path}: cannot read the results store ({exc})") from None

    def runs(self) -> list[RunRow]:
        """All runs, oldest first."""
        rows = self._query("SELECT id, model, model_args, model_config, checkpoint_fingerprint, protocol, environment, "
                           "source_path, lmms_eval_version, results_date, config, created_at, training FROM runs "
                           "ORDER BY id")
        return [RunRow(r[0], r[1], json.loads(r[2]), json.loads(r[3]) if r[3] else None, r[4], r[5],
                       json.loads(r[6]), r[7], r[8], r[9], json.loads(r[10]), r[11],
                       json.loads(r[12]) if r[12] else None) for r in rows]

    def scores(self, run_id: int | None = None) -> list[ScoreRow]:
        """Metric values (raw lmms-eval units) of one run or of all runs."""
        sql = "SELECT task, metric, filter, value, stderr, n, run_id FROM scores"
        rows = self._query(sql + " WHERE run_id = ?", (run_id,)) if run_id is not None else self._query(sql)
        return [ScoreRow(*r) for r in rows]

    def partial_tasks(self, run: RunRow) -> dict[str, str]:
        """Tasks of a run scored on part of their rows -> why ('3 of 9 rows'); {} for a full run.

        Partial: fewer rows scored than the task's full set (lmms-eval's n-samples effective < original), or, for a
        run recorded before rows were kept, any run with a --limit in its config."""
        rows = self._query("SELECT task, scored, full_set FROM task_rows WHERE run_id = ?", (run.id,))
        if rows:
            return partial_rows({task: (scored, full) for task, scored, full in rows})
        limit = run.config.get("limit")
        if limit is None:
            return {}
        return {s.task: f"--limit {limit}" for s in self.scores(run.id)}

    def scorer_versions(self, run_id: int) -> dict[str, str]:
        """{task: scorer version} a run was scored with; {} for a run recorded before versions existed."""
        return dict(self._query("SELECT task, version FROM scorer_versions WHERE run_id = ?", (run_id,)))

    def sample_tasks(self, run_id: int) -> list[str]:
        """Tasks of a run that have per-sample records."""
        return [r[0] for r in self._query("SELECT task FROM sample_files WHERE run_id = ? ORDER BY task", (run_id,))]

    def samples(self, run_id: int, task: str) -> list[SampleRecord]:
        """Per-sample records of one task of one run, by doc_id."""
        rows = self._query("SELECT doc_id, doc_hash, target, response, metrics FROM samples WHERE run_id = ? AND "
                           "task = ? ORDER BY doc_id", (run_id, task))
        return [SampleRecord(r[0], r[1], r[2], json.loads(r[3]) if r[3] is not None else None, json.loads(r[4]))
                for r in rows]

    def flops(self) -> list[dict]:
        """FLOPs records (the JSON objects as recorded, plus `id`)."""
        return [{**json.loads(p), "id": i} for i, p in self._query("SELECT id, payload FROM flops ORDER BY id")]

    def latency(self) -> list[dict]:
        """Latency rows: {id, measurement, model, device, figures, payload (top level), created_at}."""
        rows = self._query("SELECT id, measurement, model, device, figures, payload, created_at FROM latency ORDER BY id")
        return [{"id": r[0], "measurement": r[1], "model": r[2], "device": r[3], "figures": json.loads(r[4]),
                 "payload": json.loads(r[5]), "created_at": r[6]} for r in rows]

    def counts(self) -> dict[str, int]:
        """Row counts per table (for tests and `ingest` summaries)."""
        return {t: self._query(f"SELECT COUNT(*) FROM {t}")[0][0]
                for t in ("runs", "scores", "sample_files", "samples", "flops", "latency", "task_rows")}


def _library_version(environment: dict | None, library: str) -> str | None:
    """A library's version in an environment `collect_environment()` made (what `stf-bench run` records), or None
    (an ingested run: the versions there are the ingesting machine's, not the run's)."""
    if not isinstance(environment, dict) or environment.get("source") == "ingest":
        return None
    libraries = environment.get("libraries")
    value = libraries.get(library) if isinstance(libraries, dict) else None
    return value if isinstance(value, str) else None


def _migrate_1(cur: sqlite3.Cursor) -> None:
    """Schema 1 -> 2 in place (one transaction with the caller's): each run's lmms_eval_version becomes lmms-eval's
    package version where the run recorded it (`stf-bench run` keeps every library's version in its environment),
    else NULL (schema 1 stored `git describe` of lmms-eval's working directory, kept in the environment); a run
    ingested from the embedded sample data gets data=samples when its results file is still there to say so."""
    from stf_bench.store.ingest import SAMPLES, run_data

    rows = cur.execute("SELECT id, model_args, environment, source_path, lmms_eval_version FROM runs").fetchall()
    for run_id, args_text, env_text, source_path, old in rows:
        args, environment = json.loads(args_text), json.loads(env_text)
        if old is not None and isinstance(environment, dict) and "lmms_eval_describe" not in environment:
            environment["lmms_eval_describe"] = old
        version = _library_version(environment, "lmms_eval")
        if "data" not in args and environment.get("source") == "ingest" and source_path:
            try:
                results = json.loads(Path(source_path).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                results = None
            if isinstance(results, dict) and run_data(results) == SAMPLES:
                args["data"] = SAMPLES
        cur.execute("UPDATE runs SET lmms_eval_version = ?, model_args = ?, environment = ? WHERE id = ?",
                    (version, _json(args), _json(environment), run_id))


def _migrate_2(cur: sqlite3.Cursor) -> None:
    """Schema 2 -> 3 in place: runs get the `training` column, NULL (no earlier run recorded a provenance; a trained
    checkpoint run again records it)."""
    columns = {row[1] for row in cur.execute("PRAGMA table_info(runs)")}
    if "training" not in columns:
        cur.execute("ALTER TABLE runs ADD COLUMN training TEXT")


def recorded_scorer_versions(results_path: str | os.PathLike) -> dict[str, str]:
    """The scorer versions a stf-bench results JSON names (its stf_bench.scorer_versions); {} for others."""
    try:
        meta = json.loads(Path(results_path).read_text(encoding="utf-8")).get("stf_bench") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    versions = meta.get("scorer_versions") if isinstance(meta, dict) else None
    return {str(k): str(v) for k, v in versions.items()} if isinstance(versions, dict) else {}


def payload_device(device: Any) -> str | None:
    """A latency payload's device as text: its 'name' when it is an object ({type, name, ...})."""
    if isinstance(device, dict):
        device = device.get("name") or device.get("type")
    return None if device is None else str(device)


def ingest_paths(store: Store, paths: list[str | Path], *, model: str | None = None, model_args: str | None = None,
                 protocol: str | None = None, checkpoint_fingerprint: str | None = None) -> list[RecordResult]:
    """Validate everything first, then record it all in one transaction (all or nothing)."""
    parsed = parse_paths(paths, model=model, model_args=model_args)
    return store.add_parsed(parsed, protocol=protocol, checkpoint_fingerprint=checkpoint_fingerprint)


__all__ = ["Store", "open_store", "resolve_db_path", "default_db_path", "collect_environment", "RecordResult",
           "RunRow", "ScoreRow", "SampleRecord", "DB_ENV", "ingest_paths"]

