"""stf_bench.files: a file is written whole or not at all."""

import pytest

from stf_bench.files import write_text_atomically


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
