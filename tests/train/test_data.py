"""LLaVA-format rows: the checks that name a bad row and its fix, missing images, and the data sources."""

from __future__ import annotations

import json

import pytest

from stf_bench.errors import StfBenchError
from stf_bench.train.data import check_row, hub_command, load, resolve


def turns(*pairs):
    return [{"from": f, "value": v} for f, v in pairs]


@pytest.mark.parametrize("row, template, message", [
    ({"id": "a"}, "v1", "row 3 (id 'a') has no `conversations`"),
    ({"id": "a", "conversations": turns(("human", "q"), ("human", "q2"))}, "v1", "roles do not alternate"),
    ({"id": "a", "conversations": turns(("user", "q"))}, "v1", "turn 0: each turn must be"),
    ({"id": "a", "image": "x.png", "conversations": turns(("human", "q"), ("gpt", "a"))}, "v1",
     "needs <image> in exactly one turn"),
    ({"id": "a", "conversations": turns(("human", "<image>\nq"), ("gpt", "a"))}, "v1", "text-only row contains"),
    ({"id": "a", "image": "x.png", "conversations": turns(("human", "<image>"), ("gpt", "c"), ("human", "q"),
                                                          ("gpt", "a"))}, "plain", "one image and two turns"),
    ({"id": "a", "conversations": turns(("human", "<image>"), ("gpt", "c"))}, "plain", "one image and two turns"),
])
def test_bad_rows_are_named_with_the_fix(row, template, message):
    with pytest.raises(StfBenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_row(row, 3, template)


def test_rows_llava_masks_are_accepted():
    """A leading gpt turn, an empty answer and a row ending on a human turn are LLaVA's to mask, not refused."""
    check_row({"conversations": turns(("gpt", "hi"), ("human", "q"), ("gpt", ""), ("human", "q2"))}, 0, "v1")


def _write(tmp_path, rows):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(rows))
    return path


def test_missing_image_names_the_row_or_is_skipped_and_counted(tmp_path):
    (tmp_path / "there.png").write_bytes(b"x")
    rows = [{"id": "ok", "image": "there.png", "conversations": turns(("human", "<image>"), ("gpt", "c"))},
            {"id": "gone", "image": "missing.png", "conversations": turns(("human", "<image>"), ("gpt", "c"))}]
    path = _write(tmp_path, rows)
    with pytest.raises(StfBenchError, match=r"row 1 \(id 'gone'\): image .*missing.png does not exist.*"
                                            r"--skip-missing-images"):
        load("plain", path, tmp_path, "test")
    data = load("plain", path, tmp_path, "test", skip_missing_images=True)
    assert [r["id"] for r in data.rows] == ["ok"] and data.skipped == ["gone"]


def test_unknown_stage_and_missing_files_are_refused(tmp_path):
    with pytest.raises(StfBenchError, match="unknown stage 'stage3'"):
        resolve("stage3")
    with pytest.raises(StfBenchError, match="--data-path .* does not exist"):
        resolve("finetune", data_path=tmp_path / "nope.json")
    with pytest.raises(StfBenchError, match="unknown --data 'web'"):
        resolve("finetune", data="web")


@pytest.mark.parametrize("stage, command", [
    ("pretrain", "hf download --repo-type dataset liuhaotian/LLaVA-Pretrain blip_laion_cc_sbu_558k.json images.zip "
                 "--local-dir DIR"),
    ("finetune", "hf download --repo-type dataset liuhaotian/LLaVA-Instruct-150K llava_v1_5_mix665k.json "
                 "--local-dir DIR"),
])
def test_hub_data_offline_and_missing_names_the_download_command(monkeypatch, tmp_path, stage, command):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    assert hub_command(stage) == command
    with pytest.raises(StfBenchError, match="is unavailable: HF_HUB_OFFLINE is set") as err:
        resolve(stage, data="hub")
    assert command in str(err.value)


def test_hub_finetune_images_need_the_readme_layout(monkeypatch, tmp_path):
    """The instruction set's JSON may be cached, but its images are not on the hub: --image-folder with LLaVA's
    README layout is required, and a missing sub-folder is named."""
    import huggingface_hub

    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(snapshot))
    with pytest.raises(StfBenchError, match="finetune images: pass --image-folder DIR"):
        resolve("finetune", data="hub")
    images = tmp_path / "playground"
    for sub in ("coco/train2017", "gqa/images", "ocr_vqa/images", "textvqa/train_images", "vg/VG_100K"):
        (images / sub).mkdir(parents=True)
    with pytest.raises(StfBenchError, match="lacks vg/VG_100K_2"):
        resolve("finetune", data="hub", image_folder=images)
    (images / "vg/VG_100K_2").mkdir()
    assert resolve("finetune", data="hub", image_folder=images) == (
        snapshot / "llava_v1_5_mix665k.json", images, "hub liuhaotian/LLaVA-Instruct-150K/llava_v1_5_mix665k.json")
