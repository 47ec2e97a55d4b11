"""Compression methods as plug-ins: one registry, one module per method, each declaring what it does.

`get_method(name)` returns a registered `Method` class; `list_methods()` lists them (built-ins and those installed
through the entry-point group `stf_bench.methods`). docs/methods.md says how to add one.
"""

from stf_bench.methods.base import (
    FastPaths,
    LlmMethod,
    Method,
    ModelShape,
    Param,
    ProjectorMethod,
    TokenMethod,
    VisionContext,
)
from stf_bench.methods.registry import (
    ENTRY_POINT_GROUP,
    get_method,
    get_projector,
    get_training_free,
    list_methods,
    register,
)

__all__ = ["ENTRY_POINT_GROUP", "FastPaths", "LlmMethod", "Method", "ModelShape", "Param", "ProjectorMethod",
           "TokenMethod", "VisionContext", "get_method", "get_projector", "get_training_free", "list_methods",
           "register"]
