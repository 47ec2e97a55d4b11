"""benchmarks/method_ttft.py's settings: the published ones, and `--set` replacing one method's arguments."""


def test_published_settings_and_an_override(load_benchmark):
    module = load_benchmark("method_ttft")
    published = module.published_settings()
    assert {"fastv", "prumerge+", "visionzip"} <= set(published)
    changed = module.with_overrides(published, ["fastv:k=1,r=0.75"])
    assert changed["fastv"] == {"k": 1, "r": 0.75} and changed["visionzip"] == published["visionzip"]
    assert published["fastv"] != changed["fastv"]  # the published settings are not modified in place


def test_every_registered_training_free_method_runs_at_its_128_token_preset(load_benchmark, monkeypatch):
    """Issue 27: a method's declared 128-token preset wins, a plug-in is timed too, a method without one keeps its
    published row's setting (FastV beside Table 2), and a projector is not a method to time."""
    from stf_bench.methods import Param, TokenMethod, registry
    from stf_bench.methods.mmtok import MMTok
    from stf_bench.methods.visionzip import VisionZip

    class _Plugin(TokenMethod):
        name = "fake-plugin-128"
        params = (Param("keep", 64, int, "tokens kept"),)
        presets = {128: {"keep": 128}}

    registry.list_methods()
    monkeypatch.setitem(registry._REGISTRY, _Plugin.name, _Plugin)  # as an entry point registers it; undone after
    module = load_benchmark("method_ttft")
    settings = module.method_settings()
    assert settings["visionzip"] == VisionZip.presets[128] == {"dominant": 108, "contextual": 20, "cls": True}
    assert settings["mmtok"] == MMTok.presets[128] and settings["mmtok"]["tokens"] == 128
    assert settings["fake-plugin-128"] == {"keep": 128}
    assert settings["fastv"] == module.published_settings()["fastv"] == {"k": 2, "r": 0.75}
    assert "mlp2x_gelu" not in settings and "stf" not in settings
