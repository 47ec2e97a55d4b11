"""Make the official training labels: what LLaVA-1.5's own `preprocess()` returns for adversarial LLaVA-format rows.

Run ONCE, in two environments; the rows and the labels are committed, LLaVA's code is not. Step 1 writes the
LLaVA-format row files (`rows_<set>.json`: adversarial conversations for both stages, plus rows of stf-bench's
training samples); step 2 feeds each file to LLaVA's own `LazySupervisedDataset` (haotian-liu/LLaVA @ c121f04,
`llava/train/train.py`: `__getitem__` -> `preprocess_multimodal` -> `preprocess` -> `preprocess_plain` /
`preprocess_v1`, with `llava/conversation.py`'s `plain` / `vicuna_v1` templates and `llava/mm_utils.py`'s
`tokenizer_image_token`) and writes `official_<set>.jsonl`: one `{"id", "input_ids", "labels"}` per row, the ids
before image expansion (image -200, ignored -100), exactly as `preprocess()` returns them. The tokenizer is made as
LLaVA's `train()` makes it: `AutoTokenizer.from_pretrained(path, model_max_length=M, padding_side="right",
use_fast=False)` then `tokenizer.pad_token = tokenizer.unk_token`, i.e. transformers 4.37.2's slow LlamaTokenizer
on the real LLaMA/Vicuna `tokenizer.model` (tests/data/llama) with lmsys/vicuna-7b-v1.5's tokenizer_config.json
(`legacy: false`). M is 2048 (LLaVA-1.5's scripts) for the `*_2048` sets and 40 for the `*_40` sets, whose rows
are longer than that (text-only rows are cut by the tokenizer in `preprocess_v1`; image rows are not cut by
`preprocess()` at all: LLaVA cuts them in its collator, `DataCollatorForSupervisedDataset`).

train.py imports LLaVA's model and trainer (torch, deepspeed, ...) at module level: step 2 loads its source with
`llava.model` and `llava.train.llava_trainer` stubbed (nothing of them is used by the functions called) and the
real `llava.constants`, `llava.conversation` and `llava.mm_utils`; images are 4x4 PNGs and the image processor a
stub (pixels do not enter the labels).

The commands that made the committed files (2026-12-05):

    # step 1, in stf-bench's environment, from the repository root
    .venv/bin/python tests/data/train/make_official_labels.py rows
    # step 2, in a scratch environment outside the repository: the one tests/data/llama/make_official_ids.py made
    # (python3 -m venv /work/scratch-tok/venv; pip install transformers==4.37.2 sentencepiece protobuf
    # torch==2.13.0 pillow: it held transformers 4.37.2, tokenizers 0.15.2, sentencepiece 0.2.3, protobuf 7.36.2)
    mkdir -p /work/scratch-labels/llava
    git --git-dir <LLaVA git dir> archive c121f04 llava/train/train.py llava/conversation.py llava/constants.py \\
        llava/mm_utils.py | tar x -C /work/scratch-labels/llava
    /work/scratch-tok/venv/bin/python tests/data/train/make_official_labels.py labels --llava /work/scratch-labels/llava
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
LLAMA = HERE.parent / "llama"
# set -> (stage, model_max_length)
SETS = {"pretrain_2048": ("pretrain", 2048), "pretrain_40": ("pretrain", 40), "finetune_2048": ("finetune", 2048),
        "finetune_40": ("finetune", 40)}
_ADDED = {"__type": "AddedToken", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
# lmsys/vicuna-7b-v1.5's tokenizer_config.json (LLaVA-1.5's LLM); LLaVA's train() overrides model_max_length
VICUNA_TOKENIZER_CONFIG = {
    "add_bos_token": True, "add_eos_token": False, "bos_token": {**_ADDED, "content": "<s>"},
    "clean_up_tokenization_spaces": False, "eos_token": {**_ADDED, "content": "</s>"}, "legacy": False,
    "model_max_length": 4096, "pad_token": None, "padding_side": "right", "sp_model_kwargs": {},
    "tokenizer_class": "LlamaTokenizer", "unk_token": {**_ADDED, "content": "<unk>"}}
VICUNA_SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>"}


def _row(rid: str, *turns: tuple[str, str], image: bool = True) -> dict:
    row = {"id": rid, "image": f"{rid}.png"} if image else {"id": rid}
    return {**row, "conversations": [{"from": f, "value": v} for f, v in turns]}


LONG_EN = ("The picture shows a red circle in the upper left, a blue square below it, a green triangle on the right "
           "and a yellow star in the middle of the canvas.")
ADVERSARIAL = {
    "pretrain_2048": [
        _row("p-plain", ("human", "<image>\nDescribe the image briefly."), ("gpt", "A red circle and a blue square.")),
        _row("p-image-at-end", ("human", "Give a short caption.\n<image>"), ("gpt", "A green triangle.")),
        _row("p-image-only", ("human", "<image>"), ("gpt", "a dog")),
        _row("p-eos-inside", ("human", "<image>\nWhat is in the picture?"), ("gpt", "A cat</s> on a mat.")),
        _row("p-empty-caption", ("human", "<image>\nDescribe."), ("gpt", "")),
        _row("p-chinese", ("human", "<image>\n简要描述这张图片。"), ("gpt", "一个红色的圆形和一个蓝色的正方形。")),
        _row("p-spaces", ("human", "  <image>  \n  x  "), ("gpt", "  two  spaces\nand a newline ")),
        _row("p-unk", ("human", "<image>"), ("gpt", "a <unk> token and 🙂")),
    ],
    "pretrain_40": [
        _row("p-long", ("human", "<image>\nDescribe the image in detail."), ("gpt", LONG_EN)),
        _row("p-short", ("human", "<image>\nDescribe."), ("gpt", "A star.")),
    ],
    "finetune_2048": [
        _row("f-single", ("human", "<image>\nWhat color is the circle?"), ("gpt", "Red.")),
        _row("f-multi", ("human", "<image>\nWhat color is the circle?"), ("gpt", "Red."),
             ("human", "And the square?"), ("gpt", "It is blue."), ("human", "How many shapes?"), ("gpt", "2")),
        _row("f-text-only", ("human", "How many sides does a triangle have?"), ("gpt", "3"), image=False),
        _row("f-text-multi", ("human", "Is a circle round?"), ("gpt", "yes"), ("human", "Why?"),
             ("gpt", "It has no corners."), image=False),
        _row("f-image-at-end", ("human", "What is shown here?\n<image>"), ("gpt", "A yellow star.")),
        _row("f-image-mid", ("human", "Look at <image> this one."), ("gpt", "ok")),
        _row("f-image-second-turn", ("human", "Hello"), ("gpt", "Hi."), ("human", "What is this?\n<image>"),
             ("gpt", "A square.")),
        _row("f-eos-inside", ("human", "<image>\nWhat is it?"), ("gpt", "A cat</s> on a mat."),
             ("human", "Sure?"), ("gpt", "Yes.")),
        _row("f-empty-answer", ("human", "<image>\nSay nothing."), ("gpt", "")),
        _row("f-empty-answer-mid", ("human", "<image>\nFirst?"), ("gpt", ""), ("human", "Second?"), ("gpt", "b")),
        _row("f-first-gpt", ("gpt", "Hello, ask me."), ("human", "<image>\nWhat color?"), ("gpt", "Blue.")),
        _row("f-first-gpt-text", ("gpt", "I am a bot."), ("human", "Are you?"), ("gpt", "yes"), image=False),
        _row("f-ends-on-human", ("human", "<image>\nWhat?"), ("gpt", "A star."), ("human", "And?")),
        _row("f-assistant-in-question", ("human", "<image>\nSay ASSISTANT: twice"), ("gpt", "ASSISTANT: ASSISTANT:")),
        _row("f-unk", ("human", "<image>\nSpell it."), ("gpt", "<unk>")),
        _row("f-chinese", ("human", "<image>\n图中有几个红色的圆形？\n请直接回答。"), ("gpt", "两个。"),
             ("human", "蓝色的呢？"), ("gpt", "一个")),
        _row("f-chinese-text", ("human", "你好"), ("gpt", "你好！有什么可以帮你？"), ("human", "三角形有几条边？"),
             ("gpt", "三条"), image=False),
        _row("f-spaces", ("human", "<image>\nA.  yes B.   no"), ("gpt", " A.  "), ("human", "\n\nwhy\t?"),
             ("gpt", "\nbecause ")),
    ],
    "finetune_40": [
        _row("f-long-text", ("human", "Describe a scene with shapes."), ("gpt", LONG_EN), image=False),
        _row("f-long-text-eos", ("human", "Describe."), ("gpt", LONG_EN + "</s> more"), image=False),
        _row("f-long-image", ("human", "<image>\nDescribe the image in detail."), ("gpt", LONG_EN)),
        _row("f-long-multi", ("human", "Hi"), ("gpt", "Hello."), ("human", "Describe shapes."), ("gpt", LONG_EN),
             image=False),
        _row("f-short", ("human", "Hi"), ("gpt", "Hello."), image=False),
    ],
}


def write_rows() -> None:
    """Step 1 (stf-bench's environment): the adversarial rows plus rows of the training samples, one file a set."""
    from stf_bench.train.samples import build_train_samples

    _, pretrain, finetune = build_train_samples()
    picked = [next(r for r in finetune if "image" in r and len(r["conversations"]) == n) for n in (2, 4, 6)]
    text = [r for r in finetune if "image" not in r][:2]
    samples = {"pretrain_2048": pretrain[:3], "finetune_2048": [*picked, *text]}
    for name, rows in ADVERSARIAL.items():
        out = HERE / f"rows_{name}.json"
        out.write_text(json.dumps(rows + samples.get(name, []), ensure_ascii=False, indent=1) + "\n")
        print(f"{len(rows) + len(samples.get(name, []))} rows -> {out}")


def _load_llava_train(llava: Path) -> types.ModuleType:
    """LLaVA's `llava/train/train.py`, with its model and trainer imports stubbed (see the module docstring)."""
    for name, path in (("llava", llava / "llava"), ("llava.train", llava / "llava" / "train")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(path)]
        sys.modules[name] = pkg
    sys.modules["llava.model"] = types.ModuleType("llava.model")  # `from llava.model import *`: nothing used
    trainer = types.ModuleType("llava.train.llava_trainer")
    trainer.LLaVATrainer = object
    sys.modules["llava.train.llava_trainer"] = trainer
    for name in ("constants", "conversation", "mm_utils", "train.train"):
        spec = importlib.util.spec_from_file_location(f"llava.{name}", llava / "llava" / f"{name.replace('.', '/')}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"llava.{name}"] = module
        spec.loader.exec_module(module)
    return sys.modules["llava.train.train"]


class _ImageProcessor:
    """Stands in for CLIP's image processor: `__getitem__` preprocesses each image; pixels are not in the labels."""

    image_mean = [0.48145466, 0.4578275, 0.40821073]
    crop_size = {"height": 4, "width": 4}

    def preprocess(self, image, return_tensors="pt"):
        import torch

        return {"pixel_values": torch.zeros(1, 3, 4, 4)}


def official_labels(llava: Path) -> None:
    """Step 2 (scratch environment): each row through LLaVA's LazySupervisedDataset, as its train() sets it up."""
    import tokenizers
    import transformers
    from PIL import Image
    from transformers import AutoTokenizer

    assert transformers.__version__ == "4.37.2", transformers.__version__
    train = _load_llava_train(llava)
    assert train.IS_TOKENIZER_GREATER_THAN_0_14, tokenizers.__version__
    conversation_lib = sys.modules["llava.conversation"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "tokenizer.model").write_bytes((LLAMA / "tokenizer.model").read_bytes())
        (tmp / "tokenizer_config.json").write_text(json.dumps(VICUNA_TOKENIZER_CONFIG))
        (tmp / "special_tokens_map.json").write_text(json.dumps(VICUNA_SPECIAL_TOKENS))
        for name, (stage, max_length) in SETS.items():
            rows_file = HERE / f"rows_{name}.json"
            rows = json.loads(rows_file.read_text())
            images = tmp / "images"
            for row in rows:
                if "image" in row:
                    (images / row["image"]).parent.mkdir(parents=True, exist_ok=True)
                    Image.new("RGB", (4, 4)).save(images / row["image"])
            # train(): the tokenizer, then `pad_token = unk_token` and the template of --version (pretrain.sh:
            # plain, finetune.sh: v1)
            tokenizer = AutoTokenizer.from_pretrained(tmp, model_max_length=max_length, padding_side="right",
                                                      use_fast=False)
            assert type(tokenizer).__name__ == "LlamaTokenizer" and tokenizer.legacy is False
            tokenizer.pad_token = tokenizer.unk_token
            version = "plain" if stage == "pretrain" else "v1"
            conversation_lib.default_conversation = conversation_lib.conv_templates[version]
            data_args = train.DataArguments(data_path=str(rows_file), lazy_preprocess=True, is_multimodal=True,
                                            image_folder=str(images),
                                            image_aspect_ratio="square" if stage == "pretrain" else "pad")
            data_args.image_processor = _ImageProcessor()
            data_args.mm_use_im_start_end = False
            dataset = train.LazySupervisedDataset(str(rows_file), tokenizer, data_args)
            lines = []
            for i, row in enumerate(copy.deepcopy(rows)):
                item = dataset[i]
                lines.append(json.dumps({"id": row["id"], "input_ids": item["input_ids"].tolist(),
                                         "labels": item["labels"].tolist()}, ensure_ascii=False))
            out = HERE / f"official_{name}.jsonl"
            out.write_text("\n".join(lines) + "\n")
            print(f"{len(lines)} rows ({stage}, model_max_length {max_length}) -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("rows", help="step 1: write the LLaVA-format rows (stf-bench's environment)")
    p = sub.add_parser("labels", help="step 2: LLaVA's preprocess() of every row (transformers 4.37.2 + LLaVA)")
    p.add_argument("--llava", type=Path, required=True,
                   help="folder holding llava/train/train.py, conversation.py, constants.py, mm_utils.py")
    args = parser.parse_args()
    if args.step == "rows":
        write_rows()
    else:
        official_labels(args.llava)


if __name__ == "__main__":
    main()
