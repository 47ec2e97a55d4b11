"""What the benchmark modules' sample-data builders share: the seeded generators, scenes, annotator crowds.

A builder (`sample_files()` in a benchmark module) returns {path under the dataset folder: (features, rows)}: rows
in the exact schema of the real dataset, images drawn (`drawing.py`) so that the builder knows each answer.
`stf_bench.data.samples` writes them as parquet in the hub's layout. Bump SAMPLES_VERSION whenever a row or a
drawing changes.
"""

from __future__ import annotations

import hashlib
import random
import re

from stf_bench.accuracy.declaration import Source
from stf_bench.accuracy.drawing import COLORS, SHAPES, Shape, png_bytes

SampleFiles = dict[str, tuple[dict, list[dict]]]
_DIRNAME = re.compile(r"^samples-v\d+-[0-9a-f]{8}$")
SAMPLES_VERSION = 1



def samples_dirname() -> str:
    """`samples-v<N>-<digest of the declared benchmark names>`: the folder the sample data is generated into; a
    benchmark added to stf_bench.accuracy gets a fresh sample set, never a cached one that lacks it."""
    from stf_bench.accuracy import names

    declared = ",".join(names())
    return f"samples-v{SAMPLES_VERSION}-{hashlib.sha256(declared.encode()).hexdigest()[:8]}"


def is_samples_dirname(name: str) -> bool:
    """Whether a folder name is one `samples_dirname` writes (any version, any set of benchmarks)."""
    return _DIRNAME.match(name) is not None


COLOR_NAMES = tuple(COLORS)
CN_COLORS = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色",
             "black": "黑色"}
CN_SHAPES = {"circle": "圆形", "square": "正方形", "triangle": "三角形"}
WORDS = ("STOP", "OPEN", "EXIT", "CAFE", "SALE", "PARK", "HOTEL", "BANK", "TAXI", "PIZZA", "BOOKS", "MARKET",
         "GARDEN", "RIVER", "SCHOOL", "BAKERY", "MUSEUM", "THEATER", "STATION", "LIBRARY")
CELLS = [(0.2 + 0.3 * c, 0.2 + 0.3 * r) for r in range(3) for c in range(3)]


def rng_for(name: str) -> random.Random:
    """A generator seeded from the dataset name (str seeds are hashed with SHA-512: stable across runs)."""
    return random.Random(f"stf-bench-samples/v{SAMPLES_VERSION}/{name}")


def image_cell(img) -> dict:
    """The {bytes, path} struct a `datasets.Image` column stores."""
    return {"bytes": png_bytes(img), "path": None}


def scene(rng: random.Random, n: int, distinct_kinds: bool = True) -> list[Shape]:
    """n shapes in distinct grid cells, with distinct (kind, colour) pairs (and distinct kinds if asked)."""
    kinds = rng.sample(SHAPES, n) if distinct_kinds else [rng.choice(SHAPES) for _ in range(n)]
    colors = rng.sample(COLOR_NAMES, n)
    cells = rng.sample(CELLS, n)
    return [Shape(k, c, x, y) for k, c, (x, y) in zip(kinds, colors, cells)]


def annotators(rng: random.Random, answer: str, others: list[str], n_right: int) -> list[str]:
    """Ten annotator answers: `n_right` copies of `answer`, the rest drawn from `others`, in shuffled order."""
    crowd = [answer] * n_right + [rng.choice(others) for _ in range(10 - n_right)]
    rng.shuffle(crowd)
    return crowd


def single_file(src: Source, features: dict, rows: list[dict]) -> SampleFiles:
    """One parquet shard at the hub path of the benchmark's config (or `data/`) and split."""
    return {f"{src.config or 'data'}/{src.split}-00000-of-00001.parquet": (features, rows)}
