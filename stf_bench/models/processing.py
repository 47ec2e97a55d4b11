"""Turn (images, prompts) into model inputs: square padding, CLIP preprocessing, and the ids LLaVA-1.5's official
code builds (`stf_bench.models.input_ids`), each image expanded to exactly as many `<image>` placeholders as the model
variant produces visual tokens (576 for LLaVA-1.5, 144 for STF k=2 E=1, ...)."""

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

from stf_bench.errors import StfBenchError
from stf_bench.models.conversation import ASSISTANT
from stf_bench.models.input_ids import TOKENIZER_MODEL, SlowLlamaTokenizer, expand_images, image_prompt_ids

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
    """Tokenizer + image processor for one model variant; `__call__` mirrors transformers' LlavaProcessor.

    Every prompt becomes ids through `prompt_ids` (LLaVA's `tokenizer_image_token`); each text chunk is tokenized
    by `slow_tokenizer` (transformers 4.37.2's slow LlamaTokenizer, rebuilt from the checkpoint's `tokenizer.model`)
    where the checkpoint has one, else by `tokenizer` (tokenizer.json, the tiny presets' byte-level tokenizer).
    `tokenizer` also decodes and pads."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, image_processor: CLIPImageProcessorPil,
                 num_visual_tokens: int, image_token: str = "<image>", pad_to_square: bool = True,
                 slow_tokenizer: SlowLlamaTokenizer | None = None):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.num_visual_tokens = num_visual_tokens
        self.image_token = image_token
        self.pad_to_square = pad_to_square
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        self.slow_tokenizer = slow_tokenizer

    def preprocess_images(self, images: list[Image.Image]) -> torch.Tensor:
        """PIL images -> pixel_values (B, 3, S, S), padded to square with the CLIP mean colour first if configured."""
        images = [im.convert("RGB") for im in images]
        if self.pad_to_square:
            mean = tuple(int(255 * m) for m in self.image_processor.image_mean)
            images = [expand2square(im, mean) for im in images]
        return clip_pixels(self.image_processor, images)

    def encode_chunk(self, text: str) -> list[int]:
        """`tokenizer(text).input_ids` of the tokenizer LLaVA's official code uses (BOS included): one piece of a
        prompt between images."""
        if self.slow_tokenizer is not None:
            return self.slow_tokenizer(text)
        return list(self.tokenizer(text)["input_ids"])

    def prompt_ids(self, prompt: str) -> list[int]:
        """The official ids of `prompt`, each `<image>` one `IMAGE_INDEX` (-200) position (`image_prompt_ids`):
        what training builds labels on."""
        return image_prompt_ids(prompt, self.encode_chunk, self._bos_id(), self.image_token)

    def token_ids(self, prompts: list[str]) -> list[list[int]]:
        """Unpadded ids the model takes: `prompt_ids`, each image expanded to `num_visual_tokens` placeholders."""
        return [expand_images(self.prompt_ids(p), self.image_token_id, self.num_visual_tokens) for p in prompts]

    def text_inputs(self, prompts: list[str], return_tensors: str | None = "pt") -> dict:
        """input_ids and attention_mask of `prompts` (`token_ids`), padded to the longest on the tokenizer's
        padding side with its pad id."""
        return self._padded(self.token_ids(prompts), return_tensors)

    def question_inputs(self, prompts: list[str], images: list[Image.Image], method) -> dict:
        """For a `method` that `reads_question`: `question_ids` (B, T) padded with -1, each row the ids of the
        method's `question_words` of the prompt's question (its text after the last image tag, before the assistant's
        turn), each word tokenized alone without BOS; and `image_sizes` (B, 2), the original width and height (what
        the padding geometry is computed from), one row per image. {} for any other method or without images."""
        if method is None or not getattr(method, "reads_question", False) or not images:
            return {}
        if any(p.count(self.image_token) > 1 for p in prompts):
            raise StfBenchError(f"{method.name} reads one question per image; give one image per prompt")
        prompts = [p for p in prompts if self.image_token in p]  # images match the prompts that hold a tag
        rows = []
        for prompt in prompts:
            question = prompt.rsplit(self.image_token, 1)[-1].lstrip("\n")
            question = question.rsplit(f" {ASSISTANT}", 1)[0] if question.endswith(ASSISTANT) else question
            ids = []
            for word in type(method).question_words(question):
                chunk = self.encode_chunk(word)
                ids.extend(chunk[1:] if chunk and chunk[0] == self._bos_id() else chunk)
            rows.append(ids)
        width = max(1, max(len(r) for r in rows))
        return {"question_ids": torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long),
                "image_sizes": torch.tensor([list(im.size) for im in images], dtype=torch.long)}

    def _bos_id(self) -> int | None:
        """BOS of the tokenizer that `encode_chunk` uses."""
        return self.slow_tokenizer.bos_token_id if self.slow_tokenizer is not None else self.tokenizer.bos_token_id

    def _padded(self, rows: list[list[int]], return_tensors: str | None) -> dict:
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        pad = 0 if pad is None else pad
        left = self.tokenizer.padding_side == "left"
        ids, mask = [], []
        for r in rows:
            fill = width - len(r)
            ids.append([pad] * fill + r if left else r + [pad] * fill)
            mask.append([0] * fill + [1] * len(r) if left else [1] * len(r) + [0] * fill)
        if return_tensors is None:
            return {"input_ids": ids, "attention_mask": mask}
        if return_tensors != "pt":
            raise ValueError(f"return_tensors={return_tensors!r}: only 'pt' or None")
        return {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": torch.tensor(mask, dtype=torch.long)}

    def __call__(self, images: Image.Image | list[Image.Image] | None = None, text: str | list[str] | None = None,
                 return_tensors: str | None = "pt", padding: bool | str = True) -> BatchFeature:
        """Tokenise prompts (`text_inputs`: official ids, each `<image>` expanded, padded to the longest) and
        preprocess images; images match `<image>`s in order."""
        data: dict = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            n_tags = sum(t.count(self.image_token) for t in texts)
            n_images = 0 if images is None else (1 if isinstance(images, Image.Image) else len(images))
            if n_tags != n_images:
                raise ValueError(f"the prompts hold {n_tags} '{self.image_token}' tags for {n_images} images; "
                                 f"put one '{self.image_token}' in the prompt per image")
            rows = self.token_ids(texts)
            if not padding and len({len(r) for r in rows}) > 1:
                raise ValueError("prompts of different lengths need padding=True")
            data.update(self._padded(rows, return_tensors))
        if images is not None:
            data["pixel_values"] = self.preprocess_images([images] if isinstance(images, Image.Image) else images)
        return BatchFeature(data)

    def batch_decode(self, *args, **kwargs) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write tokenizer files, preprocessor_config.json and our own settings; with a slow tokenizer, its
        `tokenizer.model` and settings too, so that the saved checkpoint builds the same ids."""
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory)
        self.image_processor.save_pretrained(directory)
        settings = {"num_visual_tokens": self.num_visual_tokens, "image_token": self.image_token,
                    "pad_to_square": self.pad_to_square}
        if self.slow_tokenizer is not None:
            (directory / TOKENIZER_MODEL).write_bytes(self.slow_tokenizer.model)
            settings["slow_tokenizer"] = self.slow_tokenizer.settings()
        (directory / PROCESSOR_FILE).write_text(json.dumps(settings, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> StfLlavaProcessor:
        """Inverse of `save_pretrained`."""
        directory = Path(directory)
        settings = json.loads((directory / PROCESSOR_FILE).read_text())
        tokenizer = AutoTokenizer.from_pretrained(directory)
        image_processor = CLIPImageProcessorPil.from_pretrained(directory)
        slow = settings.pop("slow_tokenizer", None)
        if slow is not None and (directory / TOKENIZER_MODEL).is_file():
            slow = SlowLlamaTokenizer.from_settings((directory / TOKENIZER_MODEL).read_bytes(), slow)
        else:
            slow = SlowLlamaTokenizer.from_directory(directory)
        return cls(tokenizer, image_processor, **settings, slow_tokenizer=slow)
