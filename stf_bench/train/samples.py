"""Small deterministic training sets in LLaVA's JSON format (`stf-bench train --data samples`, the default).

Drawn like the evaluation samples (stf_bench.accuracy.drawing: shape scenes, single large shapes, blank photos and
signs of the same colours, shapes and words) and asked with the evaluation samples' own prompts (each benchmark
module's `doc_to_text`), so that what a tiny model learns here transfers to the evaluation samples of several
benchmarks: yes/no (POPE, GQA, VQAv2), one word (GQA, VQAv2, VizWiz's colour, shape and 'unanswerable', TextVQA's
word from the reference OCR tokens), a number (VQAv2's counts) and an option letter (ScienceQA, MMBench EN and CN).
The scenes come from their own random stream, on a grid shifted from the evaluation samples' and with other sizes
and greys, so no image is one of the evaluation samples' (tests/train/test_train_samples.py compares them all).
- `pretrain.json`: one caption row per image (`<image>` + an instruction, then the caption), LLaVA-Pretrain style.
- `finetune.json`: one conversation per image, single-turn for one in four and multi-turn (2-4 rounds) otherwise,
  the image in the first turn; then, for each scene, a POPE row (its yes/no object question about every shape of
  the scene and as many absent ones, half of them with a kind or colour that is in the scene) and an option row
  (three ScienceQA / MMBench questions about its shapes), and an option row for each counting image: rows whose
  answers need the image (version 3; version 2 had about 180 POPE-like and 100 option questions in 1059, too few
  for the tiny default model to tie any answer to the image); then text-only rows.
`ensure_train_samples()` writes them once into the cache directory, atomically, and reuses them; bump
TRAIN_SAMPLES_VERSION whenever a row or a drawing changes (the default model's weights are trained on them:
`scripts/make_default_model.py`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from stf_bench.accuracy import gqa, mmbench_cn_dev, mmbench_en_dev, pope, scienceqa_img, textvqa_val, vizwiz_vqa_val
from stf_bench.accuracy.drawing import COLORS, SHAPES, Shape, png_bytes, shape_scene, text_image
from stf_bench.accuracy.rules import SHORT
from stf_bench.accuracy.sampling import CN_COLORS, CN_SHAPES, WORDS

TRAIN_SAMPLES_VERSION = 3
N_IMAGES = 480
_MARKER = "TRAIN_SAMPLES_COMPLETE"
COLOR_NAMES = tuple(COLORS)
# The evaluation samples' 3 x 3 grid moved by 0.04 of the canvas (6 px): every shape sits where no evaluation
# scene puts one, so no training image is an evaluation image.
CELLS = [(0.24 + 0.3 * c, 0.24 + 0.3 * r) for r in range(3) for c in range(3)]
# Image kinds, cycled over the image index: scenes of 1-3 shapes (GQA, POPE, ScienceQA, MMBench, VQAv2), scenes of
# one kind repeated (VQAv2's counts), one large shape (VizWiz), a blank photo (VizWiz's 'unanswerable'), a sign.
KINDS = ("scene", "scene", "scene", "count", "scene", "single", "scene", "count", "blank", "scene", "single", "sign")
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
    n = rng.choice((1, 2, 3, 3))
    kinds, colors, cells = rng.sample(SHAPES, n), rng.sample(COLOR_NAMES, n), rng.sample(CELLS, n)
    return [Shape(k, c, x, y) for k, c, (x, y) in zip(kinds, colors, cells)]


def _listed(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _caption(shapes: list[Shape]) -> str:
    text = _listed([f"a {s.color} {s.kind}" for s in shapes])
    return text[0].upper() + text[1:] + "."


# ---------------------------------------------------------------- questions, in the evaluation samples' prompts


def _short(question: str, answer: str) -> tuple[str, str]:
    """GQA / POPE / VQAv2 style: the question with the short-answer suffix."""
    return gqa.doc_to_text({"question": question}), answer


def _absent(rng: random.Random, shapes: list[Shape]) -> tuple[str, str]:
    """A (kind, colour) pair that is not in the scene; half the time of a kind that is (POPE's adversarial)."""
    taken = {(s.kind, s.color) for s in shapes}
    pool = [(k, c) for k in SHAPES for c in COLOR_NAMES if (k, c) not in taken]
    near = [(k, c) for k, c in pool if k in {s.kind for s in shapes}]
    return rng.choice(near if near and rng.random() < 0.5 else pool)


def _choice(rng: random.Random, question: str, right: str, wrong: list[str], n: int, hint: str | None,
            lang: str) -> tuple[str, str]:
    """A multiple-choice question with `n` options (one right), ScienceQA's or MMBench's prompt, the letter."""
    options = rng.sample(wrong, min(n, len(wrong) + 1) - 1) + [right]
    rng.shuffle(options)
    letter = "ABCD"[options.index(right)]
    if lang == "sqa":
        return scienceqa_img.doc_to_text({"hint": hint, "question": question, "choices": options}), letter
    doc = {"question": question, "hint": hint, **dict(zip("ABCD", options))}
    text = mmbench_cn_dev.doc_to_text(doc) if lang == "cn" else mmbench_en_dev.doc_to_text(doc)
    return text, letter


def _multiple_choice(rng: random.Random, shapes: list[Shape]) -> tuple[str, str]:
    """ScienceQA or MMBench (EN / CN) about a scene: its shape, a colour, or how many shapes."""
    lang = rng.choice(("sqa", "en", "cn"))
    n = rng.choice((2, 3, 4, 4))
    s = rng.choice(shapes)
    color = (lambda c: CN_COLORS[c]) if lang == "cn" else (lambda c: c)
    kind = (lambda k: CN_SHAPES[k]) if lang == "cn" else (lambda k: k)
    hints = {"sqa": "Look closely at the picture.", "en": "The image shows simple shapes.", "cn": "图中是一些简单的形状。"}
    hint = hints[lang] if rng.random() < 0.5 else None
    asked = rng.randrange(3)
    if asked == 0:
        question = {"sqa": "What color is the {k}?", "en": "What color is the {k}?",
                    "cn": "图中{k}是什么颜色？"}[lang].format(k=kind(s.kind))
        right, wrong = color(s.color), [color(c) for c in COLOR_NAMES if c != s.color]
    elif asked == 1:
        question = ("Which shape is shown in the picture?" if lang == "sqa" and len(shapes) == 1 else
                    {"sqa": "Which shape is {c}?", "en": "What shape is the {c} object?",
                     "cn": "图中{c}的物体是什么形状？"}[lang].format(c=color(s.color)))
        right, wrong = kind(s.kind), [kind(k) for k in SHAPES if k != s.kind]
    else:
        question = {"sqa": "How many shapes are in the picture?", "en": "How many shapes are in the image?",
                    "cn": "图中有几个形状？"}[lang]
        right, wrong = str(len(shapes)), [str(c) for c in range(1, 6) if c != len(shapes)]
    return _choice(rng, question, right, wrong, n, hint, lang)


def _scene_questions(rng: random.Random, shapes: list[Shape]) -> list[tuple[str, str]]:
    """GQA, POPE and VQAv2 questions about a scene, and one multiple-choice question."""
    s = rng.choice(shapes)
    kind, color = _absent(rng, shapes)
    there = rng.choice(("Is there a {c} {k} in the image?", "Is there a {c} {k}?"))
    qa = [_short(f"What color is the {s.kind}?", s.color), _short(f"Which shape is {s.color}?", s.kind),
          _short(there.format(c=s.color, k=s.kind), "yes"), _short(there.format(c=color, k=kind), "no"),
          _multiple_choice(rng, shapes)]
    apart = [(a, b) for a in shapes for b in shapes if a.x < b.x]
    if apart:
        left, right = rng.choice(apart)
        first, second, answer = (left, right, "left") if rng.random() < 0.5 else (right, left, "right")
        qa.append(_short(f"Is the {first.kind} to the left or to the right of the {second.kind}?", answer))
    rng.shuffle(qa)
    return qa


def _pope_rounds(rng: random.Random, shapes: list[Shape]) -> list[tuple[str, str]]:
    """POPE's question about every shape of the scene ('yes') and as many absent ones ('no': half of them a kind or
    a colour that is in the scene, as POPE's adversarial and popular negatives), in random order."""
    present = [(s.color, s.kind) for s in shapes]
    taken = set(present)
    near = [(c, k) for c in COLOR_NAMES for k in SHAPES if (c, k) not in taken
            and (k in {s.kind for s in shapes} or c in {s.color for s in shapes})]
    far = [(c, k) for c in COLOR_NAMES for k in SHAPES if (c, k) not in taken and (c, k) not in near]
    absent = []
    for _ in present:
        pool = [p for p in (near if near and rng.random() < 0.5 else far or near) if p not in absent]
        absent.append(rng.choice(pool))
    qa = [(pope.doc_to_text({"question": f"Is there a {c} {k} in the image?"}), answer)
          for pairs, answer in ((present, "yes"), (absent, "no")) for c, k in pairs]
    rng.shuffle(qa)
    return qa


def _image_and_questions(rng: random.Random, kind: str
                         ) -> tuple[object, str, list[tuple[str, str]], list[list[tuple[str, str]]]]:
    """(drawing, caption, [(prompt, answer), ...], drills) of one training image of `kind`: the conversation of its
    own row, and the rounds of further rows about the same image (`drills`) whose answers need the image: POPE's
    yes/no object questions and multiple-choice questions (ScienceQA, MMBench) about its shapes."""
    if kind == "scene":
        shapes = _scene(rng)
        drills = [_pope_rounds(rng, shapes), [_multiple_choice(rng, shapes) for _ in range(3)]]
        return shape_scene(shapes), _caption(shapes), _scene_questions(rng, shapes), drills
    if kind == "count":
        shape, count = rng.choice(SHAPES), rng.randint(1, 4)
        shapes = [Shape(shape, rng.choice(COLOR_NAMES), x, y) for x, y in rng.sample(CELLS, count)]
        qa = [_short(f"How many {shape}s are there?", str(count)), _multiple_choice(rng, shapes)]
        drills = [[_multiple_choice(rng, shapes) for _ in range(3)]]
        return shape_scene(shapes), f"{count} {shape}{'s' if count > 1 else ''}.", qa, drills
    if kind == "single":  # VizWiz: one large shape near the centre, never the evaluation samples' size
        s = Shape(rng.choice(SHAPES), rng.choice(COLOR_NAMES), 0.5 + rng.choice((-0.03, 0.0, 0.03)), 0.5,
                  radius=rng.choice((48, 62)))
        qa = [(vizwiz_vqa_val.doc_to_text({"question": "What color is this?"}), s.color),
              (vizwiz_vqa_val.doc_to_text({"question": "What shape is this?"}), s.kind),
              _short(f"What color is the {s.kind}?", s.color)]
        rng.shuffle(qa)
        return shape_scene([s]), _caption([s]), qa, []
    if kind == "blank":  # VizWiz: nothing to see (greys the evaluation samples do not use)
        grey = 115 + 10 * rng.randrange(7)
        qa = [(vizwiz_vqa_val.doc_to_text({"question": q}), "unanswerable")
              for q in ("What is this?", "What color is this?", "What does this say?")]
        return shape_scene([], background=(grey, grey, grey)), "A blank grey picture.", qa[:1 + rng.randrange(3)], []
    first, second = rng.sample(WORDS, 2)  # a sign (TextVQA, with its reference OCR tokens), scaled unlike eval's
    number = str(rng.randint(10, 999))
    lines = rng.choice(([first], [first, second], [first, number]))
    doc = {"ocr_tokens": lines}
    qa = [(textvqa_val.doc_to_text({**doc, "question": "what word is written on the sign?"}), first.lower()),
          (textvqa_val.doc_to_text({**doc, "question": "what is the first word on the sign?"}), first.lower())]
    if number in lines:
        qa.append((textvqa_val.doc_to_text({**doc, "question": "what number is on the sign?"}), number))
    rng.shuffle(qa)
    return text_image(lines, scale=2), f"A sign that says {' '.join(lines)}.", qa, []


def _turns(qa: list[tuple[str, str]]) -> list[dict]:
    """LLaVA's conversation turns of (question, answer) rounds, the image in the first question."""
    turns = []
    for r, (q, a) in enumerate(qa):
        turns += [{"from": "human", "value": f"<image>\n{q}" if r == 0 else q}, {"from": "gpt", "value": a}]
    return turns


def build_train_samples() -> tuple[dict[str, bytes], list[dict], list[dict]]:
    """(image file -> PNG bytes, pretrain rows, finetune rows), deterministic."""
    rng = _rng("scenes")
    images, pretrain, finetune = {}, [], []
    for i in range(N_IMAGES):
        img, caption, qa, drills = _image_and_questions(rng, KINDS[i % len(KINDS)])
        name = f"train_{i:05d}.png"
        images[name] = png_bytes(img)
        prompt = rng.choice(CAPTION_PROMPTS)
        pretrain.append({"id": f"cap{i:05d}", "image": name, "conversations": [
            {"from": "human", "value": f"{prompt}\n<image>" if i % 2 else f"<image>\n{prompt}"},
            {"from": "gpt", "value": caption}]})
        rounds = 1 if i % 4 == 0 else min(len(qa), 2 + i % 3)
        finetune.append({"id": f"qa{i:05d}", "image": name, "conversations": _turns(qa[:rounds])})
        finetune += [{"id": f"drill{i:05d}-{d}", "image": name, "conversations": _turns(rounds)}
                     for d, rounds in enumerate(drills)]
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
    from stf_bench.data.samples import build_once, cache_root

    return build_once((root or cache_root()) / f"train-samples-v{TRAIN_SAMPLES_VERSION}", write_train_samples,
                      _MARKER, f"stf-bench train samples v{TRAIN_SAMPLES_VERSION}\n")
