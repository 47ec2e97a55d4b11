"""benchmarks/precision.py's table row (the comparison itself runs in the GPU benchmark's dry run)."""


def test_row_names_the_most_changed_tasks_and_none_when_nothing_changed(load_benchmark):
    row = load_benchmark("precision").markdown_row
    result = {"preset": "stf-tiny", "requests": 40, "changed": 7, "changed_fraction": 7 / 40,
              "per_task": {"stf_pope": {"requests": 10, "changed": 1}, "stf_gqa": {"requests": 10, "changed": 4},
                           "stf_chartqa": {"requests": 10, "changed": 2}, "stf_ocrbench": {"requests": 10, "changed": 0}}}
    assert row(result) == "| stf-tiny | 40 | 7 (17.5%) | stf_gqa 4/10, stf_chartqa 2/10, stf_pope 1/10 |"
    unchanged = {**result, "changed": 0, "changed_fraction": 0.0,
                 "per_task": {t: {**v, "changed": 0} for t, v in result["per_task"].items()}}
    assert row(unchanged).endswith("| 0 (0.0%) | none |")
