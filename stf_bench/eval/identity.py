"""What names a loaded model for the answer cache (`stf_bench.eval.resume`): its name, dtype, loading arguments,
a fingerprint of its weights and the prompt template, so that cached answers are reused only by the same model.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from stf_bench.models.conversation import TEMPLATE_ID


def weights_fingerprint(model: torch.nn.Module) -> str:
    """Cheap identity of loaded weights: names, shapes, dtypes and the first/last values of every tensor."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().reshape(-1)
        probe = torch.cat([flat[:256], flat[-256:]]).float().cpu().numpy().tobytes()
        h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        h.update(probe)
    return h.hexdigest()


def model_identity(name: str, model: torch.nn.Module, random_weights: bool, overrides: dict[str, Any]) -> str:
    """JSON of everything that decides the model's answers: part of every answer-cache key."""
    return json.dumps({"model": name, "dtype": str(next(model.parameters()).dtype),
                       "random_weights": bool(random_weights), "overrides": overrides,
                       "weights": weights_fingerprint(model), "template": TEMPLATE_ID}, sort_keys=True)


def identity_hash(identity: str) -> str:
    """Short hash of a model identity: the name of its cache folder."""
    return hashlib.sha256(identity.encode()).hexdigest()[:16]
