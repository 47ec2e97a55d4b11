"""Writing weights into a model whose parameters ZeRO-3 may have split (`stf-bench train --deepspeed zero3` builds
it inside `deepspeed.zero.Init`): one function, shared by the checkpoint loader (stf_bench/models/loading.py: base
weights, the stage-1 projector) and the shipped weights (stf_bench/models/default_model.py)."""

from __future__ import annotations

import torch


def write_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` into the model's tensors of the same keys, in place (the keys and shapes checked before).
    A parameter partitioned by ZeRO-3 (`deepspeed.zero.Init`: it has DeepSpeed's `ds_id`) is gathered whole, one at a
    time, the first process writes it and DeepSpeed splits it again (`GatheredParameters(modifier_rank=0)`); every
    process must make the same calls, with the same keys in the same order."""
    own = model.state_dict(keep_vars=True)  # tied keys too, as the Parameter objects themselves
    with torch.no_grad():
        for key, value in state.items():
            target = own[key]
            if not hasattr(target, "ds_id"):
                target.copy_(value)
                continue
            import deepspeed

            with deepspeed.zero.GatheredParameters([target], modifier_rank=0):
                if torch.distributed.get_rank() == 0:
                    target.copy_(value)
