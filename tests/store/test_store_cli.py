"""`stf-bench ingest` on the command line."""

from __future__ import annotations

from stf_bench.cli import main
from stf_bench.store.db import open_store


def test_ingest_cli_twice_then_a_foreign_file(tmp_path, lmms_out, capsys, monkeypatch):
    db = tmp_path / "r.sqlite"
    assert main(["ingest", str(lmms_out), "--db", str(db)]) == 0
    assert "10 new record(s), 0 already present" in capsys.readouterr().out
    monkeypatch.setenv("STF_BENCH_DB", str(db))  # the environment variable names the same store
    assert main(["ingest", str(lmms_out)]) == 0
    assert "0 new record(s), 10 already present" in capsys.readouterr().out

    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"hello": "world"}')
    assert main(["ingest", str(foreign), str(lmms_out)]) == 2
    err = capsys.readouterr().err
    assert "stf-bench ingest: error:" in err and str(foreign) in err
    with open_store(db) as store:
        assert store.counts()["runs"] == 2


def test_ingest_dry_run_writes_nothing(tmp_path, lmms_out, capsys):
    db = tmp_path / "r.sqlite"
    assert main(["ingest", str(lmms_out), "--db", str(db), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("ok  run") == 2
    assert not db.exists()


def test_ingest_records_given_metadata(tmp_path, lmms_out):
    db = tmp_path / "r.sqlite"
    assert main(["ingest", str(lmms_out / "oracle-a"), "--db", str(db), "--model", "stf-7b", "--model-args",
                 "k=4,e=8", "--protocol", "llava", "--fingerprint", "sha256:abc"]) == 0
    with open_store(db) as store:
        run = store.runs()[0]
    assert (run.model, run.model_args, run.protocol, run.checkpoint_fingerprint) == (
        "stf-7b", {"k": 4, "e": 8}, "llava", "sha256:abc")
