"""The method registry, timm-style: one name, one class; built-ins plus the entry-point group `stf_bench.methods`.

An installed package adds a method without touching this repository by declaring, in its pyproject.toml,

    [project.entry-points."stf_bench.methods"]
    random-drop = "my_package:RandomDrop"

where `RandomDrop` is a `Method` subclass (see docs/methods.md and examples/method-plugin/).
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from stf_bench.errors import StfBenchError
from stf_bench.methods.base import ACTS_ON, Method, ProjectorMethod

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "stf_bench.methods"
# one module per built-in method, imported on first use of the registry
BUILTIN_MODULES = ("llava_mlp", "avgpool", "token_concat", "qformer", "mbtf", "stf", "mbtf_stf", "fastv", "visionzip",
                   "prumerge_plus", "mmtok", "mustdrop", "sparsevlm")

_REGISTRY: dict[str, type[Method]] = {}
_loaded = False


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method under `cls.name`; a second method with the same name is an error."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise StfBenchError(f"{cls.__qualname__} declares no `name`")
    if getattr(cls, "acts_on", None) not in ACTS_ON:
        raise StfBenchError(f"method {name!r} declares acts_on={getattr(cls, 'acts_on', None)!r}; "
                            f"valid: {', '.join(ACTS_ON)}")
    other = _REGISTRY.get(name)
    if other is not None and other is not cls:
        raise StfBenchError(f"method name {name!r} is taken by {other.__module__}.{other.__qualname__} "
                            f"({other.source}); pick another name for {cls.__module__}.{cls.__qualname__}")
    _check_config_fields(cls)
    _REGISTRY[name] = cls
    return cls


def _check_config_fields(cls: type[Method]) -> None:
    """Two projectors may share an argument name only if it is stored in the same config field.

    Only projectors are compared: a training-free method's arguments (FastV's `k`) live in the model arguments, not
    in a config field, so they never clash with a projector's, whichever of the two registers first."""
    if not issubclass(cls, ProjectorMethod):
        return
    for other in _REGISTRY.values():
        if not issubclass(other, ProjectorMethod):
            continue
        theirs = {p.name: p.config_field for p in other.params}
        for p in cls.params:
            if p.config_field and theirs.get(p.name, p.config_field) != p.config_field:
                raise StfBenchError(f"method {cls.name!r}: argument {p.name!r} is stored in {p.config_field!r}, but "
                                    f"{other.name!r} stores it in {theirs[p.name]!r}")


def _load() -> None:
    """Import the built-ins, then every installed entry point (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(f"stf_bench.methods.{module}")
    # built-ins in BUILTIN_MODULES order, whichever of their modules was imported first
    order = {f"stf_bench.methods.{module}": i for i, module in enumerate(BUILTIN_MODULES)}
    ranked = sorted(_REGISTRY.items(), key=lambda item: order.get(item[1].__module__, len(order)))
    _REGISTRY.clear()
    _REGISTRY.update(ranked)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _register_entry_point(ep)


def _register_entry_point(ep) -> None:
    """Load one plug-in; a broken one is reported and skipped (it must not break the tool)."""
    try:
        cls = ep.load()
    except Exception as exc:
        log.warning("method plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
        return
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        log.warning("method plugin %s (%s) is not a stf_bench.methods.Method subclass; ignored", ep.name, ep.value)
        return
    dist = getattr(ep, "dist", None)
    cls.source = f"{dist.name} {dist.version}" if dist is not None else f"entry point {ep.value}"
    if cls.name != ep.name:
        log.warning("method plugin entry point %s names class %s whose name is %r", ep.name, ep.value, cls.name)
    try:
        register(cls)
    except StfBenchError as exc:
        log.warning("method plugin %s not registered: %s", ep.name, exc)


def list_methods(acts_on: str | None = None) -> list[type[Method]]:
    """Registered methods, built-ins first in registry order; only those acting on `acts_on` when given."""
    _load()
    return [cls for cls in _REGISTRY.values() if acts_on is None or cls.acts_on == acts_on]


def get_method(name: str) -> type[Method]:
    """The method registered as `name`, or a StfBenchError listing the registered ones."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise StfBenchError(f"unknown method {name!r}; registered: {', '.join(_REGISTRY)} "
                            f"(`stf-bench methods` lists them with their arguments)") from None


def find_method(name: str) -> type[Method] | None:
    """The method registered as `name` or declaring it among its `aliases` (case-insensitive), else None."""
    _load()
    low = name.lower()
    for cls in _REGISTRY.values():
        if low == cls.name.lower() or low in (a.lower() for a in cls.aliases):
            return cls
    return None


def get_projector(name: str) -> type[ProjectorMethod]:
    """A registered projector method; a method of another kind is refused with the projectors' names."""
    cls = get_method(name)
    if not issubclass(cls, ProjectorMethod):
        names = ", ".join(c.name for c in list_methods("projector"))
        raise StfBenchError(f"{name!r} is a training-free method (acts_on={cls.acts_on}), not a projector; "
                            f"use --method {name}; projectors: {names}")
    return cls


def get_training_free(name: str) -> type[Method]:
    """A registered method that is not a projector (what `--method` takes)."""
    cls = get_method(name)
    if issubclass(cls, ProjectorMethod):
        names = ", ".join(c.name for c in list_methods() if not issubclass(c, ProjectorMethod)) or "none installed"
        raise StfBenchError(f"{name!r} is a projector, part of a checkpoint: pick a model that has it (e.g. a preset, "
                            f"`stf-bench models`) or projector={name}; --method takes a training-free method: {names}")
    return cls
