"""Turn (images, prompts) into model inputs: square padding, CLIP preprocessing, and exactly as many `<image>`
placeholders as the model variant produces visual tokens (576 for LLaVA-1.5, 144 for STF k=2 E=1, ...)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase
from transformers.models.clip import CLIPImageProcessorPil

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PROCESSOR_FILE = "stf_processor.json"


def expand2square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Pad to a square canvas of the background colour, image centred (LLaVA-1.5's `image_aspect_ratio: pad`)."""
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    canvas = Image.new(image.mode, (side, side), background)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


def clip_image_processor(image_size: int) -> CLIPImageProcessorPil:
    """CLIP preprocessing at `image_size` px (resize shortest edge, centre crop, CLIP mean/std); no torchvision."""
    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD),
    )


def level_table(image_processor: CLIPImageProcessorPil) -> np.ndarray | None:
    """(3, 256) float32: what the processor's own rescale + normalize turn each 8-bit level of each channel into,
    or None where it does not do both on 3 channels. Rescale and normalize act on each value alone, so looking a
    pixel up here gives exactly the float the processor computes, at a fifth of the cost of its float64 passes."""
    ip = image_processor
    if not (ip.do_rescale and ip.do_normalize) or len(np.atleast_1d(ip.image_mean)) != 3:
        return None
    levels = np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 1, 256)).copy()  # (channels, 1, levels): CHW
    return ip.normalize(ip.rescale(levels, ip.rescale_factor), ip.image_mean, ip.image_std)[:, 0, :]


@cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="stf-pixels")


def _in_threads(work, items: list, workers: int) -> list:
    """work(chunk) over `workers` contiguous chunks of items, each in a pool thread (the caller waits), the results
    concatenated in order. PIL's resize and numpy's take release the GIL, so images are prepared in parallel."""
    workers = max(1, min(workers, len(items)))
    if workers == 1:
        return work(items)
    bounds = [len(items) * w // workers for w in range(workers + 1)]
    chunks = [items[a:b] for a, b in zip(bounds, bounds[1:])]
    return [x for part in _pool(workers).map(work, chunks) for x in part]


def clip_pixels(image_processor: CLIPImageProcessorPil, images: list[Image.Image],
                workers: int | None = None) -> torch.Tensor:
    """pixel_values (B, 3, S, S) of RGB images: the processor resizes and crops the 8-bit pixels, then
    `level_table` maps them to floats; identical to `image_processor(images)["pixel_values"]`. Images are
    prepared in `workers` threads (default: torch's CPU thread count); each image alone, so the result does not
    depend on how they are split."""
    table = level_table(image_processor)
    if table is None:
        return image_processor(images, return_tensors="pt")["pixel_values"]
    workers = torch.get_num_threads() if workers is None else workers
    crops = _in_threads(lambda part: list(image_processor(part, do_rescale=False, do_normalize=False)["pixel_values"]),
                        images, workers)  # uint8 (3, S, S) each
    if any(c.dtype != np.uint8 or c.shape[0] != 3 or c.shape != crops[0].shape for c in crops):
        # not 8-bit RGB crops of one size: the processor's own float path (and its own error for mixed sizes)
        return image_processor(images, return_tensors="pt")["pixel_values"]
    out = np.empty((len(crops), *crops[0].shape), dtype=np.float32)

    def lookup(indices: list[int]) -> list[int]:
        for i in indices:
            for c in range(3):
                np.take(table[c], crops[i][c], out=out[i, c])
        return indices

    _in_threads(lookup, list(range(len(crops))), workers)
    return torch.from_numpy(out)


class StfLlavaProcessor:
    """Tokenizer + image processor for one model variant; `__call__` mirrors transformers' LlavaProcessor."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, image_processor: CLIPImageProcessorPil,
                 num_visual_tokens: int, image_token: str = "<image>", pad_to_square: bool = True):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.num_visual_tokens = num_visual_tokens
        self.image_token = image_token
        self.pad_to_square = pad_to_square
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)

    def preprocess_images(self, images: list[Image.Image]) -> torch.Tensor:
        """PIL images -> pixel_values (B, 3, S, S), padded to square with the CLIP mean colour first if configured."""
        images = [im.convert("RGB") for im in images]
        if self.pad_to_square:
            mean = tuple(int(255 * m) for m in self.image_processor.image_mean)
            images = [expand2square(im, mean) for im in images]
        return clip_pixels(self.image_processor, images)

    def expand_prompt(self, text: str) -> str:
        """Replace each `<image>` with `num_visual_tokens` placeholders."""
        return text.replace(self.image_token, self.image_token * self.num_visual_tokens)

    def token_ids(self, prompts: list[str]) -> list[list[int]]:
        """Unpadded token ids of `prompts`, each `<image>` expanded: the ids `__call__` makes (special tokens split
        the text the same way), without tokenising hundreds of placeholder strings per prompt."""
        n = self.num_visual_tokens
        return [[t for i in ids for t in ([i] * n if i == self.image_token_id else [i])]
                for ids in self.tokenizer(prompts)["input_ids"]]

    def __call__(self, images: Image.Image | list[Image.Image] | None = None, text: str | list[str] | None = None,
                 return_tensors: str = "pt", padding: bool | str = True, **tokenizer_kwargs) -> BatchFeature:
        """Tokenise prompts (each `<image>` expanded) and preprocess images; images match `<image>`s in order."""
        data: dict = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            n_tags = sum(t.count(self.image_token) for t in texts)
            n_images = 0 if images is None else (1 if isinstance(images, Image.Image) else len(images))
            if n_tags != n_images:
                raise ValueError(f"the prompts hold {n_tags} '{self.image_token}' tags for {n_images} images; "
                                 f"put one '{self.image_token}' in the prompt per image")
            data.update(self.tokenizer([self.expand_prompt(t) for t in texts], return_tensors=return_tensors,
                                       padding=padding, **tokenizer_kwargs))
        if images is not None:
            data["pixel_values"] = self.preprocess_images([images] if isinstance(images, Image.Image) else images)
        return BatchFeature(data)

    def batch_decode(self, *args, **kwargs) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write tokenizer files, preprocessor_config.json and our own settings."""
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory)
        self.image_processor.save_pretrained(directory)
        settings = {"num_visual_tokens": self.num_visual_tokens, "image_token": self.image_token,
                    "pad_to_square": self.pad_to_square}
        (directory / PROCESSOR_FILE).write_text(json.dumps(settings, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> StfLlavaProcessor:
        """Inverse of `save_pretrained`."""
        directory = Path(directory)
        settings = json.loads((directory / PROCESSOR_FILE).read_text())
        tokenizer = AutoTokenizer.from_pretrained(directory)
        image_processor = CLIPImageProcessorPil.from_pretrained(directory)
        return cls(tokenizer, image_processor, **settings)
