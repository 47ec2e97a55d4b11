"""Embedded sample data: a few dozen rows per benchmark, generated deterministically, in the real column schema.

`write_samples(root)` lays the ten datasets out exactly as `hf download --repo-type dataset ... --local-dir
root/<Folder>` lays out the real ones (same folder, config and split file names, same columns and dtypes, images
as `datasets.Image` {bytes, path} structs), so the embedded default and `--data-dir` share one code path.
Every image is drawn so that the generator knows its answer (shape scenes, rendered words, bar charts), and
an oracle answering `stf_bench.eval.llava_protocol.target(benchmark, doc)` scores 100 (OCRBench: 1000).
`ensure_samples()` writes them once into a cache directory (atomically; safe with several processes) and reuses
them. Bump SAMPLES_VERSION whenever a row or a drawing changes.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from stf_bench.benchmarks import BENCHMARKS, MMBENCH_COPY, names
from stf_bench.errors import StfBenchError
from stf_bench.eval.drawing import COLORS, SHAPES, Shape, bar_chart, png_bytes, shape_scene, text_image

SAMPLES_VERSION = 1
_MARKER = "SAMPLES_COMPLETE"

COLOR_NAMES = tuple(COLORS)
CN_COLORS = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色",
             "black": "黑色"}
CN_SHAPES = {"circle": "圆形", "square": "正方形", "triangle": "三角形"}
WORDS = ("STOP", "OPEN", "EXIT", "CAFE", "SALE", "PARK", "HOTEL", "BANK", "TAXI", "PIZZA", "BOOKS", "MARKET",
         "GARDEN", "RIVER", "SCHOOL", "BAKERY", "MUSEUM", "THEATER", "STATION", "LIBRARY")
CELLS = [(0.2 + 0.3 * c, 0.2 + 0.3 * r) for r in range(3) for c in range(3)]


# ---------------------------------------------------------------- helpers


def _rng(name: str) -> random.Random:
    """A generator seeded from the dataset name (str seeds are hashed with SHA-512: stable across runs)."""
    return random.Random(f"stf-bench-samples/v{SAMPLES_VERSION}/{name}")


def _image(img) -> dict:
    """The {bytes, path} struct a `datasets.Image` column stores."""
    return {"bytes": png_bytes(img), "path": None}


def _scene(rng: random.Random, n: int, distinct_kinds: bool = True) -> list[Shape]:
    """n shapes in distinct grid cells, with distinct (kind, colour) pairs (and distinct kinds if asked)."""
    kinds = rng.sample(SHAPES, n) if distinct_kinds else [rng.choice(SHAPES) for _ in range(n)]
    colors = rng.sample(COLOR_NAMES, n)
    cells = rng.sample(CELLS, n)
    return [Shape(k, c, x, y) for k, c, (x, y) in zip(kinds, colors, cells)]


def _annotators(rng: random.Random, answer: str, others: list[str], n_right: int) -> list[str]:
    """Ten annotator answers: `n_right` copies of `answer`, the rest drawn from `others`, in shuffled order."""
    crowd = [answer] * n_right + [rng.choice(others) for _ in range(10 - n_right)]
    rng.shuffle(crowd)
    return crowd


def _plural(kind: str) -> str:
    return kind + "s"


def _single_file(bench: str, features: dict, rows: list[dict]) -> dict[str, tuple[dict, list[dict]]]:
    """One parquet shard at the hub path of the benchmark's config (or `data/`) and split."""
    src = BENCHMARKS[bench].source
    return {f"{src.config or 'data'}/{src.split}-00000-of-00001.parquet": (features, rows)}


# ---------------------------------------------------------------- one builder per dataset


def _gqa() -> dict[str, tuple[dict, list[dict]]]:
    """GQA testdev-balanced: instructions (questions) and images in two configs joined on imageId."""
    from datasets import Image, List, Value

    rng = _rng("gqa")
    images, rows = [], []
    for i in range(8):
        image_id = f"n{510000 + 7 * i}"
        shapes = _scene(rng, 3)
        images.append({"id": image_id, "image": _image(shape_scene(shapes))})
        a, b, c = shapes
        left, right = sorted((a, b), key=lambda s: s.x) if a.x != b.x else (a, c)
        absent = next(col for col in COLOR_NAMES if col not in {s.color for s in shapes})
        qs = [
            (f"What color is the {a.kind}?", a.color, f"The {a.kind} is {a.color}.", "query", "attr", "colorObj",
             [("select", f"{a.kind} (1)", []), ("query", "color", [0])]),
            (f"Which shape is {b.color}?", b.kind, f"The {b.color} object is a {b.kind}.", "query", "cat",
             "categoryAttr", [("select", f"{b.color} object (2)", []), ("query", "name", [0])]),
            (f"Is the {left.kind} to the left or to the right of the {right.kind}?", "left",
             f"The {left.kind} is to the left of the {right.kind}.", "choose", "rel", "positionChoose",
             [("select", f"{right.kind} (3)", []), ("choose rel", f"{left.kind},to the left of|to the right of,s (4)",
                                                    [0])]),
        ]
        if i % 2:
            qs[2] = (f"Is there a {absent} {c.kind} in the image?", "no", f"No, there is a {c.color} {c.kind}.",
                     "verify", "attr", "existAttr", [("select", f"{c.kind} (5)", []), ("verify color", absent, [0])])
        for j, (question, answer, full, structural, semantic, detailed, program) in enumerate(qs):
            rows.append({
                "id": str(20_100_000 + 10 * i + j), "imageId": image_id, "question": question, "answer": answer,
                "fullAnswer": full, "isBalanced": True,
                "groups": {"global": None if j else answer, "local": f"{j:02d}-{semantic}"},
                "types": {"structural": structural, "semantic": semantic, "detailed": detailed},
                "annotations": {"answer": "{}", "question": "{}", "fullAnswer": "{}"},
                "semantic": [{"operation": op, "argument": arg, "dependencies": deps} for op, arg, deps in program],
                "semanticStr": "->".join(f"{op}: {arg} {deps}" for op, arg, deps in program),
            })
    instructions = {
        "id": Value("string"), "imageId": Value("string"), "question": Value("string"), "answer": Value("string"),
        "fullAnswer": Value("string"), "isBalanced": Value("bool"),
        "groups": {"global": Value("string"), "local": Value("string")},
        "types": {"structural": Value("string"), "semantic": Value("string"), "detailed": Value("string")},
        "annotations": {"answer": Value("string"), "question": Value("string"), "fullAnswer": Value("string")},
        "semantic": List({"operation": Value("string"), "argument": Value("string"),
                          "dependencies": List(Value("int64"))}),
        "semanticStr": Value("string"),
    }
    src = BENCHMARKS["gqa"].source
    return {
        f"{src.config}/{src.split}-00000-of-00001.parquet": (instructions, rows),
        f"{src.images_config}/{src.split}-00000-of-00001.parquet": ({"id": Value("string"), "image": Image()}, images),
    }


def _scienceqa() -> dict[str, tuple[dict, list[dict]]]:
    """ScienceQA-IMG test: multiple choice with 2-4 choices, the answer an index into `choices`."""
    from datasets import Image, List, Value

    rng = _rng("scienceqa_img")
    rows = []
    for i in range(20):
        kind_of_q = i % 3
        if kind_of_q == 0:
            shape = _scene(rng, 1)[0]
            shapes = [shape]
            question, right = "Which shape is shown in the picture?", shape.kind
            choices = rng.sample([k for k in SHAPES if k != right], 1 + i % 2) + [right]
        elif kind_of_q == 1:
            shapes = _scene(rng, 2)
            question, right = f"What color is the {shapes[0].kind}?", shapes[0].color
            choices = rng.sample([c for c in COLOR_NAMES if c != right], 3) + [right]
        else:
            shapes = _scene(rng, 1 + i % 3)
            question, right = "How many shapes are in the picture?", str(len(shapes))
            choices = [c for c in ("1", "2", "3", "4") if c != right][: 2 + i % 2] + [right]
        rng.shuffle(choices)
        rows.append({
            "image": _image(shape_scene(shapes)), "question": question, "choices": choices,
            "answer": choices.index(right), "hint": "" if i % 2 else "Look closely at the picture.",
            "task": "closed choice", "grade": f"grade{2 + i % 4}", "subject": "natural science",
            "topic": "shapes and colors", "category": "Identify shapes and colors",
            "skill": "Identify shapes and colors", "lecture": "Shapes have a form and a color.",
            "solution": f"The answer is {right}.",
        })
    features = {"image": Image(), "question": Value("string"), "choices": List(Value("string")),
                "answer": Value("int8"), "hint": Value("string"), "task": Value("string"), "grade": Value("string"),
                "subject": Value("string"), "topic": Value("string"), "category": Value("string"),
                "skill": Value("string"), "lecture": Value("string"), "solution": Value("string")}
    return _single_file("scienceqa_img", features, rows)


def _textvqa() -> dict[str, tuple[dict, list[dict]]]:
    """TextVQA val: words rendered on signs; ten annotator answers; the OCR tokens of the sign."""
    from datasets import Image, List, Value

    rng = _rng("textvqa_val")
    rows = []
    for i in range(20):
        first, second = rng.sample(WORDS, 2)
        number = str(rng.randint(10, 999))
        if i % 3 == 0:
            lines, question, answer = [first], "what word is written on the sign?", first.lower()
        elif i % 3 == 1:
            lines, question, answer = [first, second], "what is the first word on the sign?", first.lower()
        else:
            lines, question, answer = [first, number], "what number is on the sign?", number
        img = text_image(lines, scale=3, border=(90, 90, 90))
        crowd = _annotators(rng, answer, [w.lower() for w in lines if w.lower() != answer] + ["sign"], 6 + i % 3)
        crowd = [a.upper() if k == 0 and a == answer else a for k, a in enumerate(crowd)]  # case varies, as in life
        image_id = hashlib.sha1(f"textvqa{i}".encode()).hexdigest()[:16]
        rows.append({
            "image_id": image_id, "question_id": 34602 + i, "question": question,
            "question_tokens": question.rstrip("?").split() + ["?"], "image": _image(img),
            "image_width": img.width, "image_height": img.height,
            "flickr_original_url": f"https://example.invalid/{image_id}_o.jpg",
            "flickr_300k_url": f"https://example.invalid/{image_id}_z.jpg",
            "answers": crowd, "image_classes": ["Sign", "Billboard"], "set_name": "val",
            "ocr_tokens": [w for line in lines for w in line.split()],
        })
    features = {"image_id": Value("string"), "question_id": Value("int64"), "question": Value("string"),
                "question_tokens": List(Value("string")), "image": Image(), "image_width": Value("int64"),
                "image_height": Value("int64"), "flickr_original_url": Value("string"),
                "flickr_300k_url": Value("string"), "answers": List(Value("string")),
                "image_classes": List(Value("string")), "set_name": Value("string"),
                "ocr_tokens": List(Value("string"))}
    return _single_file("textvqa_val", features, rows)


def _pope() -> dict[str, tuple[dict, list[dict]]]:
    """POPE test: yes/no object questions in three blocks (adversarial, popular, random), half yes, half no."""
    from datasets import Image, Value

    rng = _rng("pope")
    scenes = [_scene(rng, 3) for _ in range(6)]
    rows = []
    for category in ("adversarial", "popular", "random"):
        for s, shapes in enumerate(scenes):
            present = rng.choice(shapes)
            taken = {(x.kind, x.color) for x in shapes}
            absent = rng.choice([(k, c) for k in SHAPES for c in COLOR_NAMES if (k, c) not in taken])
            for kind, color, answer in ((present.kind, present.color, "yes"), (absent[0], absent[1], "no")):
                n = len(rows)
                rows.append({
                    "id": str(n), "question_id": str(n + 1), "question": f"Is there a {color} {kind} in the image?",
                    "answer": answer, "image_source": f"samples_{s:06d}", "image": _image(shape_scene(shapes)),
                    "category": category,
                })
    features = {"id": Value("string"), "question_id": Value("string"), "question": Value("string"),
                "answer": Value("string"), "image_source": Value("string"), "image": Image(),
                "category": Value("string")}
    return _single_file("pope", features, rows)


def _mmbench_rows(lang: str) -> list[dict]:
    """MMBench dev: 10 questions with 2-4 options, each followed by its circular copies at index + k * 1e6."""
    rng = _rng(f"mmbench_{lang}")
    color = (lambda c: CN_COLORS[c]) if lang == "cn" else (lambda c: c)
    shape = (lambda k: CN_SHAPES[k]) if lang == "cn" else (lambda k: k)
    base = []
    for q in range(10):
        n_options = 4 if q < 7 else (3 if q < 9 else 2)
        shapes = _scene(rng, 2 if q % 2 else 3)
        if q % 3 == 2 and n_options <= 3:
            target = shapes[0]
            question = (f"图中{color(target.color)}的物体是什么形状？" if lang == "cn"
                        else f"What shape is the {target.color} object?")
            right, wrong = shape(target.kind), [shape(k) for k in SHAPES if k != target.kind]
            category, l2 = "object_localization", "finegrained_perception (instance-level)"
        elif q % 3 == 1:
            question = "图中有几个形状？" if lang == "cn" else "How many shapes are in the image?"
            right, wrong = str(len(shapes)), [n for n in ("1", "2", "3", "4", "5") if n != str(len(shapes))]
            category, l2 = "image_scene", "coarse_perception"
        else:
            target = shapes[0]
            question = (f"图中{shape(target.kind)}是什么颜色？" if lang == "cn"
                        else f"What color is the {target.kind}?")
            right, wrong = color(target.color), [color(c) for c in COLOR_NAMES if c != target.color]
            category, l2 = "attribute_recognition", "finegrained_perception (instance-level)"
        options = rng.sample(wrong, n_options - 1) + [right]
        rng.shuffle(options)
        hint = None if q % 2 else ("图中是一些简单的形状。" if lang == "cn" else "The image shows simple shapes.")
        base.append((100 + 3 * q, question, hint, options, right, category, l2, _image(shape_scene(shapes))))
    rows = []
    for index, question, hint, options, right, category, l2, image in base:
        for k in range(len(options)):  # k = 0 is the question itself; k >= 1 its circular copies
            rotated = options[k:] + options[:k]
            letters = dict(zip("ABCD", rotated + [None] * (4 - len(rotated))))
            rows.append({
                "index": index + k * MMBENCH_COPY, "question": question, "hint": hint,
                "answer": "ABCD"[rotated.index(right)], **letters, "category": category, "image": image,
                "source": "stf-bench-samples", "L2-category": l2, "comment": None, "split": "dev",
            })
    return rows


def _mmbench(lang: str) -> dict[str, tuple[dict, list[dict]]]:
    """MMBench (en or cn config), dev split."""
    from datasets import Image, Value

    features = {"index": Value("int64"), "question": Value("string"), "hint": Value("string"),
                "answer": Value("string"), "A": Value("string"), "B": Value("string"), "C": Value("string"),
                "D": Value("string"), "category": Value("string"), "image": Image(), "source": Value("string"),
                "L2-category": Value("string"), "comment": Value("string"), "split": Value("string")}
    return _single_file(f"mmbench_{lang}_dev", features, _mmbench_rows(lang))


def _vqav2() -> dict[str, tuple[dict, list[dict]]]:
    """VQAv2 val: counting, colour and yes/no questions with ten {answer, answer_confidence, answer_id}."""
    from datasets import Image, List, Value

    rng = _rng("vqav2_val")
    rows = []
    for i in range(20):
        image_id = 262000 + 13 * i
        if i % 3 == 0:
            kind = rng.choice(SHAPES)
            count = rng.randint(1, 4)
            shapes = [Shape(kind, rng.choice(COLOR_NAMES), x, y) for x, y in rng.sample(CELLS, count)]
            question, answer, qtype, atype = f"How many {_plural(kind)} are there?", str(count), "how many", "number"
            others = [str(count + 1), str(max(count - 1, 0))]
        elif i % 3 == 1:
            shapes = _scene(rng, 2)
            question, answer, qtype, atype = (f"What color is the {shapes[0].kind}?", shapes[0].color,
                                              "what color is the", "other")
            others = [shapes[1].color, "dark " + shapes[0].color]
        else:
            shapes = _scene(rng, 2)
            asked = shapes[0] if i % 2 else Shape(shapes[0].kind, next(c for c in COLOR_NAMES
                                                                       if c not in {s.color for s in shapes}), 0, 0)
            answer = "yes" if i % 2 else "no"
            question, qtype, atype = f"Is there a {asked.color} {asked.kind}?", "is there a", "yes/no"
            others = ["no" if answer == "yes" else "yes"]
        crowd = _annotators(rng, answer, others, 6 + i % 4)
        rows.append({
            "question_type": qtype, "multiple_choice_answer": answer,
            "answers": [{"answer": a, "answer_confidence": "yes" if a == answer else "maybe", "answer_id": k + 1}
                        for k, a in enumerate(crowd)],
            "image_id": image_id, "answer_type": atype, "question_id": image_id * 1000 + i, "question": question,
            "image": _image(shape_scene(shapes)),
        })
    features = {"question_type": Value("string"), "multiple_choice_answer": Value("string"),
                "answers": List({"answer": Value("string"), "answer_confidence": Value("string"),
                                 "answer_id": Value("int64")}),
                "image_id": Value("int64"), "answer_type": Value("string"), "question_id": Value("int64"),
                "question": Value("string"), "image": Image()}
    return _single_file("vqav2_val", features, rows)


def _vizwiz() -> dict[str, tuple[dict, list[dict]]]:
    """VizWiz-VQA val: single objects and words, plus blank photos whose answer is 'unanswerable'."""
    from datasets import Image, List, Value

    rng = _rng("vizwiz_vqa_val")
    rows = []
    for i in range(20):
        if i % 5 == 4:
            grey = 120 + 10 * (i % 7)
            img = shape_scene([], background=(grey, grey, grey))
            question, answer, category, others = "What is this?", "unanswerable", "unanswerable", ["nothing"]
        elif i % 5 in (0, 1):
            shape = Shape(rng.choice(SHAPES), rng.choice(COLOR_NAMES), 0.5, 0.5, radius=55)
            img = shape_scene([shape])
            if i % 5 == 0:
                question, answer, others = "What color is this?", shape.color, ["unanswerable", "dark"]
            else:
                question, answer, others = "What shape is this?", shape.kind, ["unanswerable", "object"]
            category = "other"
        else:
            word = rng.choice(WORDS)
            img = text_image([word], scale=4)
            question, answer, category, others = "What does this say?", word.lower(), "other", ["unanswerable", "text"]
        rows.append({"question_id": f"VizWiz_val_{i:08d}", "image": _image(img), "question": question,
                     "answers": _annotators(rng, answer, others, 5 + i % 5), "category": category})
    features = {"question_id": Value("string"), "image": Image(), "question": Value("string"),
                "answers": List(Value("string")), "category": Value("string")}
    return _single_file("vizwiz_vqa_val", features, rows)


OCR_TYPES = (  # (question_type, dataset) pairs as OCRBench names them
    ("Regular Text Recognition", "IIIT5K"), ("Irregular Text Recognition", "IC15"),
    ("Artistic Text Recognition", "WordArt"), ("Handwriting Recognition", "IAM"),
    ("Digit String Recognition", "ORAND"), ("Non-Semantic Text Recognition", "NonSemanticText"),
    ("Scene Text-centric VQA", "STVQA"), ("Doc-oriented VQA", "DocVQA"),
    ("Key Information Extraction", "SROIE"), ("Handwritten Mathematical Expression Recognition", "HME100k"),
)


def _ocrbench() -> dict[str, tuple[dict, list[dict]]]:
    """OCRBench: two rows per question type (ten types), answers as lists; HME rows are formulas."""
    from datasets import Image, List, Value

    rng = _rng("ocrbench")
    rows = []
    for i in range(20):
        qtype, dataset = OCR_TYPES[i % len(OCR_TYPES)]
        if dataset == "HME100k":
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            lines, question, answer = [f"x + {a} = {a + b}"], "Please write out the expression of the formula in " \
                "the image using LaTeX format.", [f"x+{a}={a + b}"]
        elif dataset == "ORAND":
            digits = str(rng.randint(10000, 99999))
            lines, question, answer = [digits], "what is the number in the image?", [digits]
        elif dataset in ("STVQA", "DocVQA", "SROIE"):
            word, total = rng.choice(WORDS), f"{rng.randint(1, 99)}.{rng.randint(10, 99)}"
            lines = [f"SHOP {word}", f"TOTAL {total}"]
            question = "what is the total?" if dataset != "STVQA" else "what is the name of the shop?"
            answer = [total] if dataset != "STVQA" else [word.lower(), f"shop {word.lower()}"]
        else:
            word = rng.choice(WORDS)
            lines, question, answer = [word], "what is written in the image?", [word.lower()]
        rows.append({"dataset": dataset, "question": question, "question_type": qtype, "answer": answer,
                     "image": _image(text_image(lines, scale=3))})
    features = {"dataset": Value("string"), "question": Value("string"), "question_type": Value("string"),
                "answer": List(Value("string")), "image": Image()}
    return _single_file("ocrbench", features, rows)


def _chartqa() -> dict[str, tuple[dict, list[dict]]]:
    """ChartQA test: bar charts, value and argmax questions, half human-written, half augmented."""
    from datasets import Image, Value

    rng = _rng("chartqa")
    rows = []
    for i in range(10):
        labels = rng.sample(["Apple", "Pear", "Plum", "Fig", "Kiwi", "Lime", "Date"], 3 + i % 3)
        values = rng.sample(range(5, 96), len(labels))
        img = _image(bar_chart(labels, [float(v) for v in values], title=f"Sales {2010 + i}"))
        pick = rng.randrange(len(labels))
        kind = "human_test" if i < 5 else "augmented_test"
        rows.append({"type": kind, "question": f"What is the value of {labels[pick]}?", "answer": str(values[pick]),
                     "image": img})
        rows.append({"type": kind, "question": "Which category has the highest value?",
                     "answer": labels[values.index(max(values))], "image": img})
    features = {"type": Value("string"), "question": Value("string"), "answer": Value("string"), "image": Image()}
    return _single_file("chartqa", features, rows)


# One maker per benchmark of stf_bench.benchmarks: {path under the dataset folder: (features, rows)}.
BUILDERS: dict[str, Callable[[], dict[str, tuple[dict, list[dict]]]]] = {
    "gqa": _gqa, "scienceqa_img": _scienceqa, "textvqa_val": _textvqa, "pope": _pope,
    "mmbench_en_dev": lambda: _mmbench("en"), "mmbench_cn_dev": lambda: _mmbench("cn"), "vqav2_val": _vqav2,
    "vizwiz_vqa_val": _vizwiz, "ocrbench": _ocrbench, "chartqa": _chartqa,
}

# ---------------------------------------------------------------- writing and caching


def write_samples(root: Path, benchmarks: tuple[str, ...] | None = None) -> list[Path]:
    """Write the sample parquet files under `root/<Folder>/...` (the hub layout); returns the files written."""
    import pyarrow.parquet as pq
    from datasets import Dataset, Features

    chosen = list(benchmarks or names())
    missing = [b for b in chosen if b not in BUILDERS]
    if missing:
        raise StfBenchError(f"no sample-data maker for benchmark {missing[0]!r}; add one to "
                            f"stf_bench.eval.samples.BUILDERS (docs/ARCHITECTURE.md, 'Benchmarks')")
    written = []
    for bench in chosen:
        folder = root / BENCHMARKS[bench].source.folder
        for rel, (features, rows) in BUILDERS[bench]().items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            feats = Features(features)
            columns = {name: [row[name] for row in rows] for name in feats}
            # the Arrow table carries the `huggingface` features metadata, as the hub's parquet files do
            pq.write_table(Dataset.from_dict(columns, features=feats).data.table, str(path))
            written.append(path)
    return written


def cache_root() -> Path:
    """Where generated data lives: $STF_BENCH_CACHE, else the user cache directory."""
    env = os.environ.get("STF_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("stf-bench"))


def samples_dirname() -> str:
    """`samples-v<N>-<digest of the declared benchmark names>`: a benchmark added to stf_bench.benchmarks gets a
    fresh sample set, never a cached one that lacks it."""
    declared = ",".join(names())
    return f"samples-v{SAMPLES_VERSION}-{hashlib.sha256(declared.encode()).hexdigest()[:8]}"


def ensure_samples(root: Path | None = None) -> Path:
    """The sample data directory, generated on first use; concurrent callers never see a half-written one."""
    return build_once((root or cache_root()) / samples_dirname(), write_samples, _MARKER,
                      f"stf-bench samples v{SAMPLES_VERSION}\n")


def build_once(target: Path, write: Callable[[Path], object], marker: str, marker_text: str) -> Path:
    """`target`, written by `write(folder)` into a staging folder and renamed into place with a `marker` file, unless
    already complete; concurrent callers never see a half-written one (the evaluation and training samples)."""
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        (staging / marker).write_text(marker_text)
        try:
            staging.rename(target)
        except OSError:  # another process finished first (target exists and is non-empty): use theirs
            if not (target / marker).exists():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
