"""benchmarks/method_decode.py: every subject timed on the same requests, ratios to the base model."""

import pytest


@pytest.mark.slow
def test_each_subject_is_timed_on_the_same_requests(load_benchmark):
    module = load_benchmark("method_decode")
    result = module.measure("llava-tiny", "fastv", {"k": 1, "r": 0.5}, "pope", 1, 4, 2, recompute=False)
    assert result["requests"] == 1
    assert set(result["seconds"]) == {"base", "base, fast_paths=false (plain generate)", "fastv (pruned KV cache)",
                                      "fastv (pruned KV cache, generate loop)"}
    assert all(len(s) == 2 and min(s) > 0 for s in result["seconds"].values())
    median = result["median_s"]["fastv (pruned KV cache)"]
    assert result["ratio_to_base"]["fastv (pruned KV cache)"] == median / result["median_s"]["base"]
    assert result["same_answers_as_recomputation"] is None
    assert result["same_answers_as_generate_loop"] is True  # the method's own loop answers as generate did
