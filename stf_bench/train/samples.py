"""Small deterministic training sets in LLaVA's JSON format (`stf-bench train --data samples`, the default).

Drawn like the evaluation samples (stf_bench.accuracy.drawing: shape scenes of the same colours and shapes) so that
what a tiny model learns here is what the evaluation samples ask (the colour of a shape, the shape of a colour,
whether an object is there), with their prompts (`... Answer the question using a single word or phrase.`). The
scenes come from their own random stream on a shifted grid, so no image is one of the evaluation samples'.
- `pretrain.json`: one caption row per image (`<image>` + an instruction, then the caption), LLaVA-Pretrain style.
- `finetune.json`: single-turn and multi-turn questions about the same images, plus text-only rows.
`ensure_train_samples()` writes them once into the cache directory, atomically, and reuses them; bump
TRAIN_SAMPLES_VERSION whenever a row or a drawing changes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from stf_bench.accuracy.drawing import COLORS, SHAPES, Shape, png_bytes, shape_scene
from stf_bench.accuracy.rules import SHORT

TRAIN_SAMPLES_VERSION = 1
N_IMAGES = 96
_MARKER = "TRAIN_SAMPLES_COMPLETE"
# The evaluation samples' 3 x 3 grid moved by 0.04 of the canvas (6 px): every shape sits where no evaluation
# scene puts one, so no training image is an evaluation image (tests/train/test_samples.py compares them all).
CELLS = [(0.24 + 0.3 * c, 0.24 + 0.3 * r) for r in range(3) for c in range(3)]
CAPTION_PROMPTS = ("Describe the image briefly.", "What is in the picture?", "Give a short caption.",
                   "Render a clear and concise summary of the photo.")
TEXT_ONLY = [  # questions a model can answer without an image, about the same vocabulary
    ("How many sides does a triangle have?", "3"), ("How many sides does a square have?", "4"),
    ("What color do you get when you mix blue and yellow?", "green"),
    ("What color do you get when you mix red and yellow?", "orange"),
    ("What color do you get when you mix red and blue?", "purple"), ("Is a circle round?", "yes"),
    ("Does a square have corners?", "yes"), ("Does a circle have corners?", "no"),
]


def _rng(name: str) -> random.Random:
    """A stream of its own (str seeds are hashed with SHA-512: stable across runs), apart from eval's samples."""
    return random.Random(f"stf-bench-train-samples/v{TRAIN_SAMPLES_VERSION}/{name}")


def _scene(rng: random.Random) -> list[Shape]:
    """1-3 shapes of distinct kinds and colours in distinct cells (an evaluation-style scene)."""
    n = rng.randint(1, 3)
    kinds, colors, cells = rng.sample(SHAPES, n), rng.sample(tuple(COLORS), n), rng.sample(CELLS, n)
    return [Shape(k, c, x, y) for k, c, (x, y) in zip(kinds, colors, cells)]


def _caption(shapes: list[Shape]) -> str:
    parts = [f"a {s.color} {s.kind}" for s in shapes]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return listed[0].upper() + listed[1:] + "."


def _questions(rng: random.Random, shapes: list[Shape]) -> list[tuple[str, str]]:
    """Evaluation-style questions with their short answers (GQA's colour/shape, POPE's yes/no)."""
    s = rng.choice(shapes)
    taken = {(x.kind, x.color) for x in shapes}
    kind, color = rng.choice([(k, c) for k in SHAPES for c in COLORS if (k, c) not in taken])
    qa = [(f"What color is the {s.kind}?", s.color), (f"Which shape is {s.color}?", s.kind),
          (f"Is there a {s.color} {s.kind} in the image?", "yes"), (f"Is there a {color} {kind} in the image?", "no")]
    rng.shuffle(qa)
    return [(q + SHORT, a) for q, a in qa]


def build_train_samples() -> tuple[dict[str, bytes], list[dict], list[dict]]:
    """(image file -> PNG bytes, pretrain rows, finetune rows), deterministic."""
    rng = _rng("scenes")
    images, pretrain, finetune = {}, [], []
    for i in range(N_IMAGES):
        shapes = _scene(rng)
        name = f"train_{i:05d}.png"
        images[name] = png_bytes(shape_scene(shapes))
        prompt = rng.choice(CAPTION_PROMPTS)
        pretrain.append({"id": f"cap{i:05d}", "image": name, "conversations": [
            {"from": "human", "value": f"{prompt}\n<image>" if i % 2 else f"<image>\n{prompt}"},
            {"from": "gpt", "value": _caption(shapes)}]})
        qa = _questions(rng, shapes)
        rounds = 1 if i % 3 else 2 + i % 2  # every third row multi-turn
        turns = []
        for r, (q, a) in enumerate(qa[:rounds]):
            turns += [{"from": "human", "value": f"<image>\n{q}" if r == 0 else q}, {"from": "gpt", "value": a}]
        finetune.append({"id": f"qa{i:05d}", "image": name, "conversations": turns})
    for j, (q, a) in enumerate(TEXT_ONLY):
        finetune.append({"id": f"text{j:03d}", "conversations": [
            {"from": "human", "value": q + SHORT}, {"from": "gpt", "value": a}]})
    return images, pretrain, finetune


def write_train_samples(root: Path) -> None:
    """`root/pretrain.json`, `root/finetune.json` and `root/images/*.png`."""
    images, pretrain, finetune = build_train_samples()
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        (root / "images" / name).write_bytes(data)
    (root / "pretrain.json").write_text(json.dumps(pretrain, indent=1, ensure_ascii=False) + "\n")
    (root / "finetune.json").write_text(json.dumps(finetune, indent=1, ensure_ascii=False) + "\n")


def ensure_train_samples(root: Path | None = None) -> Path:
    """The training samples directory, written on first use; concurrent callers never see a half-written one."""
    from stf_bench.eval.samples import build_once, cache_root

    return build_once((root or cache_root()) / f"train-samples-v{TRAIN_SAMPLES_VERSION}", write_train_samples,
                      _MARKER, f"stf-bench train samples v{TRAIN_SAMPLES_VERSION}\n")
