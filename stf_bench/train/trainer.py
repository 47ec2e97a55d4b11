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

import torch
from torch import nn
from transformers import Trainer

from stf_bench.train.batches import ModalitySampler
from stf_bench.train.labels import IGNORE, IMAGE_INDEX


def set_trainable(model, stage: str) -> None:
    """Stage 1: projector only; stage 2: LLM (embeddings, blocks, lm_head) + projector; never the vision tower."""
    model.requires_grad_(stage == "finetune")
    model.model.vision_tower.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(True)


class TrainingForward(nn.Module):
    """The module the Trainer trains: the LLaVA model (`.llava`) with LLaVA's way of placing images in the
    sequence. Inputs are the collator's: ids with one -200 per image, labels, pixel_values of the image rows."""

    accepts_loss_kwargs = False  # the loss of each micro-batch is its own mean (LLaVA-1.5's averaging)

    def __init__(self, llava, pad_id: int, max_length: int):
        super().__init__()
        self.llava, self.pad_id, self.max_length = llava, pad_id, max_length

    def visual(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n_images, N, H): the vision tower without gradients, the projector with them."""
        inner = self.llava.model
        with torch.no_grad():
            tower_dtype = inner.vision_tower.get_input_embeddings().weight.dtype
            features = inner.vision_features(pixel_values.to(tower_dtype))
        return inner.multi_modal_projector(features)

    def splice(self, input_ids: torch.Tensor, labels: torch.Tensor, visual: torch.Tensor | None,
               image_rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs_embeds, attention_mask, labels): row `image_rows[k]`'s image (`visual[k]`) in place of its -200,
        padding stripped (every pad id, as LLaVA's attention mask does), rows cut at max_length and right-padded.
        A row keeps its own image even when an earlier row's -200 was cut off (LLaVA gives every row an image slot)."""
        embed = self.llava.get_input_embeddings()
        owner = {} if image_rows is None else {int(r): k for k, r in enumerate(image_rows.tolist())}
        rows, row_labels = [], []
        for b, (ids, lab) in enumerate(zip(input_ids, labels)):
            keep = ids != self.pad_id
            ids, lab = ids[keep], lab[keep]
            where = (ids == IMAGE_INDEX).nonzero().flatten().tolist()
            pieces, piece_labels, start = [], [], 0
            for stop in [*where, len(ids)]:
                pieces.append(embed(ids[start:stop]))
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
        visual = self.visual(pixel_values) if pixel_values is not None else None
        embeds, mask, labels = self.splice(input_ids, labels, visual, image_rows)
        out = self.llava(inputs_embeds=embeds, attention_mask=mask, labels=labels, use_cache=False)
        if not (labels[:, 1:] != IGNORE).any():  # nothing to learn (masked rows only): a zero loss, not 0/0 = NaN
            out.loss = out.logits.sum() * 0.0
        return out


class StageTrainer(Trainer):
    """transformers' Trainer with LLaVA's modality-grouped sampler (stage 2) and per-micro-batch loss averaging."""

    def __init__(self, *args, group_by_modality: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_by_modality = group_by_modality
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False  # each micro-batch's mean: the Trainer divides by the accumulation steps

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_modality:
            return super()._get_train_sampler(train_dataset)
        return ModalitySampler(dataset.modality_lengths, self.args.train_batch_size * self.args.gradient_accumulation_steps,
                               self.args.world_size, self.args.seed)
