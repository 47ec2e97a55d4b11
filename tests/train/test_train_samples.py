"""The built-in training sets: LLaVA's format, deterministic, every row well-formed, no evaluation image reused."""

from __future__ import annotations

import hashlib

from stf_bench.accuracy import BENCHMARKS
from stf_bench.models import load_model
from stf_bench.train.data import load
from stf_bench.train.labels import build_example, tokenization
from stf_bench.train.samples import build_train_samples, ensure_train_samples


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_samples_are_deterministic_and_checked_rows_with_nothing_masked(tmp_path):
    images, pretrain, finetune = build_train_samples()
    assert build_train_samples()[1:] == (pretrain, finetune)
    root = ensure_train_samples(tmp_path)
    tok = tokenization(load_model("stf-tiny", device="meta")[1])
    for name, template, n_rows in (("pretrain", "plain", len(pretrain)), ("finetune", "v1", len(finetune))):
        data = load(template, root / f"{name}.json", root / "images", "samples")
        assert len(data.rows) == n_rows
        assert not any(build_example(r, template, tok).masked for r in data.rows)
    assert any("image" not in r for r in finetune)  # text-only rows
    assert any(len(r["conversations"]) > 2 for r in finetune)  # multi-turn rows
    assert {r["image"] for r in pretrain} == set(images)


def test_no_training_image_is_an_evaluation_image():
    train = {_digest(data) for data in build_train_samples()[0].values()}
    evaluation = set()
    for bench in BENCHMARKS.values():
        for _, rows in bench.hook("sample_files")().values():
            for row in rows:
                cell = row.get("image")
                if isinstance(cell, dict) and cell.get("bytes"):
                    evaluation.add(_digest(cell["bytes"]))
    assert evaluation and train.isdisjoint(evaluation)
