"""GQA (testdev-balanced, 12,578 questions): its declaration, the llava protocol's prompt and score, its data.

Questions and images are two configs of the hub dataset, joined on `imageId` (`local_process_docs`). LLaVA's rule:
strip, drop trailing periods, lower-case, then exact match (docs/protocols.md).
"""

from __future__ import annotations

import io

from stf_bench.accuracy.declaration import PCT, Benchmark, Metric, Source
from stf_bench.accuracy.drawing import shape_scene
from stf_bench.accuracy.rules import SHORT
from stf_bench.accuracy.sampling import COLOR_NAMES, SampleFiles, image_cell, rng_for, scene
from stf_bench.errors import StfBenchError

BENCHMARK = Benchmark(
    "gqa", "GQA",
    Source("lmms-lab-encoder/GQA", "GQA", "testdev_balanced_instructions", "testdev",
           images_config="testdev_balanced_images"),
    (Metric("exact_match", "exact_match", PCT, "mean_pct"),),
    (Metric("exact_match", "exact_match", PCT, "mean_pct"),), "gqa", tolerance=0.5, paper8=True,
    position=1, module=__name__, columns=("imageId", "question", "answer"), image_columns=("id", "image"))


def doc_to_text(doc: dict) -> str:
    """GQA: question + short-answer suffix."""
    return doc["question"] + SHORT


def correct(prediction: str, answer: str) -> bool:
    """LLaVA's GQA rule: strip, drop trailing periods, lower-case (convert_gqa_for_eval), then exact match."""
    return prediction.strip().rstrip(".").lower() == answer


def process_results(doc: dict, results: list[str]) -> dict:
    """GQA exact match after LLaVA's normalisation."""
    return {"exact_match": float(correct(results[0], doc["answer"]))}


def local_process_docs(files):
    """process_docs for local parquet files (`stf_bench.data.sources.DataFiles`): the join on `imageId`."""
    return lambda dataset: join_images(dataset, files.image_files)


def join_images(dataset, image_files: list[str]):
    """Add each question's `image` (a PIL image, opened lazily) from the image table."""
    import pyarrow.parquet as pq
    from PIL import Image

    by_id: dict[str, dict] = {}
    for path in image_files:
        table = pq.read_table(path, columns=["id", "image"])
        by_id.update(zip(table.column("id").to_pylist(), table.column("image").to_pylist()))
    missing = sorted(set(dataset["imageId"]) - by_id.keys())
    if missing:
        raise StfBenchError(f"gqa: {len(missing)} questions refer to images missing from {image_files} "
                            f"(e.g. imageId {missing[0]!r}); the instructions and images configs do not match")

    def _open(image_id: str):
        cell = by_id[image_id]
        try:
            return Image.open(io.BytesIO(cell["bytes"]))
        except Exception:  # a corrupt image: the adapter reports and skips this row when it is used
            return None

    def add_images(batch: dict) -> dict:
        batch["image"] = [_open(i) for i in batch["imageId"]]
        return batch

    return dataset.with_transform(add_images)


def sample_files() -> SampleFiles:
    """GQA testdev-balanced: instructions (questions) and images in two configs joined on imageId."""
    from datasets import Image, List, Value

    rng = rng_for("gqa")
    images, rows = [], []
    for i in range(8):
        image_id = f"n{510000 + 7 * i}"
        shapes = scene(rng, 3)
        images.append({"id": image_id, "image": image_cell(shape_scene(shapes))})
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
    src = BENCHMARK.source
    return {
        f"{src.config}/{src.split}-00000-of-00001.parquet": (instructions, rows),
        f"{src.images_config}/{src.split}-00000-of-00001.parquet": ({"id": Value("string"), "image": Image()}, images),
    }
