"""GPU peak table lookups by the names torch reports."""

from __future__ import annotations

import pytest
import torch

from stf_bench.profile.peaks import lookup_peak


@pytest.mark.parametrize("name,dtype,label,peak", [
    ("NVIDIA H100 80GB HBM3", torch.bfloat16, "H100 SXM", 989.4),
    ("NVIDIA H100 PCIe", torch.bfloat16, "H100 PCIe", 756.0),
    ("NVIDIA H100 NVL", torch.float16, "H100 NVL", 835.0),
    ("NVIDIA H200", torch.bfloat16, "H200 SXM", 989.4),
    ("NVIDIA A100-SXM4-80GB", torch.bfloat16, "A100", 312.0),
    ("NVIDIA A100-PCIE-40GB", torch.float32, "A100", 19.5),
    ("NVIDIA L40S", torch.bfloat16, "L40S", 362.1),
    ("NVIDIA L4", torch.bfloat16, "L4", 121.0),
    ("NVIDIA RTX A6000", torch.bfloat16, "RTX A6000", 154.8),
    ("NVIDIA GeForce RTX 4090", torch.bfloat16, "GeForce RTX 4090", 165.2),
])
def test_known_gpus(name: str, dtype: torch.dtype, label: str, peak: float) -> None:
    assert lookup_peak(name, dtype) == (label, peak)


@pytest.mark.parametrize("name,dtype", [
    ("NVIDIA RTX A4000", torch.bfloat16),  # not an A40
    ("Tesla V100-SXM2-16GB", torch.bfloat16),  # no bf16 tensor cores
    ("Some Future Accelerator", torch.bfloat16),
])
def test_unknown_gpus_or_dtypes_have_no_peak(name: str, dtype: torch.dtype) -> None:
    assert lookup_peak(name, dtype) is None
