"""VQAv2 requests for latency and the `prefill` FLOPs convention: the task's rows, LLaVA-1.5's prompt.

Rows come from the data of the benchmark that declares `latency_prompts` (VQAv2, `stf_bench.accuracy`) that
`stf-bench run` uses (the embedded samples by default, the hub, or a `--data-dir` snapshot); each becomes
`vicuna_v1(prompt)` with its image, the prompt its module's `doc_to_text` gives, exactly as the `llava` protocol
asks it. `prompts_source` in every report says which rows were used.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stf_bench.accuracy import prompts_for_latency
from stf_bench.data.sources import locate
from stf_bench.errors import StfBenchError
from stf_bench.models.conversation import vicuna_v1

if TYPE_CHECKING:
    from PIL import Image

@dataclass(frozen=True)
class Request:
    """One image and its full prompt (template applied, one `<image>` tag)."""

    image: Image.Image
    question: str
    prompt: str


def _first_rows(files: list[str], n: int) -> list[dict]:
    """Up to `n` rows (question, image) from the first parquet files, without reading the rest."""
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=n, columns=["question", "image"]):
            rows += batch.to_pylist()[: n - len(rows)]
            if len(rows) == n:
                return rows
    return rows


def vqav2_requests(n: int, data: str = "samples", data_dir: str | Path | None = None) -> tuple[list[Request], str]:
    """`n` requests from the first VQAv2 rows (repeated in order when there are fewer) and where they come from."""
    from PIL import Image

    bench = prompts_for_latency()
    task = bench.name
    files = locate([task], data, data_dir)[task].files
    rows = _first_rows(files, n)
    if not rows:
        raise StfBenchError(f"{task}: no rows in {files[0]}; check the data with `stf-bench run --tasks {task}`")
    doc_to_text = bench.hook("doc_to_text")
    requests = []
    for i in range(n):
        row = rows[i % len(rows)]
        image = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")
        requests.append(Request(image, row["question"], vicuna_v1(doc_to_text(row))))
    where = f"--data-dir {data_dir}" if data_dir is not None else f"{data} data"
    sizes = sorted({r.image.size for r in requests})
    return requests, (f"{task} ({where}): first {len(rows)} rows of {Path(files[0]).name}"
                      f"{', repeated' if len(rows) < n else ''}; image sizes {sizes}")


def question_inputs(processor: object, model: object, requests: list[Request]) -> dict:
    """For a model whose method reads the question (`reads_question`): the processor's `question_inputs` of the
    requests' own prompts (`question_ids`, `image_sizes`), so that `latency` and the `prefill` FLOPs run such a
    method on each request's real question, as an evaluation does; {} for any other model."""
    return processor.question_inputs([r.prompt for r in requests], [r.image for r in requests],
                                     model.config.token_method)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """`--data` / `--data-dir`: where the VQAv2 rows come from, as in `stf-bench run`."""
    parser.add_argument("--data", choices=("samples", "hub"), default="samples",
                        help="VQAv2 rows: the embedded samples (default) or the HF hub")
    parser.add_argument("--data-dir", help="a local snapshot folder holding VQAv2/ (wins over --data)")


def describe_tokenizer(tokenizer: object, llm_vocab: int) -> str:
    """Name and vocabulary size of the tokenizer that counted the text tokens, flagging the byte-level stand-in."""
    text = f"{type(tokenizer).__name__}, vocabulary of {len(tokenizer)} entries"
    if len(tokenizer) < llm_vocab // 2:
        text += (f"; a stand-in for the model's own tokenizer, whose vocabulary has {llm_vocab} entries (not in the local "
                 f"hub cache), "
                 f"so text token counts run several times higher than with the real one")
    return text
