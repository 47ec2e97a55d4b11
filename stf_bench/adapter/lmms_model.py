"""The lmms-eval simple-mode model for the whole stf-bench family (`--model stf_bench --model_args preset=...`).

What the built-in `llava`/`llava_hf` adapters get wrong and this one does not: task and split are looked up per
request (one call carries the requests of every task), batches are real (any batch size; greedy decoding runs
through `stf_bench.models.generation.greedy_generate`, which prefills each image's prompt head once per batch and
drops finished rows; sampling goes through `generate()` with left padding), every `until` string and each
request's own `max_new_tokens` are honoured (`stopping`), `loglikelihood` returns the summed
log-probability of the continuation, and `clean()` leaves the model usable for a second evaluation.
Answers can be cached per request (`stf_bench.adapter.resume`) so that an interrupted run resumes where it died.
Visual tokens are computed once per distinct image (`stf_bench.adapter.visual_cache`, MiB of LRU, 0 = off).
"""

from __future__ import annotations

import functools
import gc
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.utils import Collator
from loguru import logger
from PIL import Image
from tqdm import tqdm
from transformers import StoppingCriteriaList

from stf_bench.adapter.identity import RunState, model_identity, weights_fingerprint
from stf_bench.adapter.progress import RunBar
from stf_bench.adapter.resume import AnswerCache, request_key
from stf_bench.adapter.stopping import GreedyStops, RowStops, cut_at_stop, max_new_tokens, until_strings
from stf_bench.adapter.visual_cache import VisualTokenCache, image_key, visual_cache_bytes
from stf_bench.args import parse_bool
from stf_bench.devices import check_fits, resolve_device, weights_bytes
from stf_bench.errors import StfBenchError
from stf_bench.methods import FastPaths
from stf_bench.models import generation
from stf_bench.models.conversation import TEMPLATE_ID, vicuna_v1
from stf_bench.models.default_model import DEFAULT_MODEL
from stf_bench.models.generation import eos_ids, greedy_generate, heads_to_prefill, plain_greedy, share_heads
from stf_bench.models.loading import parse_dtype

SAMPLING_KEYS = ("do_sample", "temperature", "top_p", "top_k", "num_beams")


class SkippedRow(Exception):
    """A row that cannot be evaluated (missing or corrupt image): logged, counted, answered with ''."""


@dataclass
class _Loaded:
    """Holds model and processor outside `lmms.clean()`'s reach (it deletes every nn.Module attribute)."""

    model: Any
    processor: Any


@dataclass
class _Job:
    """One pending request, ready to batch."""

    index: int
    key: str
    ctx: str
    doc_fn: Callable[[], dict]
    doc_to_visual: Callable
    task: str
    doc_id: int
    length: int
    gen: dict = field(default_factory=dict)
    continuation: Any = None


class StfBenchLmms(RunState, lmms):
    """lmms-eval model for every stf-bench preset or checkpoint; vicuna_v1 prompts, greedy by default."""

    is_simple = True

    def __init__(self, preset: str | None = None, pretrained: str | None = None, device: str | None = None,
                 dtype: str | None = None, batch_size: int | str = 1, max_batch_size: int | None = None,
                 random_weights: bool = False, cache_dir: str | None = None,
                 visual_cache: float | str | None = None, fast_paths: bool | str = True, **overrides: Any) -> None:
        super().__init__()
        from accelerate import Accelerator

        from stf_bench import load_model
        from stf_bench.compat import drop_lmms_filelock_patch

        drop_lmms_filelock_patch()  # lmms-eval's own CLI calls its filelock patch after building this model

        self.name = str(preset or pretrained or DEFAULT_MODEL)
        try:
            self.batch_size_per_gpu = max(1, int(batch_size))
        except (TypeError, ValueError):
            raise StfBenchError(f"batch size must be a positive integer, not {batch_size!r}") from None
        on_cpu = str(device).startswith("cpu") if device else not torch.cuda.is_available()
        self.accelerator = Accelerator(cpu=on_cpu)  # cpu=True: accelerate only sees CPU ranks (gloo) when told
        if self.accelerator.num_processes > 1:
            self._rank = self.accelerator.process_index
            self._world_size = self.accelerator.num_processes
            if not on_cpu:
                device = f"cuda:{self.accelerator.local_process_index}"
        self._device = resolve_device(device)  # cpu or cuda[:N] that torch can see, else one clear error
        torch_dtype = parse_dtype(dtype, self._device)
        load_args = dict(random_weights=bool(random_weights), dtype=torch_dtype, **overrides)
        n_bytes = weights_bytes(self.name, load_args)
        check_fits(n_bytes, self._device, self.name)
        try:
            model, processor = load_model(self.name, device=str(self._device), **load_args)
        except torch.OutOfMemoryError as exc:
            raise StfBenchError(f"model {self.name!r} does not fit on {self._device}: {exc}; use --dtype float16, "
                                f"a smaller preset or a bigger device") from None
        except RuntimeError as exc:
            if "size mismatch" in str(exc):
                raise StfBenchError(f"checkpoint {self.name!r} does not fit the model it declares: {exc}") from None
            raise
        model.eval()
        processor.tokenizer.padding_side = "left"
        self._loaded = _Loaded(model, processor)
        self.weights = weights_fingerprint(model)
        self.identity = model_identity(self.name, model, random_weights, overrides, self.weights)
        self.answer_cache: AnswerCache | None = AnswerCache(cache_dir, self._rank) if cache_dir else None
        self.skipped: dict[tuple[str, int], str] = {}
        self._stops = GreedyStops(processor.tokenizer)  # keeps each token's text alone, for the stop check
        self._head_cache: dict = {}  # the last greedy batch's last head, prefilled (`greedy_generate`)
        self.show_progress = True
        # What the model's methods declare decides the fast paths (`FastPaths`); fast_paths=false turns them all off
        self.fast_paths = model.config.fast_paths if _truthy(fast_paths) else FastPaths(False, False, False, False)
        # An in-LLM method that declares `prunes_kv_cache` prefills once and decodes from its pruned cache (its
        # algorithm, not a fast path: fast_paths=false keeps it); plain `generate()` recomputes instead
        self.pruned_cache = any(getattr(m, "prunes_kv_cache", False) for m in model.config.methods())
        n_cache = visual_cache_bytes(visual_cache, self._device) if self.fast_paths.visual_cache else 0
        self.visual_cache: VisualTokenCache | None = VisualTokenCache(n_cache) if n_cache else None

    # ---- properties lmms-eval and users read ----
    @property
    def model(self):
        return self._loaded.model

    @property
    def processor(self):
        return self._loaded.processor

    @property
    def tokenizer(self):
        return self._loaded.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    def method_summary(self) -> dict | None:
        """The training-free method's summary of the run (e.g. PruMerge+'s adaptive token counts), if any."""
        method = getattr(self.model.model, "token_method", None)
        return method.run_summary() if method is not None else None

    def clean(self) -> None:
        """Free cached memory (visual tokens included) but keep the model: lmms-eval calls this after every evaluation."""
        if self.visual_cache is not None:
            self.visual_cache.clear()
        self._head_cache.clear()
        gc.collect()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    # ---- generate_until ----
    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Batched greedy generation; each request keeps its own stop strings and max_new_tokens."""
        results: list[Any] = [None] * len(requests)
        jobs = []
        for i, req in enumerate(requests):
            ctx, gen_kwargs, doc_to_visual, doc_id, task, split = req.args
            gen = dict(gen_kwargs or {})
            key = request_key(self.identity, "generate_until", task, split, doc_id, ctx, gen, TEMPLATE_ID)
            cached = self._cached(key)
            if cached is not None:
                results[i] = cached
                continue
            jobs.append(_Job(i, key, ctx, self._doc_fn(task, split, doc_id), doc_to_visual, task, doc_id,
                             0 if self._greedy_path(gen) else self._length(ctx), gen))  # greedy: request order
        return self._execute(results, jobs, self._generate_batch, True, "stf-bench generate", "")

    # ---- loglikelihood ----
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """(summed log-prob of the continuation given image + context, whether greedy decoding yields it)."""
        results: list[Any] = [None] * len(requests)
        jobs = []
        for i, req in enumerate(requests):
            ctx, target, doc_to_visual, doc_id, task, split = req.args
            doc_fn = self._doc_fn(task, split, doc_id)
            continuation = target if isinstance(target, str) else target(doc_fn())
            key = request_key(self.identity, "loglikelihood", task, split, doc_id, ctx, continuation, TEMPLATE_ID)
            cached = self._cached(key)
            if cached is not None:
                results[i] = (float(cached[0]), bool(cached[1]))
                continue
            jobs.append(_Job(i, key, ctx, doc_fn, doc_to_visual, task, doc_id,
                             self._length(ctx + continuation), continuation=continuation))
        return self._execute(results, jobs, self._loglikelihood_batch, False, "stf-bench loglikelihood",
                             (-math.inf, False))

    # ---- multi-round ----
    def generate_until_multi_round(self, requests: list[Instance]) -> list[list[str]]:
        """Rounds per request until the task's doc_to_text signals the end; returns every round's answer."""
        results = []
        for req in RunBar(requests, desc="stf-bench multi-round", disable=self.rank != 0 or not self.show_progress):
            ctx, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = req.args
            doc_fn = self._doc_fn(task, split, doc_id)
            gen = dict(gen_kwargs or {})
            outputs: list[str] = []
            info = None
            visual_fn = doc_to_visual
            for round_idx in range(int(gen.pop("max_rounds", 16))):
                if round_idx:
                    visuals, ctx, terminal, outputs, info = doc_to_text(
                        doc_fn(), previous_output=outputs, round_idx=round_idx, previous_round_info=info)
                    outputs = list(outputs)
                    if terminal:
                        break
                    if visuals is not None:
                        visual_fn = functools.partial(_fixed_visuals, visuals)
                job = _Job(0, "", ctx, doc_fn, visual_fn, task, doc_id, 0, gen)
                answer = self._generate_batch([job])[0]
                outputs.append(answer if answer is not None else "")
            results.append(outputs)
        return results

    # ---- batching and resume ----
    def _execute(self, results: list, jobs: list[_Job], run_batch: Callable[[list[_Job]], list],
                 by_sampling: bool, desc: str, skipped_value: Any) -> list:
        """Run the uncached jobs batch by batch (lmms-eval's `Collator`: grouped by sampling settings when
        `by_sampling`, in `_batch_order`); each batch's answers are cached (fsynced) before the next starts.
        Not `Collator.get_original`: answers land at `results[job.index]` batch by batch, among the cached ones."""
        collator = Collator(jobs, _batch_order, _sampling_settings, grouping=by_sampling)
        with self._progress(len(results), len(results) - len(jobs), desc) as bar:
            for batch in collator.get_batched(n=self.batch_size):
                rows = []
                for job, value in zip(batch, run_batch(batch)):
                    results[job.index] = skipped_value if value is None else value
                    if value is not None:  # a skipped row is never cached: it is re-examined on resume
                        rows.append((job.key, value, {"task": job.task, "doc_id": job.doc_id}))
                if self.answer_cache is not None:
                    self.answer_cache.put_many(rows)
                bar.update(len(batch))
        return results

    def _progress(self, total: int, done: int, desc: str) -> tqdm:
        return RunBar(total=total, initial=done, desc=desc, disable=(self.rank != 0 or not self.show_progress),
                      dynamic_ncols=True, file=None)

    def _cached(self, key: str) -> Any:
        return None if self.answer_cache is None else self.answer_cache.get(key)

    # ---- one generate batch ----
    def _generate_batch(self, batch: list[_Job]) -> list[str | None]:
        """Generate for one batch; a skipped row gets None (answered '' and never cached)."""
        answers: list[str | None] = [None] * len(batch)
        ready, prompts, images = self._prepare(batch)
        if not ready:
            return answers
        gens = [batch[p].gen for p in ready]
        until = [until_strings(g) for g in gens]
        max_new = [max_new_tokens(g) for g in gens]
        tok = self.tokenizer
        sampling = _sampling_kwargs(gens[0])
        if self._greedy_path(gens[0]):
            new_ids = self._greedy(prompts, images, max_new, until)
        elif self.pruned_cache and self.fast_paths.pruned_decode and self._plain_greedy(gens[0]):
            new_ids = generation.pruned_greedy_generate(self.model, self._inputs(prompts, images), max_new,
                                                        eos_token_ids=eos_ids(self.model, tok),
                                                        stop=self._stops.check(until))
        else:
            inputs = self._inputs(prompts, images)
            prompt_len = inputs["input_ids"].shape[1]
            if self.pruned_cache and sampling["num_beams"] == 1:  # beams would reorder the cache's rows
                sampling["use_cache"] = True  # each step writes its token in place (a pruned layer keeps its own length)
                sampling["past_key_values"] = generation.reserved_cache(self.model, max(max_new))
            with torch.inference_mode():
                out = self.model.generate(
                    **inputs, max_new_tokens=max(max_new), **sampling,
                    stopping_criteria=StoppingCriteriaList([RowStops(tok, prompt_len, max_new, until)]),
                    pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                )
            new_ids = [out[row, prompt_len:prompt_len + max_new[row]] for row in range(len(ready))]
        for row, pos in enumerate(ready):
            text = tok.decode(new_ids[row], skip_special_tokens=True)
            answers[pos] = cut_at_stop(text, until[row]).strip()
        return answers

    def _greedy_path(self, gen: dict) -> bool:
        """Whether a generate request goes through `greedy_generate` (greedy, nothing else in the generation config)."""
        return self.fast_paths.shared_prefill and self._plain_greedy(gen)

    def _plain_greedy(self, gen: dict) -> bool:
        """Whether a generate request decodes by argmax alone (no sampling, one beam, nothing else in the
        generation config): what our own loops (`greedy_generate`, `pruned_greedy_generate`) compute."""
        sampling = _sampling_kwargs(gen)
        return not sampling["do_sample"] and sampling["num_beams"] == 1 and plain_greedy(self.model.generation_config)

    def _greedy(self, prompts: list[str], images: list[Image.Image], max_new: list[int], until: list[list[str]]
                ) -> list[list[int]]:
        """Greedy answers through `greedy_generate`: rows about the same image share the prefill of its prompt head."""
        self._check_tags(prompts, images)
        proc, tok = self.processor, self.tokenizer
        keys = self._image_keys(images)
        row_keys, row_images, start = [], [], 0
        for prompt in prompts:
            end = start + prompt.count(proc.image_token)
            row_keys.append(keys[start:end])
            row_images.append(images[start:end])
            start = end
        heads, tails, head_of_row, first_rows = share_heads(proc.token_ids(prompts), row_keys, proc.image_token_id)
        # A head is named by its ids and images; one the previous batch ended on is not prefilled again.
        names = [(tuple(head), tuple(row_keys[row])) for head, row in zip(heads, first_rows)]
        todo = [first_rows[h] for h in heads_to_prefill(names, self._head_cache)]
        todo_images = [im for row in todo for im in row_images[row]]  # the images of the heads to prefill, in order
        todo_image_keys = [k for row in todo for k in row_keys[row]]
        return greedy_generate(self.model, heads, tails, head_of_row, max_new, eos_token_ids=eos_ids(self.model, tok),
                               stop=self._stops.check(until), pad_token_id=tok.pad_token_id or 0, head_keys=names,
                               head_cache=self._head_cache, **self._image_inputs(todo_images, todo_image_keys))

    # ---- one loglikelihood batch ----
    def _loglikelihood_batch(self, batch: list[_Job]) -> list[tuple[float, bool] | None]:
        scores: list[tuple[float, bool] | None] = [None] * len(batch)
        ready, prompts, images = self._prepare(batch)
        if not ready:
            return scores
        texts = [prompt + batch[pos].continuation for pos, prompt in zip(ready, prompts)]
        n_cont = [self._continuation_length(prompt, batch[pos].continuation) for pos, prompt in zip(ready, prompts)]
        inputs = self._inputs(texts, images)
        keep = max(n_cont) + 1
        with torch.inference_mode():
            logits = self.model(**inputs, logits_to_keep=keep).logits[:, -keep:].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        ids = inputs["input_ids"]
        for row, pos in enumerate(ready):
            n = n_cont[row]
            if n == 0:
                scores[pos] = (0.0, True)
                continue
            target = ids[row, -n:]
            step = logprobs[row, keep - n - 1:keep - 1]
            total = step.gather(-1, target[:, None]).sum().item()
            greedy = bool((step.argmax(-1) == target).all().item())
            scores[pos] = (float(total), greedy)
        return scores

    def _continuation_length(self, prompt: str, continuation: str) -> int:
        """Tokens of `continuation` after `prompt`, the whole string tokenized as the model gets it (`prompt_ids`;
        robust at the word boundary)."""
        ids_prompt = self.processor.prompt_ids(prompt)
        ids_full = self.processor.prompt_ids(prompt + continuation)
        common = 0
        for a, b in zip(ids_prompt, ids_full):
            if a != b:
                break
            common += 1
        return len(ids_full) - common

    # ---- rows: docs, images, prompts ----
    def _doc_fn(self, task: str, split: str, doc_id: int) -> Callable[[], dict]:
        """Look the doc up per request (never per batch): one call mixes the requests of every task."""
        return lambda: self.task_dict[task][split][doc_id]

    def _length(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prepare(self, batch: list[_Job]) -> tuple[list[int], list[str], list[Image.Image]]:
        """Positions of the rows whose images load, their vicuna_v1 prompts, and all their images in order."""
        ready, prompts, images = [], [], []
        for pos, job in enumerate(batch):
            try:
                imgs = self._images(job)
            except SkippedRow as exc:
                self._skip(job, str(exc))
                continue
            ready.append(pos)
            prompts.append(vicuna_v1(job.ctx, len(imgs)))
            images.extend(imgs)
        return ready, prompts, images

    def _images(self, job: _Job) -> list[Image.Image]:
        """The job's images, decoded now; a missing or corrupt image raises SkippedRow with the reason."""
        try:
            visuals = job.doc_to_visual(job.doc_fn())
        except (KeyError, IndexError):  # a wrong task/split/doc_id is a bug, not a bad row
            raise
        except Exception as exc:  # datasets decodes on row access: a corrupt file raises here (or decodes as None)
            raise SkippedRow(f"image missing or unreadable ({_describe(exc)})") from None
        if visuals is None or (isinstance(visuals, list) and not visuals):
            raise SkippedRow("row has no image")
        visuals = visuals if isinstance(visuals, (list, tuple)) else [visuals]
        images = []
        for visual in visuals:
            if visual is None:
                raise SkippedRow("image missing or unreadable")
            if not isinstance(visual, Image.Image):
                raise SkippedRow(f"visual is a {type(visual).__name__}, not an image")
            try:
                visual.load()
                images.append(visual.convert("RGB"))
            except Exception as exc:
                raise SkippedRow(f"image could not be decoded ({_describe(exc)})") from None
            if min(images[-1].size) < 1:
                raise SkippedRow("image is empty")
        return images

    def _skip(self, job: _Job, reason: str) -> None:
        if (job.task, job.doc_id) not in self.skipped:
            logger.warning(f"skipping {job.task} doc {job.doc_id}: {reason}")
        self.skipped[(job.task, job.doc_id)] = reason

    # ---- model inputs ----
    def _inputs(self, prompts: list[str], images: list[Image.Image]) -> dict:
        """Model inputs, left-padded: the official token ids (`StfLlavaProcessor.text_inputs`) and mask plus the
        images (`_image_inputs`), and for a method that reads the question, its ids and the image sizes
        (`StfLlavaProcessor.question_inputs`)."""
        self._check_tags(prompts, images)
        batch = self.processor.text_inputs(prompts)
        batch.update(self.processor.question_inputs(prompts, images, self.model.config.token_method))
        return {**{k: v.to(self._device) for k, v in batch.items()}, **self._image_inputs(images)}

    def _check_tags(self, prompts: list[str], images: list[Image.Image]) -> None:
        n_tags = sum(p.count(self.processor.image_token) for p in prompts)
        if n_tags != len(images):
            raise ValueError(f"the prompts hold {n_tags} '{self.processor.image_token}' tags for {len(images)} images")

    def _image_inputs(self, images: list[Image.Image], keys: list[str] | None = None) -> dict:
        """pixel_values, or with the visual cache on, the visual tokens (what generate's prefill passes on)."""
        if not images:
            return {}
        if self.visual_cache is None:
            return {"pixel_values": self.processor.preprocess_images(images).to(self._device, self.model.dtype)}
        return {"mm_encoder_outputs": {"image": self._visual_tokens(images, keys)}}

    def _image_keys(self, images: list[Image.Image]) -> list[str]:
        """Content keys of the images under this processor's settings (`image_key`)."""
        proc = self.processor
        settings = json.dumps([getattr(proc, "pad_to_square", None), proc.image_processor.to_dict()],
                              sort_keys=True, default=str).encode()
        return [image_key(im, settings) for im in images]

    def _visual_tokens(self, images: list[Image.Image], keys: list[str] | None = None) -> torch.Tensor:
        """(len(images), N, H) visual tokens; the vision tower runs once per image not already in the cache."""
        cache = self.visual_cache
        keys = keys if keys is not None else self._image_keys(images)
        found: dict[str, torch.Tensor] = {}
        for key in keys:
            if key not in found and (tokens := cache.get(key)) is not None:
                found[key] = tokens
        todo = {key: im for key, im in zip(keys, images) if key not in found}  # first of each repeated image
        with torch.inference_mode():
            if todo:
                pixel_values = self.processor.preprocess_images(list(todo.values())).to(self._device, self.model.dtype)
                for key, tokens in zip(todo, self.model.visual_tokens(pixel_values)):
                    found[key] = tokens.clone()  # own storage: exact byte count, the batch tensor can go
                    cache.put(key, found[key])
            cache.hits += len(keys) - len(todo)
            cache.misses += len(todo)
            return torch.stack([found[key] for key in keys])


def _batch_order(job: _Job) -> tuple:
    """Collator's sort key: equal max_new_tokens together first (one long request would make its whole batch decode
    that long), then longest first where the batch is left-padded; greedy jobs carry length 0, so they stay in
    request order, where questions about one image (adjacent in these benchmarks) share a batch and its prefill."""
    return -max_new_tokens(job.gen), -job.length, job.index


def _sampling_settings(job: _Job) -> dict:
    """Collator's group key: requests batch together only when they decode the same way (greedy vs sampling)."""
    return {k: job.gen.get(k) for k in SAMPLING_KEYS}


def _sampling_kwargs(gen: dict) -> dict:
    """Greedy unless the task asks for sampling (temperature > 0 or do_sample)."""
    temperature = float(gen.get("temperature") or 0.0)
    do_sample = bool(gen.get("do_sample", False)) or temperature > 0
    kwargs: dict = {"do_sample": do_sample, "num_beams": int(gen.get("num_beams") or 1)}
    if do_sample:
        kwargs["temperature"] = temperature or 1.0
        if gen.get("top_p") is not None:
            kwargs["top_p"] = float(gen["top_p"])
        if gen.get("top_k") is not None:
            kwargs["top_k"] = int(gen["top_k"])
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def _truthy(value: bool | str) -> bool:
    """The `fast_paths` model argument as a bool (lmms-eval passes strings)."""
    try:
        return parse_bool(value)
    except ValueError:
        raise StfBenchError(f"fast_paths must be true or false, not {value!r}") from None


def _fixed_visuals(visuals: list, _doc: dict) -> list:
    """doc_to_visual for a later round: the visuals doc_to_text returned, whatever the doc."""
    return visuals


def _describe(exc: Exception) -> str:
    """`Type: message` without memory addresses, so that the same bad row gives the same reason every run."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", f"{type(exc).__name__}: {exc}")
