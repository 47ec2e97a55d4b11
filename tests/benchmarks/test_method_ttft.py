"""benchmarks/method_ttft.py's settings: the published ones, and `--set` replacing one method's arguments."""


def test_published_settings_and_an_override(load_benchmark):
    module = load_benchmark("method_ttft")
    published = module.published_settings()
    assert {"fastv", "prumerge+", "visionzip"} <= set(published)
    changed = module.with_overrides(published, ["fastv:k=1,r=0.75"])
    assert changed["fastv"] == {"k": 1, "r": 0.75} and changed["visionzip"] == published["visionzip"]
    assert published["fastv"] != changed["fastv"]  # the published settings are not modified in place
