"""The collator (pad, cut, images of the image rows) and LLaVA's modality-grouped order."""

from __future__ import annotations

import torch

from stf_bench.train.batches import Collator, modality_grouped
from stf_bench.train.labels import IGNORE


def test_collator_pads_with_the_pad_id_and_minus_100_cuts_and_stacks_only_real_images():
    image = torch.ones(3, 4, 4)
    items = [{"input_ids": torch.tensor([1, 5, 6, 7]), "labels": torch.tensor([IGNORE, 5, 6, 7]), "pixel_values": image},
             {"input_ids": torch.tensor([1, 8]), "labels": torch.tensor([IGNORE, 8]), "pixel_values": None}]
    batch = Collator(pad_id=0, max_length=3)(items)
    assert batch["input_ids"].tolist() == [[1, 5, 6], [1, 8, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 5, 6], [IGNORE, 8, IGNORE]]
    assert batch["pixel_values"].shape == (1, 3, 4, 4) and batch["image_rows"].tolist() == [0]
    assert Collator(0, 8)([items[1], items[0]])["image_rows"].tolist() == [1]
    assert "pixel_values" not in Collator(0, 8)([items[1]])


def test_modality_grouped_batches_hold_one_modality_except_the_last():
    lengths = [5 + i for i in range(22)] + [-(3 + i) for i in range(11)]  # 22 image rows, 11 text-only rows
    order = modality_grouped(lengths, batch_size=4, world=2, generator=torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(len(lengths)))
    blocks = [order[i:i + 8] for i in range(0, len(order), 8)]
    full = len(lengths) // 8 - 1  # the two incomplete megabatches go, merged, at the end
    assert all(len({lengths[i] > 0 for i in block}) == 1 for block in blocks[:full])
    again = modality_grouped(lengths, batch_size=4, world=2, generator=torch.Generator().manual_seed(0))
    assert again == order  # a function of the seed: a resumed run sees the same order
