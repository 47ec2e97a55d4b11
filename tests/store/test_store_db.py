"""The SQLite store: where it lives, what it refuses, transactions, and two processes writing at once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from stf_bench.errors import StfBenchError
from stf_bench.store.db import (
    DB_ENV,
    SCHEMA_VERSION,
    Store,
    default_db_path,
    ingest_paths,
    open_store,
    resolve_db_path,
)
from stf_bench.store.ingest import parse_paths


def test_db_path_order(monkeypatch, tmp_path):
    monkeypatch.setenv(DB_ENV, str(tmp_path / "env.sqlite"))
    assert resolve_db_path(tmp_path / "arg.sqlite") == tmp_path / "arg.sqlite"
    assert resolve_db_path() == tmp_path / "env.sqlite"
    monkeypatch.delenv(DB_ENV)
    assert resolve_db_path() == default_db_path()
    assert default_db_path().parts[-2:] == ("stf-bench", "results.sqlite")


def test_new_store_uses_wal_and_creates_folders(tmp_path):
    with open_store(tmp_path / "a" / "b" / "r.sqlite") as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.counts()["runs"] == 0


def test_foreign_files_are_refused_and_left_alone(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("my notes")
    with pytest.raises(StfBenchError, match=r"notes.txt: not an SQLite file"):
        open_store(text)
    assert text.read_text() == "my notes"

    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE mine (x)")
    con.commit()
    con.close()
    with pytest.raises(StfBenchError, match="not a stf-bench results store"):
        open_store(other)
    assert [r[0] for r in sqlite3.connect(other).execute("SELECT name FROM sqlite_master")] == ["mine"]

    with pytest.raises(StfBenchError, match="is a folder"):
        open_store(tmp_path)


def test_corrupt_store_file(tmp_path):
    path = tmp_path / "r.sqlite"
    open_store(path).close()
    data = bytearray(path.read_bytes())
    data[16:] = b"\xff" * (len(data) - 16)  # keep the header, destroy the rest
    path.write_bytes(bytes(data))
    with pytest.raises(StfBenchError, match="r.sqlite"):
        open_store(path)


def test_failure_mid_batch_leaves_nothing(monkeypatch, store, lmms_out, tmp_path):
    parsed = parse_paths([lmms_out])
    parsed.latency.append((tmp_path / "l.json", {"models": {"m": {}}, "device": "cpu"}))

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Store, "_insert_latency", boom)
    with pytest.raises(RuntimeError):
        store.add_parsed(parsed)
    assert store.counts() == dict.fromkeys(store.counts(), 0)


WRITER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from stf_bench.store.db import open_store
    from stf_bench.store.db import ingest_paths
    db, tag, go, lmms_out = sys.argv[1:5]
    while not Path(go).exists():
        time.sleep(0.01)
    with open_store(db) as store:
        for i in range(40):
            store.record_flops({"model": f"{tag}-{i}", "convention": "paper", "visual_tokens": i, "tflops": 1.0})
            if i == 20:
                ingest_paths(store, [lmms_out])  # both processes ingest the same files at the same time
    print("done")
""")


def test_two_processes_writing_at_once_lose_nothing(tmp_path, lmms_out):
    db, go = tmp_path / "shared.sqlite", tmp_path / "go"
    open_store(db).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), tag, str(go), str(lmms_out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in ("p", "q")]
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    with open_store(db) as store:
        models = sorted(f["model"] for f in store.flops())
        assert len(models) == 80 and len(set(models)) == 80
        counts = store.counts()
        assert counts["runs"] == 2 and counts["sample_files"] == 8 and counts["samples"] == 8 * 24


def test_a_run_s_lmms_eval_version_is_lmms_eval_s_not_a_git_commit(tmp_path, lmms_out):
    """lmms-eval's results say `git describe` of the folder it ran in (stf-bench's checkout for `stf-bench run`)."""
    import importlib.metadata
    import json

    from stf_bench.store.db import collect_environment

    results = next((lmms_out / "oracle-a").glob("*_results.json"))
    assert json.loads(results.read_text())["lmms_eval_version"] != importlib.metadata.version("lmms_eval")
    with open_store(tmp_path / "r.sqlite") as store:
        store.record_lmms_eval(results, environment={**collect_environment(), "source": "stf-bench run"})
        (run,) = store.runs()
    assert run.lmms_eval_version == importlib.metadata.version("lmms_eval")


def test_a_schema_1_store_is_migrated_when_opened(tmp_path, lmms_out):
    """Schema 1 kept lmms-eval's `git describe` as the run's lmms-eval version and did not mark ingested sample-data
    runs; opened now, it reads as schema 2 with both fixed, and nothing else changed."""
    from lmms_tasks_run import lmms_eval_pope

    from stf_bench.store.db import collect_environment

    sample_run = lmms_eval_pope(tmp_path / "samples", "Yes")
    path = tmp_path / "old.sqlite"
    with open_store(path) as store:  # what a schema-1 stf-bench wrote: same tables, other values
        store.record_lmms_eval(next((lmms_out / "oracle-a").glob("*_results.json")),
                               environment={**collect_environment(), "source": "stf-bench run"})
        ingest_paths(store, [sample_run])
        store.conn.execute("UPDATE runs SET lmms_eval_version = 'main@0123abcd'")
        store.conn.execute("UPDATE runs SET model_args = '{\"device\": \"cpu\", \"preset\": \"llava-tiny\"}' "
                           "WHERE model = 'llava-tiny'")
        store.conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        before = store.counts()
    with open_store(path) as store:
        assert store.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
        ran, ingested = store.runs()
        assert store.counts() == before
    assert ran.lmms_eval_version == collect_environment()["libraries"]["lmms_eval"]
    assert ran.environment["lmms_eval_describe"] == "main@0123abcd"
    assert ingested.lmms_eval_version is None and ingested.model_args["data"] == "samples"
    assert ingested.model_args["preset"] == "llava-tiny" and ingested.model == "llava-tiny"


def test_a_schema_2_store_gets_the_training_column_when_opened(tmp_path, lmms_out):
    """Schema 3 (issue 25) keeps a trained checkpoint's provenance with its run; a schema-2 store (no such column)
    opens as schema 3, its runs without one, and records provenance from then on."""
    from lmms_run import TRAINING, with_training

    path = tmp_path / "old.sqlite"
    with open_store(path) as store:
        store.record_lmms_eval(next((lmms_out / "oracle-b").glob("*_results.json")), model="llava-tiny")
        before = store.counts()
    conn = sqlite3.connect(path)  # what a schema-2 stf-bench wrote: runs without the column
    conn.execute("ALTER TABLE runs DROP COLUMN training")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with open_store(path) as store:
        assert store.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "3"
        assert store.counts() == before and store.runs()[0].training is None
        store.record_lmms_eval(with_training(lmms_out, "oracle-a", tmp_path / "trained"), model="runs/avgpool-7b")
        assert store.runs()[1].training == TRAINING
