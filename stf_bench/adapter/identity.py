"""What names a loaded model for the answer cache (`stf_bench.adapter.resume`): its name, dtype, loading arguments,
a fingerprint of its weights and the prompt template, so that cached answers are reused only by the same model;
and the run API every lmms-eval model of ours offers the runner (`RunState`: `begin_run`, `run_summary`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
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


def model_identity(name: str, model: torch.nn.Module, random_weights: bool, overrides: dict[str, Any],
                   weights: str | None = None) -> str:
    """JSON of everything that decides the model's answers: part of every answer-cache key. `weights`: the
    model's `weights_fingerprint`, when the caller has it already."""
    return json.dumps({"model": name, "dtype": str(next(model.parameters()).dtype),
                       "random_weights": bool(random_weights), "overrides": overrides,
                       "weights": weights or weights_fingerprint(model), "template": TEMPLATE_ID}, sort_keys=True)


def identity_hash(identity: str) -> str:
    """Short hash of a model identity: the name of its cache folder."""
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunSummary:
    """What a finished run records about the model that answered."""

    identity: str  # the model identity JSON (`model_identity`)
    weights: str | None  # its weights fingerprint (the store's checkpoint fingerprint); None when unknown
    world_size: int
    resumed_answers: int  # answers taken from the answer cache
    method_summary: dict | None  # what a training-free method reports about the run, if it does


class RunState:
    """The run API of an lmms-eval model of ours (mixed in before `lmms`): the runner starts a run with
    `begin_run` (where answers are cached, whether to show progress; skipped rows cleared) and reads
    `run_summary()` after it, instead of setting and reading attributes from outside."""

    identity: str = ""
    weights: str | None = None
    answer_cache: Any = None  # a `resume.AnswerCache`, or None
    show_progress: bool = True
    skipped: dict

    @property
    def identity_hash(self) -> str:
        """Short hash of the model identity (name, dtype, overrides, weights, template): the cache folder name."""
        return identity_hash(self.identity)

    def begin_run(self, answer_cache: Any, show_progress: bool = True) -> None:
        """Start a run: answers go to and come from `answer_cache` (None: no cache); rows skipped so far are
        forgotten."""
        self.answer_cache = answer_cache
        self.show_progress = show_progress
        self.skipped = {}

    def method_summary(self) -> dict | None:
        """What the model's training-free method reports about the run (None: no method, or nothing to say)."""
        return None

    def run_summary(self) -> RunSummary:
        """The model's part of the run's record."""
        hits = 0 if self.answer_cache is None else self.answer_cache.hits
        return RunSummary(self.identity, self.weights, self.world_size, hits, self.method_summary())
