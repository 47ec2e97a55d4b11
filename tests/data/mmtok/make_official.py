"""Make `official.pt` and `official.json`: what MMTok's official code selects on fixed tensors.

Runs the authors' own modules, Ironieser/MMTok @ d1522cd (`mmtok/core/semantic_selector.py`,
`mmtok/core/text_processor.py`, `mmtok/llava/patch_llava.py`), imported from a directory outside the repository;
only the outputs are committed (the official code is not). `official.pt` holds the inputs (seeded, stored so the
test does not depend on a random generator) and, per case, the kept indices and tokens that
`SemanticTokenSelector.mm_coverage_selection` returns with `mmtok()`'s settings (alpha 0.5, temperatures 0.02 and
0.2), through both of its code paths (the TorchScript kernel and the eager loop); `official.json` holds
`extract_keywords_simple` of sample questions and `calculate_padding_patch_indices` of sample image sizes.

The commands that made the committed files (2026-12-05):

    mkdir -p /work/scratch-mmtok && cd /work/scratch-mmtok
    for f in mmtok/core/semantic_selector.py mmtok/core/text_processor.py mmtok/llava/patch_llava.py; do
        git --git-dir=<MMTok git dir> show d1522cd:$f > $(basename $f); done
    .venv/bin/python -m pip install --target /work/scratch-mmtok/site loguru   # the modules log through loguru
    # from the repository root
    PYTHONPATH=/work/scratch-mmtok/site .venv/bin/python tests/data/mmtok/make_official.py /work/scratch-mmtok
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
QUESTIONS = [
    "Is there a dog in the image?\nAnswer the question using a single word or phrase.",
    "What color is the car on the left side of the street?",
    "Which of these is a fruit?\nA. apple\nB. chair\nAnswer with the option's letter from the given choices directly.",
    "What is it?",
    "",
]
SIZES = [(640, 480), (480, 640), (500, 500), (1024, 200), (300, 1000), (333, 336), (640, 427)]
CASES = [  # (name, tokens, padding image size or None)
    ("k64", 64, None), ("k128", 128, None), ("k192", 192, None),
    ("k64_pad", 64, (640, 427)), ("k128_pad", 128, (480, 640)), ("k192_pad", 192, (640, 360)),
]


def _load(directory: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    """Run the official selection on seeded tensors; write official.pt and official.json beside this file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("official", type=Path, help="directory with the three official modules")
    args = parser.parse_args()
    selector_module = _load(args.official, "semantic_selector")
    text_module = _load(args.official, "text_processor")
    patch_module = _load(args.official, "patch_llava")

    generator = torch.Generator().manual_seed(27)
    n, clip_width, llm_width, m = 576, 16, 24, 6
    projected = torch.randn(n, llm_width, generator=generator)
    clip = torch.randn(n, clip_width, generator=generator)
    text = torch.randn(m, llm_width, generator=generator) + projected[[5, 100, 300, 301, 450, 575]]  # near some patches
    out: dict[str, torch.Tensor] = {"projected": projected, "clip": clip, "text": text}
    for name, tokens, size in CASES:
        padding = None if size is None else patch_module.calculate_padding_patch_indices(size, 336, 14, False)
        kept = []
        for threshold in ("100000", "1"):  # eager loop, then the TorchScript kernel (k_max >= threshold)
            os.environ["MMTok_JIT_K_MAX_THRESHOLD"] = threshold
            os.environ["MMTok_JIT_N_THRESHOLD"] = "100000"
            selector = selector_module.SemanticTokenSelector(target_vision_tokens=tokens, alpha=0.5)
            indices, selected = selector.mm_coverage_selection(text, projected, clip, tv_temp=0.02, vv_temp=0.2,
                                                               padding_patch_indices=padding)
            kept.append((torch.tensor(indices), selected))
        if not torch.equal(kept[0][0], kept[1][0]):
            raise SystemExit(f"{name}: the official eager loop and kernel disagree")
        out[f"{name}.indices"], out[f"{name}.tokens"] = kept[0]
        if size is not None:
            out[f"{name}.size"] = torch.tensor(size)
    torch.save(out, HERE / "official.pt")
    processor = text_module.VQATextProcessor()
    facts = {"keywords": {q: processor.extract_keywords_simple(q) for q in QUESTIONS},
             "padding": [{"size": list(s), "indices": patch_module.calculate_padding_patch_indices(s, 336, 14, False)}
                         for s in SIZES]}
    (HERE / "official.json").write_text(json.dumps(facts, indent=1) + "\n")


if __name__ == "__main__":
    main()
