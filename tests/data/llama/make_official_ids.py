"""Make `official_ids.json`: the input ids LLaVA-1.5's official code builds for every prompt stf-bench sends.

Run ONCE, in two environments; only the output is committed (LLaVA's code is not). Step 1 dumps the exact full
prompts stf-bench builds (the `llava` protocol's `doc_to_text` of every embedded sample row of all ten benchmarks,
wrapped in the vicuna_v1 conversation as the adapter wraps it, plus adversarial strings); step 2 tokenizes them
with LLaVA's own `tokenizer_image_token` (haotian-liu/LLaVA @ c121f04, `llava/mm_utils.py`) and transformers
4.37.2's SLOW `LlamaTokenizer` (`AutoTokenizer.from_pretrained(path, use_fast=False)`, as LLaVA's
`load_pretrained_model` does), on the byte-exact LLaMA/Vicuna `tokenizer.model` beside this file, with the
checkpoint's `tokenizer_config.json` saying `legacy: false` (liuhaotian/llava-v1.5-7b), `legacy: true`, and no
`legacy` at all (4.37.2's default).

The commands that made the committed file (2026-12-05):

    # step 1, in stf-bench's environment, from the repository root
    .venv/bin/python tests/data/llama/make_official_ids.py prompts /work/scratch-tok/prompts.json
    # step 2, in a scratch environment outside the repository
    python3 -m venv /work/scratch-tok/venv
    /work/scratch-tok/venv/bin/pip install transformers==4.37.2 sentencepiece protobuf torch==2.13.0 pillow
    # LLaVA's two modules at c121f04 (fetched git mirror of haotian-liu/LLaVA)
    git -C <LLaVA git dir> archive c121f04 llava/mm_utils.py llava/constants.py | tar x -C /work/scratch-tok/llava
    /work/scratch-tok/venv/bin/python tests/data/llama/make_official_ids.py ids /work/scratch-tok/prompts.json \\
        --llava /work/scratch-tok/llava --out tests/data/llama/official_ids.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = {"legacy_false": {"legacy": False}, "legacy_true": {"legacy": True}, "legacy_unset": {}}
_ADDED = {"__type": "AddedToken", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}

# Strings where tokenizers disagree: double spaces, leading/trailing space, Chinese, special tokens in the text,
# text glued to an image, several images, an image at the end, "▁" typed in the text, byte-fallback characters.
ADVERSARIAL = [
    "A.  yes", " leading space", "trailing space ", "USER: <image>\nA.  yes B.   no ASSISTANT:",
    "USER: <image>\n 有几个红色的圆形？\n请直接回答选项字母。 ASSISTANT:", "中文<image>中文",
    "USER: <image>\nWhat?</s> ASSISTANT: yes</s>", "a </s> b <s> c <unk> d", "</s>after", "<s>", "<image></s>x",
    "USER: <image>What is this? ASSISTANT:", "<image>\n<image>\nCompare the two. ASSISTANT:",
    "USER: two images <image> and <image> ASSISTANT:", "ends with an image <image>", "<image>", "",
    "\u2581 typed \u2581\u2581 underscores", "tabs\tand\n\nnewlines\n", "emoji 🙂 and é ü", "  <image>  \n  x  ",
    "ASSISTANT: A.\nB.  C.   D.    E.", "1234567 3.14159 -2,000",
]

# (context, continuation) pairs as lmms-eval's loglikelihood requests carry them
LOGLIKELIHOOD = [("Is there a dog in the image?\nAnswer the question using a single word or phrase.", " yes"),
                 ("Which one?\nA.  red\nB. 蓝色", "A"), ("Describe it.", " A  cat.</s>")]


def dump_prompts(out: Path) -> None:
    """Step 1 (stf-bench's environment): every sample row's full llava-protocol prompt, then the adversarial ones."""
    import yaml

    from stf_bench.accuracy import BENCHMARKS, names
    from stf_bench.models.conversation import vicuna_v1

    tasks = HERE.parents[2] / "tasks" / "stf_llava"
    cases = []
    for bench in names():
        text = (tasks / f"stf_{bench}.yaml").read_text()
        spec = yaml.safe_load(text.replace("!function ", ""))  # `!function stf_bench.accuracy.b.f` -> "...b.f"
        doc_to_text = BENCHMARKS[bench].hook(spec["doc_to_text"].split(".")[-1])
        files = BENCHMARKS[bench].hook("sample_files")()
        rows = next(rows for _, rows in files.values() if rows and "question" in rows[0])  # GQA: not the images
        for i, row in enumerate(rows):
            cases.append({"name": f"{bench}/{i}", "prompt": vicuna_v1(doc_to_text(row), 1)})
    cases += [{"name": f"adversarial/{i}", "prompt": p} for i, p in enumerate(ADVERSARIAL)]
    # loglikelihood requests: the adapter tokenizes prompt + continuation as one string
    cases += [{"name": f"loglikelihood/{i}", "prompt": vicuna_v1(ctx, 1) + cont, "context": ctx, "continuation": cont}
              for i, (ctx, cont) in enumerate(LOGLIKELIHOOD)]
    out.write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n")
    print(f"{len(cases)} prompts -> {out}")


def _llava_tokenizer_image_token(llava: Path):
    """LLaVA's own function, imported from its `llava/mm_utils.py` (its package __init__ imports the whole model,
    so mm_utils is loaded alone, with its one package import `llava.constants` registered first)."""
    pkg = types.ModuleType("llava")
    pkg.__path__ = [str(llava / "llava")]
    sys.modules["llava"] = pkg
    for name in ("constants", "mm_utils"):
        spec = importlib.util.spec_from_file_location(f"llava.{name}", llava / "llava" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"llava.{name}"] = module
        spec.loader.exec_module(module)
    return sys.modules["llava.mm_utils"].tokenizer_image_token


def official_ids(prompts: Path, llava: Path, out: Path) -> None:
    """Step 2 (scratch environment): tokenize every prompt as LLaVA-1.5's evaluation does, per legacy setting."""
    import transformers
    from transformers import AutoTokenizer

    assert transformers.__version__ == "4.37.2", transformers.__version__
    tokenizer_image_token = _llava_tokenizer_image_token(llava)
    cases = json.loads(prompts.read_text())
    for key, extra in SETTINGS.items():
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "tokenizer.model").write_bytes((HERE / "tokenizer.model").read_bytes())
            (Path(tmp) / "tokenizer_config.json").write_text(json.dumps({  # liuhaotian/llava-v1.5-7b's, legacy varied
                "add_bos_token": True, "add_eos_token": False, "bos_token": {**_ADDED, "content": "<s>"},
                "clean_up_tokenization_spaces": False, "eos_token": {**_ADDED, "content": "</s>"},
                "model_max_length": 2048, "pad_token": None, "padding_side": "right", "sp_model_kwargs": {},
                "tokenizer_class": "LlamaTokenizer", "unk_token": {**_ADDED, "content": "<unk>"}, **extra}))
            (Path(tmp) / "special_tokens_map.json").write_text(json.dumps(
                {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>"}))
            tok = AutoTokenizer.from_pretrained(tmp, use_fast=False)
            assert type(tok).__name__ == "LlamaTokenizer" and tok.legacy == extra.get("legacy", True), tok
            for case in cases:
                case.setdefault("ids", {})[key] = tokenizer_image_token(case["prompt"], tok)
    meta = {"made_with": f"transformers {transformers.__version__} LlamaTokenizer (slow), "
                         "haotian-liu/LLaVA@c121f04 llava/mm_utils.py tokenizer_image_token",
            "tokenizer_model_sha256": "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347",
            "image": -200, "settings": SETTINGS, "commands": "see tests/data/llama/make_official_ids.py"}
    out.write_text(json.dumps({"meta": meta, "cases": cases}, ensure_ascii=False, indent=None,
                              separators=(",", ":")).replace('},{"name"', '},\n{"name"') + "\n")
    print(f"{len(cases)} cases x {len(SETTINGS)} settings -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prompts", help="step 1: dump stf-bench's prompts (stf-bench's environment)")
    p.add_argument("out", type=Path)
    i = sub.add_parser("ids", help="step 2: official ids (transformers 4.37.2 + LLaVA's mm_utils)")
    i.add_argument("prompts", type=Path)
    i.add_argument("--llava", type=Path, required=True, help="folder holding llava/mm_utils.py and llava/constants.py")
    i.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.step == "prompts":
        dump_prompts(args.out)
    else:
        official_ids(args.prompts, args.llava, args.out)


if __name__ == "__main__":
    main()
