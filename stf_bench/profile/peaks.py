"""Dense (no sparsity) peak TFLOP/s of common GPUs, so a measured rate can be read as a fraction of the device.

Figures are NVIDIA's datasheet/whitepaper numbers for tensor-core matrix work without structured sparsity (FP32
accumulate); float32 is the non-tensor-core rate (TF32 is not assumed). A GPU or dtype not in the table has no
peak: pass `--peak-tflops`.
"""

from __future__ import annotations

import re

import torch


def _half(tflops: float, fp32: float | None = None) -> dict[str, float]:
    """bf16 = fp16 dense rate, plus the fp32 rate where known."""
    rates = {"bfloat16": tflops, "float16": tflops}
    return rates if fp32 is None else {**rates, "float32": fp32}


# (words that must all appear in torch.cuda.get_device_name(), label, {dtype: dense peak TFLOP/s}); first match wins,
# so the specific variants (H100 PCIe, H100 NVL) come before the general name.
PEAKS: tuple[tuple[tuple[str, ...], str, dict[str, float]], ...] = (
    (("H100", "PCIE"), "H100 PCIe", _half(756.0, 51.2)),
    (("H100", "NVL"), "H100 NVL", _half(835.0, 60.0)),
    (("H100",), "H100 SXM", _half(989.4, 66.9)),
    (("H800",), "H800 SXM", _half(989.4, 66.9)),
    (("GH200",), "GH200", _half(989.4, 66.9)),
    (("H200",), "H200 SXM", _half(989.4, 66.9)),
    (("B200",), "B200", _half(2250.0)),
    (("A100",), "A100", _half(312.0, 19.5)),
    (("A800",), "A800", _half(312.0, 19.5)),
    (("L40S",), "L40S", _half(362.1, 91.6)),
    (("L40",), "L40", _half(181.0, 90.5)),
    (("L4",), "L4", _half(121.0, 30.3)),
    (("A10",), "A10", _half(125.0, 31.2)),
    (("A40",), "A40", _half(149.7, 37.4)),
    (("6000", "ADA"), "RTX 6000 Ada", _half(364.2, 91.1)),
    (("A6000",), "RTX A6000", _half(154.8, 38.7)),
    (("4090",), "GeForce RTX 4090", _half(165.2, 82.6)),
    (("3090",), "GeForce RTX 3090", _half(71.0, 35.6)),
    (("V100",), "V100", {"float16": 125.0, "float32": 15.7}),
    (("T4",), "T4", {"float16": 65.0, "float32": 8.1}),
)


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.bfloat16` -> `bfloat16`."""
    return str(dtype).removeprefix("torch.")


def lookup_peak(device_name: str, dtype: torch.dtype) -> tuple[str, float] | None:
    """(table label, dense peak TFLOP/s) of a GPU at a dtype; None when the GPU or that dtype is not in the table."""
    words = set(re.split(r"[^A-Z0-9]+", device_name.upper()))
    for required, label, by_dtype in PEAKS:
        if words.issuperset(required):
            peak = by_dtype.get(dtype_name(dtype))
            return None if peak is None else (label, peak)
    return None
