"""Rows -> training batches as LLaVA's `LazySupervisedDataset`, `DataCollatorForSupervisedDataset` and
`LengthGroupedSampler(group_by_modality=True)` make them (haotian-liu/LLaVA @ c121f04, `llava/train/train.py`,
`llava/train/llava_trainer.py`).

The collator pads ids with the pad id (LLaVA: `unk`, 0) and labels with -100 and cuts both to model_max_length,
before image expansion; images are stacked for the rows that have one. The visual tokens are spliced in by
stf_bench.train.trainer, as LLaVA's `prepare_inputs_labels_for_multimodal` does.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from stf_bench.train.labels import IGNORE, Example


class LlavaRows(torch.utils.data.Dataset):
    """The labelled rows and their images; an item is `{input_ids, labels, pixel_values (3, S, S) or None}`."""

    def __init__(self, rows: list[dict], examples: list[Example], image_folder: Path | None, processor,
                 pad_to_square: bool):
        self.rows, self.examples, self.image_folder = rows, examples, image_folder
        self.processor, self.pad_to_square = processor, pad_to_square

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def modality_lengths(self) -> list[int]:
        """LLaVA's `modality_lengths`: words of the conversation, negative for text-only rows."""
        out = []
        for row in self.rows:
            n = sum(len(turn["value"].split()) for turn in row["conversations"])
            out.append(n if "image" in row else -n)
        return out

    def image(self, i: int) -> torch.Tensor:
        """pixel_values (3, S, S) of row i: padded to a square of the CLIP mean first when `pad_to_square`."""
        with Image.open(self.image_folder / self.rows[i]["image"]) as img:
            rgb = img.convert("RGB")
        saved, self.processor.pad_to_square = self.processor.pad_to_square, self.pad_to_square
        try:
            return self.processor.preprocess_images([rgb])[0]
        finally:
            self.processor.pad_to_square = saved

    def __getitem__(self, i: int) -> dict:
        ex = self.examples[i]
        return {"input_ids": torch.tensor(ex.input_ids, dtype=torch.long),
                "labels": torch.tensor(ex.labels, dtype=torch.long),
                "pixel_values": self.image(i) if "image" in self.rows[i] else None}


class Collator:
    """Pad (ids with `pad_id`, labels with -100), cut to `max_length`, stack the images of the rows that have one
    (`image_rows`: their rows, so that a row whose image index was cut off does not shift the others' images)."""

    def __init__(self, pad_id: int, max_length: int):
        self.pad_id, self.max_length = pad_id, max_length

    def __call__(self, items: list[dict]) -> dict:
        ids = torch.nn.utils.rnn.pad_sequence([it["input_ids"] for it in items], batch_first=True,
                                              padding_value=self.pad_id)[:, :self.max_length]
        labels = torch.nn.utils.rnn.pad_sequence([it["labels"] for it in items], batch_first=True,
                                                 padding_value=IGNORE)[:, :self.max_length]
        batch = {"input_ids": ids, "labels": labels}
        with_image = [b for b, it in enumerate(items) if it["pixel_values"] is not None]
        if with_image:
            batch["pixel_values"] = torch.stack([items[b]["pixel_values"] for b in with_image])
            batch["image_rows"] = torch.tensor(with_image, dtype=torch.long)  # which row each image belongs to
        return batch


def _even_chunks(indices: list[int], lengths: list[int], n: int) -> list[list[int]]:
    """Split `indices` into n chunks of similar total length (each index to the shortest chunk not yet full)."""
    if len(indices) % n:
        return [indices[i::n] for i in range(n)]
    size = len(indices) // n
    chunks: list[list[int]] = [[] for _ in range(n)]
    totals = [0.0] * n
    for index in indices:
        k = totals.index(min(totals))
        chunks[k].append(index)
        totals[k] = float("inf") if len(chunks[k]) == size else totals[k] + lengths[index]
    return chunks


def length_grouped(lengths: list[int], batch_size: int, world: int, generator=None) -> list[int]:
    """A random order in megabatches of `batch_size * world` rows, each sorted longest first and split evenly."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    mega = batch_size * world
    out = []
    for start in range(0, len(order), mega):
        block = sorted(order[start:start + mega], key=lambda i: lengths[i], reverse=True)
        out += [i for chunk in _even_chunks(block, lengths, world) for i in chunk]
    return out


def modality_grouped(lengths: list[int], batch_size: int, world: int, generator=None) -> list[int]:
    """LLaVA's `group_by_modality_length` order: megabatches of image rows (length > 0) and of text-only rows
    (< 0) shuffled together; the two incomplete last megabatches go, merged, at the end. (LLaVA shuffles within
    each modality with torch's global generator; here every draw comes from `generator`, so the order is a
    function of the seed alone.)"""
    if all(n > 0 for n in lengths) or all(n < 0 for n in lengths):
        return length_grouped([abs(n) for n in lengths], batch_size, world, generator)
    image = [i for i, n in enumerate(lengths) if n > 0]
    text = [i for i, n in enumerate(lengths) if n < 0]
    mega = batch_size * world
    blocks = []
    for group in (image, text):
        ordered = [group[i] for i in length_grouped([abs(lengths[i]) for i in group], batch_size, world, generator)]
        blocks.append([ordered[s:s + mega] for s in range(0, len(ordered), mega)])
    tail = blocks[0][-1] + blocks[1][-1]
    full = blocks[0][:-1] + blocks[1][:-1]
    full = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    if tail:
        full.append(sorted(tail))
    return [i for block in full for i in block]


class ModalitySampler(torch.utils.data.Sampler):
    """The `modality_grouped` order, drawn from a generator seeded with the run's seed (so a resumed run sees the
    same order)."""

    def __init__(self, lengths: list[int], batch_size: int, world: int, seed: int):
        self.lengths, self.batch_size, self.world, self.seed = lengths, batch_size, world, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(modality_grouped(self.lengths, self.batch_size, self.world, generator))
