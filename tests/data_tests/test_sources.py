"""Data location: a dataset folder that lacks a column the tasks read is refused before any work."""

from __future__ import annotations

import shutil

import pytest

from stf_bench.accuracy import names
from stf_bench.data import sources
from stf_bench.data.samples import ensure_samples
from stf_bench.errors import StfBenchError


@pytest.mark.parametrize(("benchmark", "folder", "column"), [("pope", "POPE", "answer"),
                                                             ("gqa", "GQA", "image")])
def test_a_renamed_column_is_named_with_the_fix(tmp_path, benchmark, folder, column):
    """Today: `KeyError: 'answer'` inside a tenacity RetryError traceback, after the model has answered every row."""
    import pyarrow.parquet as pq

    shutil.copytree(ensure_samples() / folder, tmp_path / folder)
    assert sources.locate([benchmark], data_dir=tmp_path)  # the copy as it is: accepted
    for path in (tmp_path / folder).rglob("*.parquet"):
        table = pq.read_table(path)
        if column in table.column_names:
            pq.write_table(table.rename_columns([f"{c}_renamed" if c == column else c for c in table.column_names]),
                           path)
    with pytest.raises(StfBenchError) as info:
        sources.locate([benchmark], data_dir=tmp_path)
    message = str(info.value)
    assert f"{benchmark}: " in message and f"has no column {column!r}" in message and "\n" not in message
    assert "rename the column back" in message and "hf download" in message


def test_every_declared_benchmark_has_its_columns_in_the_sample_data():
    """The sample data carries the real schema, so every column declared as needed is in it."""
    sources.locate(names(), data="samples")
