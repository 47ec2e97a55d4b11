"""The training-free methods' published rows (Table 2: FastV, PruMerge+; Table 4: VisionZip) are the counterparts
of runs with exactly the setting named in baselines/tables.yaml, and of no other run."""

from __future__ import annotations

import pytest

from stf_bench.methods.options import method_model_args
from stf_bench.published import load_published
from stf_bench.report.attributes import matches, run_attributes

SETTINGS = [("2", "FastV", "fastv", "k=2,r=0.75"), ("2", "PruMerge+", "prumerge+", "tokens=144"),
            ("4", "VisionZip", "visionzip", "dominant=122,contextual=22")]


@pytest.mark.parametrize("table,row,method,args", SETTINGS)
def test_the_named_setting_is_the_rows_counterpart(table, row, method, args):
    rows = {r.method: r for r in load_published().tables[table].rows}
    model_args = method_model_args(method, args)  # what `--method M --method-args ARGS` records
    attrs = run_attributes("llava-1.5-7b", model_args)
    assert matches(attrs, rows[row].match)
    assert [r.method for r in rows.values() if r.match and matches(attrs, r.match)] == [row]
    plain = run_attributes("llava-1.5-7b", {})
    assert not matches(plain, rows[row].match)
