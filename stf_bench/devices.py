"""Devices and memory, shared by `run`, `latency` and the lmms-eval adapter: `cpu` or `cuda[:N]`, checked before
anything slow (imports, downloads, loading) so that a mistake is one clear line, and a model that cannot fit is
refused before it is allocated."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from stf_bench.errors import StfBenchError

if TYPE_CHECKING:
    import torch

DEVICE_SYNTAX = re.compile(r"(cpu|cuda)(:\d+)?")


def check_device_name(name: str | None) -> str | None:
    """`cpu`, `cuda`, `cuda:N` (or None: cuda when visible); anything else is an error. No torch import."""
    if name is None:
        return None
    if not DEVICE_SYNTAX.fullmatch(str(name).strip()):
        raise StfBenchError(f"--device {name}: stf-bench runs on cpu or cuda[:N] (e.g. cuda, cuda:1)")
    return str(name).strip()


def resolve_device(name: str | None) -> torch.device:
    """The torch device for `--device` (None: cuda when visible); a GPU that torch cannot see is an error."""
    import torch

    name = check_device_name(name)
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise StfBenchError(f"--device {name}: torch {torch.__version__} ({build}) sees no CUDA GPU; "
                                f"run with --device cpu, or on a machine with a GPU and a CUDA build of torch")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise StfBenchError(f"--device {name}: torch sees {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return device


def available_memory(device: torch.device) -> int | None:
    """Free bytes on `device` (CUDA: free device memory; CPU: MemAvailable), or None when unknown."""
    import torch

    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def check_fits(n_bytes: int | None, device: torch.device, name: str, free: int | None = None) -> None:
    """Refuse a model whose weights alone exceed the free memory of `device`, before allocating anything."""
    if not n_bytes:
        return
    free = available_memory(device) if free is None else free
    if free is not None and n_bytes > free:
        raise StfBenchError(
            f"model {name!r} needs {size_text(n_bytes)} for its weights but {device} has {size_text(free)} free; "
            f"use --dtype float16/bfloat16, a smaller preset (e.g. its -tiny twin), or a device with more memory")


def size_text(n: int) -> str:
    """Bytes as GiB (or MiB below one GiB), one decimal."""
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


def weights_bytes(name: str, load_args: dict) -> int | None:
    """Bytes the weights will take, known before loading: checkpoint headers, or the preset built on `meta`.

    None when it cannot be known cheaply (a hub checkpoint not yet fetched); the load then fails on OOM instead.
    """
    import torch

    from stf_bench import load_model
    from stf_bench.models.presets import PRESETS

    element = torch.empty((), dtype=load_args["dtype"]).element_size()
    folder = Path(name)
    if folder.is_dir():
        from safetensors import SafetensorError, safe_open

        count = 0
        for file in folder.glob("*.safetensors"):
            try:
                with safe_open(str(file), "pt") as fh:
                    count += sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys())
            except (SafetensorError, OSError) as exc:
                raise StfBenchError(f"{file} is not a complete safetensors file ({exc}); the download was "
                                    f"probably cut short: download it again") from None
        return count * element or None
    preset = PRESETS.get(name)
    if preset is None or not (preset.tiny or load_args.get("random_weights") or preset.weights is None):
        return None
    meta, _ = load_model(name, device="meta", **load_args)
    return sum(p.numel() for p in meta.parameters()) * element
