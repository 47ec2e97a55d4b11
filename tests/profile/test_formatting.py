"""Units and wording of the profile commands' output: FLOPs in a unit that fits, speedups that disagree."""

from __future__ import annotations

import pytest

from stf_bench.profile.formatting import flops_unit, format_flops, speedup_disagreement


def test_flops_units_fit_the_value_and_are_always_named():
    assert flops_unit(1.876) == ("TFLOPs", 1.0) and flops_unit(0.467)[0] == "TFLOPs"  # the paper's unit
    assert flops_unit(2.5e-5) == ("MFLOPs", pytest.approx(1e6)) and flops_unit(3e-3)[0] == "GFLOPs"
    assert format_flops(2.5e-5) == "25.0 MFLOPs" and format_flops(0.0286, "/s") == "0.029 TFLOP/s"
    assert format_flops(3e-3, "/s") == "3.0 GFLOP/s" and format_flops(0.0) == "0.000 TFLOPs"


def test_mean_and_median_speedups_that_disagree_are_named():
    assert "disagree on which model is faster" in speedup_disagreement(1.19, 0.84)
    assert "1.19x from the means, 0.84x from the medians" in speedup_disagreement(1.19, 0.84)
    assert "more than 10%" in speedup_disagreement(1.6, 1.27)
    assert speedup_disagreement(1.27, 1.35) == "" and speedup_disagreement(4.0, 4.1) == ""
