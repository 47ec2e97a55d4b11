"""stf_bench.files: files are written whole or not at all, and a failed write is one line naming what and where."""

import errno
import os

import pytest

from stf_bench.errors import StfBenchError
from stf_bench.files import write_files_atomically, write_text_atomically


def test_writes_the_text_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "table.md"
    assert write_text_atomically(path, "ünïcode\n") == path
    assert path.read_text(encoding="utf-8") == "ünïcode\n"
    write_text_atomically(path, "second")
    assert path.read_text(encoding="utf-8") == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_a_failed_write_keeps_the_previous_version_and_removes_the_temp_file(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("previous")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomically(path, "half \ud800 written")  # a lone surrogate: UTF-8 cannot encode it
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def _fail_fsync(monkeypatch, name: str, error: int = errno.ENOSPC) -> None:
    """fsync fails with `error` for the temp file of `name`, as a full disk does on the way out."""
    real = os.fsync

    def fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f".{name}."):
            raise OSError(error, os.strerror(error))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_several_files_are_written_complete_and_in_their_folders(tmp_path):
    files = [(tmp_path / "run" / "samples.jsonl", ["{}\n", "{}\n"]), (tmp_path / "run" / "results.json", ["{}"])]
    write_files_atomically(files, tmp_path)
    assert (tmp_path / "run" / "samples.jsonl").read_text() == "{}\n{}\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["results.json", "samples.jsonl"]


def test_a_full_disk_writes_none_of_the_files_and_names_folder_file_subject_and_flag(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("previous")
    _fail_fsync(monkeypatch, "b.txt")
    with pytest.raises(StfBenchError) as info:
        write_files_atomically([(tmp_path / "a.txt", ["new"]), (tmp_path / "b.txt", ["new"])], tmp_path,
                               subject="tables", flag="--out")
    assert str(info.value) == (f"no space left on {tmp_path} (writing b.txt); no tables were written: free some "
                               f"space or pass another --out, then run the same command again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "previous"


def test_another_os_error_gives_its_reason_and_the_flag_to_check(tmp_path, monkeypatch):
    _fail_fsync(monkeypatch, "results.json", errno.EIO)
    with pytest.raises(StfBenchError, match=f"could not write {tmp_path / 'results.json'} \\(Input/output error\\); "
                                            f"no results were written: check that --output-dir {tmp_path} is"):
        write_files_atomically([(tmp_path / "results.json", ["{}"])], tmp_path, subject="results")
    assert list(tmp_path.iterdir()) == []


def test_the_one_text_helper_says_the_same(tmp_path, monkeypatch):
    _fail_fsync(monkeypatch, "step.json")
    with pytest.raises(StfBenchError, match=f"^no space left on {tmp_path} \\(writing step.json\\); no files were"):
        write_text_atomically(tmp_path / "step.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_that_is_no_os_error_still_removes_every_temp_file(tmp_path):
    """The run's writer cleaned up after an OSError only: a sample line that failed to serialize (or an interrupt)
    left the temp files of the files before it."""
    def lines():
        yield "first\n"
        raise ValueError("not serializable")

    with pytest.raises(ValueError, match="not serializable"):
        write_files_atomically([(tmp_path / "a.jsonl", ["{}\n"]), (tmp_path / "b.jsonl", lines())], tmp_path)
    assert list(tmp_path.iterdir()) == []
