"""stf-bench: accuracy, compute and latency of vision-token compression in LLaVA-style models."""

__version__ = "0.1.0"


def load_model(*args, **kwargs):
    """Build or load a model of the family and its processor: `stf_bench.models.loading.load_model`, imported on
    first call so that `import stf_bench` stays cheap."""
    from stf_bench.models.loading import load_model as _load_model

    return _load_model(*args, **kwargs)


__all__ = ["load_model", "__version__"]
