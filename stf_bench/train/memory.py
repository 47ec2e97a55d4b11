"""The estimated memory per process of a training run's model states, printed by `stf-bench train` before it starts.

Model states only: the weights, gradients and optimizer (AdamW) states of the trained parameters and the weights of
the frozen ones. Activations (they depend on the batch, the sequence length and gradient checkpointing), buffers,
DeepSpeed's communication buckets, DDP's gradient buckets, the CUDA context and fragmentation come on top.

Bytes per parameter, after the ZeRO paper (Rajbhandari et al., arXiv:1910.02054, section 3.1): mixed precision
with DeepSpeed holds 2 (16-bit weights) + 2 (16-bit gradients) + 12 (fp32 master weights, momentum, variance) per
trained parameter and 2 per frozen one (DeepSpeed casts the whole module to 16 bits); transformers' own bf16
(autocast over fp32 weights) holds 4 + 4 + 8 and 4 per frozen one; an fp32 run (CPU) 4 + 4 + 8 and 4. ZeRO splits
over the processes: stage 1 the optimizer states, stage 2 also the gradients, stage 3 also every weight (frozen ones
included). docs/training.md ("Memory") works the full-size figures out.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per process of each kind of model state (activations not included)."""

    trained_weights: int
    gradients: int
    optimizer_states: int
    frozen_weights: int
    zero_stage: int
    processes: int

    @property
    def total(self) -> int:
        return self.trained_weights + self.gradients + self.optimizer_states + self.frozen_weights

    def line(self) -> str:
        """One line for the run's output, saying what the figure is and is not."""
        how = f"ZeRO-{self.zero_stage}" if self.zero_stage else "no ZeRO"
        plural = "es" if self.processes != 1 else ""
        return (f"estimated memory per process ({how}, {self.processes} process{plural}): "
                f"{size(self.total)} of model states = trained weights {size(self.trained_weights)} + "
                f"gradients {size(self.gradients)} + optimizer states {size(self.optimizer_states)} + "
                f"frozen weights {size(self.frozen_weights)}; an estimate from the parameter counts, "
                f"activations and buffers not included")


def size(n_bytes: int) -> str:
    """`12.95 GiB`, or `1.39 MiB` below a GiB (tiny presets)."""
    return f"{n_bytes / GIB:.2f} GiB" if n_bytes >= GIB else f"{n_bytes / 2**20:.2f} MiB"


def estimate(total: int, trainable: int, *, zero_stage: int, processes: int, mixed_precision: bool,
             deepspeed: bool) -> MemoryEstimate:
    """The model states per process of a model with `total` parameters, `trainable` of them trained.

    `mixed_precision`: bf16 or fp16 on (else everything in fp32); `deepspeed`: DeepSpeed holds the weights in 16
    bits and the fp32 master copy in the optimizer (else transformers keeps fp32 weights under autocast).
    `zero_stage` 0 (no ZeRO) to 3; the split parts are divided by `processes` (rounded up)."""
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage {zero_stage} is not 0, 1, 2 or 3")
    frozen = total - trainable
    if mixed_precision and deepspeed:
        weight, grad, optim, frozen_bytes = 2, 2, 12, 2
    else:  # fp32 weights (and gradients): autocast over them, or an fp32 run
        weight, grad, optim, frozen_bytes = 4, 4, 8, 4

    def split(n: int, from_stage: int) -> int:
        return -(-n // processes) if zero_stage >= from_stage else n

    return MemoryEstimate(trained_weights=split(weight * trainable, 3), gradients=split(grad * trainable, 2),
                          optimizer_states=split(optim * trainable, 1), frozen_weights=split(frozen_bytes * frozen, 3),
                          zero_stage=zero_stage, processes=processes)


def parameter_counts(model: str, stage: str, **overrides) -> tuple[int, int]:
    """(all, trained in `stage`) parameters of a preset with its overrides, counted on the meta device (nothing
    allocated, no weights read)."""
    from stf_bench.models import load_model
    from stf_bench.train.trainer import set_trainable

    built, _ = load_model(model, random_weights=True, device="meta", **overrides)
    set_trainable(built, stage)
    return (sum(p.numel() for p in built.parameters()),
            sum(p.numel() for p in built.parameters() if p.requires_grad))
