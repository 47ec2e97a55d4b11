"""The embedded sample data: real column schema, known answers, circular copies, determinism, size, caching."""

from __future__ import annotations

import hashlib
import io
import threading
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import Features, Image
from PIL import Image as PILImage

from stf_bench import accuracy as benchmarks
from stf_bench.data import samples
from stf_bench.data.sources import local_files


def target(bench: str, doc: dict) -> str:
    """The row's right answer, as its benchmark module gives it."""
    return benchmarks.BENCHMARKS[bench].target(doc)

# docs/facts.md section 3: the columns of each real dataset
SCHEMA = {
    "gqa": ["id", "imageId", "question", "answer", "fullAnswer", "isBalanced", "groups", "types", "annotations",
            "semantic", "semanticStr"],
    "scienceqa_img": ["image", "question", "choices", "answer", "hint", "task", "grade", "subject", "topic",
                      "category", "skill", "lecture", "solution"],
    "textvqa_val": ["image_id", "question_id", "question", "question_tokens", "image", "image_width", "image_height",
                    "flickr_original_url", "flickr_300k_url", "answers", "image_classes", "set_name", "ocr_tokens"],
    "pope": ["id", "question_id", "question", "answer", "image_source", "image", "category"],
    "mmbench_en_dev": ["index", "question", "hint", "answer", "A", "B", "C", "D", "category", "image", "source",
                       "L2-category", "comment", "split"],
    "vqav2_val": ["question_type", "multiple_choice_answer", "answers", "image_id", "answer_type", "question_id",
                  "question", "image"],
    "vizwiz_vqa_val": ["question_id", "image", "question", "answers", "category"],
    "ocrbench": ["dataset", "question", "question_type", "answer", "image"],
    "chartqa": ["type", "question", "answer", "image"],
}
SCHEMA["mmbench_cn_dev"] = SCHEMA["mmbench_en_dev"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    samples.write_samples(folder)
    return folder


def _rows(root: Path, bench: str) -> tuple[Features, list[dict]]:
    files = local_files(bench, root).files
    table = pq.read_table(files)
    return Features.from_arrow_schema(table.schema), table.to_pylist()


@pytest.mark.parametrize("bench", benchmarks.names())
def test_columns_and_dtypes_follow_the_real_dataset(root, bench):
    features, rows = _rows(root, bench)
    assert list(features) == SCHEMA[bench]
    assert 20 <= len(rows) <= 40  # a few dozen
    if "image" in features:
        assert isinstance(features["image"], Image)  # the datasets.Image {bytes, path} struct, as on the hub
        for row in rows:
            PILImage.open(io.BytesIO(row["image"]["bytes"])).verify()
    for row in rows:
        assert target(bench, row)  # every row has an answer the generator knows


def test_gqa_images_live_in_their_own_config(root):
    files = local_files("gqa", root)
    images = pq.read_table(files.image_files).to_pylist()
    assert sorted(images[0]) == ["id", "image"]
    _, rows = _rows(root, "gqa")
    assert {r["imageId"] for r in rows} == {i["id"] for i in images}
    assert rows[0]["isBalanced"] is True and isinstance(rows[0]["semantic"], list)


@pytest.mark.parametrize("bench", ["mmbench_en_dev", "mmbench_cn_dev"])
def test_mmbench_circular_copies(root, bench):
    features, rows = _rows(root, bench)
    assert features["index"].dtype == "int64"
    by_base: dict[int, list[dict]] = {}
    for r in rows:
        by_base.setdefault(r["index"] % 1_000_000, []).append(r)
    sizes = Counter()
    for base, group in by_base.items():
        options = [[r[x] for x in "ABCD" if r[x] is not None] for r in sorted(group, key=lambda r: r["index"])]
        n = len(options[0])
        sizes[n] += 1
        assert sorted(r["index"] for r in group) == [base + k * 1_000_000 for k in range(n)]  # one copy per rotation
        assert all(o == options[0][k:] + options[0][:k] for k, o in enumerate(options))
        answers = {r[r["answer"]] for r in group}
        assert len(answers) == 1  # the letter moves, the right option stays the same
    assert set(sizes) == {2, 3, 4}  # some questions have fewer than four options


def test_mmbench_cn_is_chinese(root):
    _, rows = _rows(root, "mmbench_cn_dev")
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in r["question"]) for r in rows)


def test_pope_has_three_balanced_splits(root):
    _, rows = _rows(root, "pope")
    counts = Counter((r["category"], r["answer"]) for r in rows)
    assert set(counts) == {(c, a) for c in ("adversarial", "popular", "random") for a in ("yes", "no")}
    assert len(set(counts.values())) == 1


@pytest.mark.parametrize("bench", ["textvqa_val", "vqav2_val", "vizwiz_vqa_val"])
def test_ten_annotators_with_a_clear_majority(root, bench):
    _, rows = _rows(root, bench)
    for r in rows:
        answers = [a["answer"] if isinstance(a, dict) else a for a in r["answers"]]
        assert len(answers) == 10
        assert Counter(a.lower() for a in answers)[target(bench, r)] >= 4  # the majority scores 100%


def test_vqav2_answers_are_structs(root):
    features, rows = _rows(root, "vqav2_val")
    assert sorted(rows[0]["answers"][0]) == ["answer", "answer_confidence", "answer_id"]
    assert features["question_id"].dtype == "int64"


def test_unanswerable_vizwiz_photos_are_blank(root):
    _, rows = _rows(root, "vizwiz_vqa_val")
    for r in rows:
        img = PILImage.open(io.BytesIO(r["image"]["bytes"]))
        blank = len(img.getcolors(maxcolors=4) or []) == 1
        assert blank == (r["category"] == "unanswerable")


def test_ocrbench_covers_every_question_type(root):
    from lmms_eval.tasks.ocrbench.utils import OCRBench_score

    _, rows = _rows(root, "ocrbench")
    assert {r["question_type"] for r in rows} == set(OCRBench_score)  # what its aggregate indexes by


def test_samples_are_small(root):
    total = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    assert total < 3_000_000


def test_same_bytes_every_run(root, tmp_path):
    samples.write_samples(tmp_path, ("pope", "chartqa", "mmbench_cn_dev"))
    for bench in ("pope", "chartqa", "mmbench_cn_dev"):
        for a, b in zip(local_files(bench, root).files, local_files(bench, tmp_path).files):
            assert hashlib.sha256(Path(a).read_bytes()).digest() == hashlib.sha256(Path(b).read_bytes()).digest()


def test_layout_is_the_hub_layout(root):
    assert (root / "GQA" / "testdev_balanced_instructions" / "testdev-00000-of-00001.parquet").is_file()
    assert (root / "MMBench" / "cn" / "dev-00000-of-00001.parquet").is_file()
    assert {p.name for p in root.iterdir()} == {b.source.folder for b in benchmarks.BENCHMARKS.values()}


def test_ensure_samples_writes_once_even_when_raced(tmp_path, monkeypatch):
    monkeypatch.setenv("STF_BENCH_CACHE", str(tmp_path))
    results, errors = [], []

    def worker():
        try:
            results.append(samples.ensure_samples())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    made = results[0]
    assert made.parent == tmp_path and (made / "SAMPLES_COMPLETE").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [made.name]  # no staging folder left behind
    stamp = (made / "POPE" / "data" / "test-00000-of-00001.parquet").stat().st_mtime_ns
    assert samples.ensure_samples() == made  # reused, not rewritten
    assert (made / "POPE" / "data" / "test-00000-of-00001.parquet").stat().st_mtime_ns == stamp
