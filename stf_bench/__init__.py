"""stf-bench: accuracy, compute and latency of vision-token compression in LLaVA-style models."""

__version__ = "0.1.0"


def load_model(*args, **kwargs):
    """`stf_bench.models.load_model`, imported lazily so that `import stf_bench` stays cheap."""
    from stf_bench.models.loading import load_model as _load_model

    return _load_model(*args, **kwargs)


load_model.__doc__ = "Build or load a model of the family and its processor: see stf_bench.models.loading.load_model."
__all__ = ["load_model", "__version__"]
