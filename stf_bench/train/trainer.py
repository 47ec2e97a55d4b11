"""One training stage on `transformers.Trainer`: what is trained, how the visual tokens enter, how the loss is averaged.

- Stage 1 (`pretrain`) trains the projector alone; stage 2 (`finetune`) the LLM and the projector. The vision tower is
  frozen in both and run under `torch.no_grad()` (LLaVA's CLIPVisionTower.forward is decorated so).
- `TrainingForward` splices each image's visual tokens in place of its -200 (labels -100 there), strips padding,
  cuts at model_max_length and pads right, as LLaVA's `prepare_inputs_labels_for_multimodal` does
  (haotian-liu/LLaVA @ c121f04, `llava/model/llava_arch.py`); then the model's own forward computes the loss.
- The loss is the mean over the label tokens of each micro-batch, divided by the accumulation steps, as with
  transformers 4.37 (LLaVA-1.5): `accepts_loss_kwargs = False` keeps transformers 5 from averaging over the whole
  accumulated batch instead (tests/train/test_trainer.py checks the gradients).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import torch
from torch import nn
from transformers import Trainer

from stf_bench.train.batches import ModalitySampler
from stf_bench.train.labels import IGNORE, IMAGE_INDEX


def set_trainable(model, stage: str, unfreeze_vision_tower: bool = False) -> None:
    """Stage 1: projector only; stage 2: LLM (embeddings, blocks, lm_head) + projector; the vision tower never, unless
    `unfreeze_vision_tower` (stage 2, `--unfreeze-vision-tower`: LLaVA-NeXT's `unfreeze_mm_vision_tower`)."""
    model.requires_grad_(stage == "finetune")
    model.model.vision_tower.requires_grad_(unfreeze_vision_tower and stage == "finetune")
    model.model.multi_modal_projector.requires_grad_(True)


class TrainingForward(nn.Module):
    """The module the Trainer trains: the LLaVA model (`.llava`) with LLaVA's way of placing images in the
    sequence. Inputs are the collator's: ids with one -200 per image, labels, pixel_values of the image rows."""

    accepts_loss_kwargs = False  # the loss of each micro-batch is its own mean (LLaVA-1.5's averaging)

    def __init__(self, llava, pad_id: int, max_length: int, dummy_image: bool = False):
        super().__init__()
        self.llava, self.pad_id, self.max_length = llava, pad_id, max_length
        self.dummy_image = dummy_image

    @property
    def config(self):
        """The LLaVA model's config: DeepSpeed's `auto` bucket sizes are read from its text hidden size."""
        return self.llava.config

    def visual(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n_images, N, H): the vision tower without gradients (with them when it trains: `--unfreeze-vision-tower`),
        the projector with them."""
        inner = self.llava.model
        tower = inner.vision_tower
        with torch.no_grad() if not any(p.requires_grad for p in tower.parameters()) else contextlib.nullcontext():
            features = inner.vision_features(pixel_values.to(tower.get_input_embeddings().weight.dtype))
        return inner.multi_modal_projector(features)

    def splice(self, input_ids: torch.Tensor, labels: torch.Tensor, visual: torch.Tensor | None,
               image_rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs_embeds, attention_mask, labels): row `image_rows[k]`'s image (`visual[k]`) in place of its -200,
        padding stripped (every pad id, as LLaVA's attention mask does), rows cut at max_length and right-padded.
        A row keeps its own image even when an earlier row's -200 was cut off (LLaVA gives every row an image slot)."""
        # One embedding call for the whole micro-batch (the -200s looked up as id 0, never used): under ZeRO-3 each
        # call gathers the embedding matrix collectively, so every process must make the same number of calls
        # whatever its rows hold (a call per text piece hung a 2-process run whose ranks had different rows).
        table = self.llava.get_input_embeddings()(input_ids.clamp(min=0))
        owner = {} if image_rows is None else {int(r): k for k, r in enumerate(image_rows.tolist())}
        rows, row_labels = [], []
        for b, (ids, lab) in enumerate(zip(input_ids, labels)):
            keep = ids != self.pad_id
            ids, lab, row_table = ids[keep], lab[keep], table[b][keep]
            where = (ids == IMAGE_INDEX).nonzero().flatten().tolist()
            pieces, piece_labels, start = [], [], 0
            for stop in [*where, len(ids)]:
                pieces.append(row_table[start:stop])
                piece_labels.append(lab[start:stop])
                if stop < len(ids):
                    tokens = visual[owner[b]]
                    pieces.append(tokens.to(pieces[-1].dtype))
                    piece_labels.append(torch.full((tokens.shape[0],), IGNORE, dtype=lab.dtype, device=lab.device))
                start = stop + 1
            rows.append(torch.cat(pieces)[:self.max_length])
            row_labels.append(torch.cat(piece_labels)[:self.max_length])
        width = max(r.shape[0] for r in rows)
        embeds = rows[0].new_zeros((len(rows), width, rows[0].shape[-1]))
        out_labels = labels.new_full((len(rows), width), IGNORE)
        mask = torch.zeros((len(rows), width), dtype=torch.long, device=labels.device)
        for b, (r, lab) in enumerate(zip(rows, row_labels)):
            embeds[b, :r.shape[0]], out_labels[b, :r.shape[0]], mask[b, :r.shape[0]] = r, lab, 1
        return embeds, mask, out_labels

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, pixel_values: torch.Tensor | None = None,
                image_rows: torch.Tensor | None = None):
        unused = None
        if pixel_values is None and self.dummy_image:
            # Text-only micro-batch under ZeRO-3: every process must run the same modules (each module's weights are
            # gathered collectively), so the vision tower and projector run on one zero image that is not used, as
            # LLaVA's LazySupervisedDataset gives text-only rows `torch.zeros(3, H, W)` (train.py @ c121f04).
            size = self.llava.config.vision_config.image_size
            unused = self.visual(torch.zeros((1, 3, size, size), device=input_ids.device))
        visual = self.visual(pixel_values) if pixel_values is not None else None
        embeds, mask, labels = self.splice(input_ids, labels, visual, image_rows)
        out = self.llava(inputs_embeds=embeds, attention_mask=mask, labels=labels, use_cache=False)
        if not (labels[:, 1:] != IGNORE).any():  # nothing to learn (masked rows only): a zero loss, not 0/0 = NaN
            out.loss = out.logits.sum() * 0.0
        if unused is not None:
            out.loss = out.loss + unused.sum() * 0.0  # the projector gets a zero gradient, as in LLaVA
        return out


class StageTrainer(Trainer):
    """transformers' Trainer with LLaVA's modality-grouped sampler (stage 2) and per-micro-batch loss averaging."""

    def __init__(self, *args, group_by_modality: bool = False, vision_tower_lr: float | None = None,
                 projector_lr: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_by_modality = group_by_modality
        self.vision_tower_lr, self.projector_lr = vision_tower_lr, projector_lr
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False  # each micro-batch's mean: the Trainer divides by the accumulation steps

    def create_optimizer(self, model=None):
        """The Trainer's optimizer; with `projector_lr` / `vision_tower_lr`, the projector's / trained vision tower's
        parameters in groups of their own at that lr (LLaVA's LLaVATrainer does so for `mm_projector_lr`,
        llava/train/llava_trainer.py @ c121f04; LLaVA-NeXT's also for `mm_vision_tower_lr` @ df17966), weight decay
        as the Trainer decides it."""
        own = {".multi_modal_projector.": self.projector_lr, ".vision_tower.": self.vision_tower_lr}
        own = {part: lr for part, lr in own.items() if lr is not None}
        if not own or self.optimizer is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups: dict[tuple[str | None, bool], list] = {}
        for name, param in opt_model.named_parameters():
            if param.requires_grad:
                part = next((p for p in own if p in f".{name}"), None)
                groups.setdefault((part, name in decay), []).append(param)
        params = [{"params": ps, "weight_decay": self.args.weight_decay if decayed else 0.0,
                   **({"lr": own[part]} if part else {})}
                  for (part, decayed), ps in sorted(groups.items(), key=lambda kv: kv[0][0] is not None)]
        # the run's own lr first: the Trainer logs the first group's lr (trainer_state.json)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(params, **optimizer_kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_modality:
            return super()._get_train_sampler(train_dataset)
        return ModalitySampler(dataset.modality_lengths, self.args.train_batch_size * self.args.gradient_accumulation_steps,
                               self.args.world_size, self.args.seed)


LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@contextlib.contextmanager
def single_process_group(needed: bool) -> Iterator[None]:
    """A one-process group (gloo on the CPU) for DeepSpeed when no launcher made one (`stf-bench train --deepspeed zero2` run
    directly, on CPU included): DeepSpeed otherwise looks for MPI (mpi4py) to find its rank. The launcher's variables
    (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*) are set for the run and restored after it. The group is made once and
    kept for the life of the process: DeepSpeed caches its groups, and a second run in the same process reuses it."""
    import torch.distributed as dist

    if not needed or "WORLD_SIZE" in os.environ:  # no DeepSpeed, or a launcher's run (the Trainer makes its group)
        yield
        return
    saved = {k: os.environ.get(k) for k in LAUNCHER_ENV}
    with socket.socket() as s:  # a free local port for the rendezvous of a group of one
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        if not dist.is_initialized():  # nccl on a GPU (ZeRO's reduce-scatter), gloo on the CPU
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", rank=0, world_size=1)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def gathered(parameters) -> contextlib.AbstractContextManager:
    """Under ZeRO-3 each process holds a slice of each parameter (the module's tensors are empty): a context in which
    they are whole on every process, for saving (`mm_projector.bin`, `save_pretrained`). Every process must enter
    it. Without ZeRO-3 (no parameter has DeepSpeed's `ds_id`) it does nothing."""
    parameters = list(parameters)
    if not any(hasattr(p, "ds_id") for p in parameters):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(parameters, modifier_rank=None)


@contextlib.contextmanager
def partitioned_build(enabled: bool) -> Iterator[None]:
    """Under ZeRO-3 (`enabled`), a context in which a model is built partitioned, as LLaVA's `from_pretrained` under
    ZeRO-3 is: each module's parameters are split over the processes as soon as its `__init__` returns
    (`deepspeed.zero.Init`, with the config of the TrainingArguments made first: transformers'
    `integrations.deepspeed.deepspeed_config()`), so no process ever holds the whole model.

    The random weights are the ones a build outside it gives for the same seed (`compat.zero3_partitioned_build`
    holds the transformers internals this needs, and why). DeepSpeed's process group is set up first
    (`deepspeed.init_distributed()`, as the engine would later): zero.Init reads the process count from it before it
    would make it itself. Without `enabled` it does nothing."""
    if not enabled:
        yield
        return
    import deepspeed
    from transformers.integrations.deepspeed import deepspeed_config

    from stf_bench.compat import zero3_partitioned_build

    if not deepspeed.comm.is_initialized():  # what the engine would do later; zero.Init reads the process count from it
        deepspeed.init_distributed()
    with zero3_partitioned_build(deepspeed_config()):  # transformers' internals it relies on: stf_bench/compat.py
        yield


def numel(parameter: torch.Tensor) -> int:
    """Elements of a parameter, whole: under ZeRO-3 a partitioned one holds an empty tensor (`ds_numel` is its size)."""
    return getattr(parameter, "ds_numel", parameter.numel())
