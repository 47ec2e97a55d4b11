"""Training data in LLaVA's JSON format: where it comes from (`--data samples|hub`, `--data-path/--image-folder`) and
the checks every row passes before any model is built.

A row is `{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value": str}, ...]}`, `image` relative to the
image folder; a row without `image` is text-only. Hub sets (docs/training.md): LLaVA-Pretrain's
`blip_laion_cc_sbu_558k.json` + `images/` (stage 1) and LLaVA-Instruct's `llava_v1_5_mix665k.json` with the
coco/gqa/ocr_vqa/textvqa/vg folders of LLaVA's README (stage 2).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from stf_bench.args import env_flag
from stf_bench.errors import StfBenchError
from stf_bench.models.conversation import IMAGE_TOKEN

STAGES = ("pretrain", "finetune")
DATA_MODES = ("samples", "hub")


@dataclass(frozen=True)
class HubSet:
    """One stage's LLaVA data on the hub: the dataset repo, its JSON file, the image sub-folders its rows name
    (relative to the image folder) and how to get the images."""

    repo: str
    json: str
    image_dirs: tuple[str, ...]
    how_images: str


HUB_SETS = {
    "pretrain": HubSet("liuhaotian/LLaVA-Pretrain", "blip_laion_cc_sbu_558k.json", (),
                       "unzip images.zip of the same repo into DIR/images"),
    "finetune": HubSet("liuhaotian/LLaVA-Instruct-150K", "llava_v1_5_mix665k.json",
                       ("coco/train2017", "gqa/images", "ocr_vqa/images", "textvqa/train_images", "vg/VG_100K",
                        "vg/VG_100K_2"),
                       "download COCO train2017, GQA images, OCR-VQA, TextVQA train_val_images and Visual Genome "
                       "parts 1-2 as LLaVA's README ('Visual Instruction Tuning') says, laid out as "
                       "coco/train2017, gqa/images, ocr_vqa/images, textvqa/train_images, vg/VG_100K, vg/VG_100K_2 "
                       "under one folder, and pass it as --image-folder"),
}


@dataclass
class TrainData:
    """Checked rows and their image folder; `skipped`: ids of rows dropped for a missing image (only when asked)."""

    rows: list[dict]
    image_folder: Path | None
    source: str
    skipped: list[str] = field(default_factory=list)


def hub_command(stage: str) -> str:
    """The exact `hf download` command that fetches a stage's hub annotation (and, for stage 1, images)."""
    hub = HUB_SETS[stage]
    extra = " images.zip" if stage == "pretrain" else ""
    return f"hf download --repo-type dataset {hub.repo} {hub.json}{extra} --local-dir DIR"


def resolve(stage: str, data: str = "samples", data_path: str | os.PathLike | None = None,
            image_folder: str | os.PathLike | None = None) -> tuple[Path, Path | None, str]:
    """(JSON file, image folder, source description) for the chosen data, before anything is read or built.

    `data_path` wins over `data`; `--data hub` reads the local hub cache (downloading when online) and names the
    exact download command when the files are not there."""
    if stage not in STAGES:
        raise StfBenchError(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
    if data_path is not None:
        path = Path(data_path).expanduser()
        if not path.is_file():
            raise StfBenchError(f"--data-path {path} does not exist; pass a LLaVA-format JSON file")
        folder = Path(image_folder).expanduser() if image_folder is not None else None
        if folder is not None and not folder.is_dir():
            raise StfBenchError(f"--image-folder {folder} is not a directory; pass the folder the rows' `image` "
                                f"paths are relative to")
        return path, folder, str(path)
    if data == "samples":
        from stf_bench.train.samples import ensure_train_samples

        root = ensure_train_samples()
        return root / f"{stage}.json", root / "images", f"samples ({root.name})"
    if data == "hub":
        return _hub(stage, image_folder)
    raise StfBenchError(f"unknown --data {data!r}; use one of {', '.join(DATA_MODES)}, or --data-path FILE "
                        f"--image-folder DIR")


def _hub(stage: str, image_folder: str | os.PathLike | None) -> tuple[Path, Path, str]:
    """A stage's hub JSON from the local hub cache (or downloaded when online) and its image folder."""
    from huggingface_hub import snapshot_download

    hub = HUB_SETS[stage]
    offline = env_flag("HF_HUB_OFFLINE")
    try:
        root = Path(snapshot_download(hub.repo, repo_type="dataset", allow_patterns=[hub.json], etag_timeout=10,
                                      local_files_only=offline))
    except Exception as exc:  # not cached offline, or the hub unreachable
        why = "HF_HUB_OFFLINE is set and it is not in the local hub cache" if offline else \
            f"the hub could not be reached ({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})"
        raise StfBenchError(f"{stage} data {hub.repo}/{hub.json} is unavailable: {why}. Fetch it with: "
                            f"{hub_command(stage)} ; {hub.how_images}; then pass --data-path DIR/{hub.json} "
                            f"--image-folder DIR{'/images' if stage == 'pretrain' else ''}") from None
    if image_folder is None and stage == "finetune":  # the instruction set's images are not on the hub
        raise StfBenchError(f"finetune images: pass --image-folder DIR; {hub.how_images}")
    folder = Path(image_folder).expanduser() if image_folder is not None else root / "images"
    if not folder.is_dir():
        raise StfBenchError(f"{stage} images: {folder} is not a directory; {hub.how_images}")
    missing = [d for d in hub.image_dirs if not (folder / d).is_dir()] if stage == "finetune" else []
    if missing:
        raise StfBenchError(f"finetune images: {folder} lacks {', '.join(missing)}; {hub.how_images}")
    return root / hub.json, folder, f"hub {hub.repo}/{hub.json}"


def load_rows(path: Path) -> list[dict]:
    """The rows of a LLaVA-format JSON file (a list of objects)."""
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StfBenchError(f"{path} is not a readable JSON file ({exc}); pass a LLaVA-format JSON list") from None
    if not isinstance(rows, list):
        raise StfBenchError(f"{path} holds a JSON {type(rows).__name__}, not a list of rows; LLaVA's format is a "
                            f"list of {{'id', 'image'?, 'conversations'}} objects")
    return rows


def row_name(row: object, index: int) -> str:
    """`row 12 (id 'abc')`: how errors name a row."""
    rid = row.get("id") if isinstance(row, dict) else None
    return f"row {index}" + (f" (id {rid!r})" if rid is not None else "")


def check_row(row: object, index: int, template: str) -> None:
    """Refuse a row LLaVA's code would crash on or silently misread for `template` (`plain`: stage 1, `v1`), naming
    the row and the fix."""
    name = row_name(row, index)
    if not isinstance(row, dict) or not isinstance(row.get("conversations"), list) or not row["conversations"]:
        raise StfBenchError(f"{name} has no `conversations` list; each row needs conversations of "
                            f"{{'from': 'human'|'gpt', 'value': text}} turns")
    turns = row["conversations"]
    for t, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in ("human", "gpt") or \
                not isinstance(turn.get("value"), str):
            raise StfBenchError(f"{name}, turn {t}: each turn must be {{'from': 'human'|'gpt', 'value': text}}; "
                                f"got {turn!r:.80}")
    has_image = "image" in row
    if has_image and not isinstance(row["image"], str):
        raise StfBenchError(f"{name}: `image` must be one path relative to the image folder (one image per row)")
    tagged = sum(IMAGE_TOKEN in t["value"] for t in turns)
    if template == "plain":
        if not (has_image and len(turns) == 2 and turns[0]["from"] == "human" and turns[1]["from"] == "gpt"
                and IMAGE_TOKEN in turns[0]["value"] and IMAGE_TOKEN not in turns[1]["value"]):
            raise StfBenchError(f"{name}: a stage-1 (pretrain) row is one image and two turns, human with "
                                f"{IMAGE_TOKEN} then the gpt caption; fix the row or train it with the v1 template "
                                f"(--stage finetune)")
        return
    rest = turns[1:] if turns[0]["from"] != "human" else turns
    for t, turn in enumerate(rest):
        if turn["from"] != ("human", "gpt")[t % 2]:
            raise StfBenchError(f"{name}: roles do not alternate human/gpt (turn {t + len(turns) - len(rest)} is "
                                f"{turn['from']!r}); merge or drop the repeated turn")
    if has_image and tagged != 1:
        raise StfBenchError(f"{name}: an image row needs {IMAGE_TOKEN} in exactly one turn (found {tagged}); put one "
                            f"{IMAGE_TOKEN} in the first human turn")
    if not has_image and tagged:
        raise StfBenchError(f"{name}: a text-only row contains {IMAGE_TOKEN}; add the row's `image` or remove the tag")


def load(template: str, json_path: Path, image_folder: Path | None, source: str,
         skip_missing_images: bool = False) -> TrainData:
    """Read and check every row; a missing image file is an error naming the row, or (when asked) skipped and
    counted."""
    rows = load_rows(json_path)
    if not rows:
        raise StfBenchError(f"{json_path} holds no rows; pass a file with training rows")
    kept, skipped = [], []
    for i, row in enumerate(rows):
        check_row(row, i, template)
        if "image" in row:
            if image_folder is None:
                raise StfBenchError(f"{row_name(row, i)} has an image but no --image-folder was given; pass the "
                                    f"folder its `image` paths are relative to")
            if not (image_folder / row["image"]).is_file():
                if skip_missing_images:
                    skipped.append(str(row.get("id", i)))
                    continue
                raise StfBenchError(f"{row_name(row, i)}: image {image_folder / row['image']} does not exist; fix "
                                    f"--image-folder, or pass --skip-missing-images to skip and count such rows")
        kept.append(row)
    if not kept:
        raise StfBenchError(f"no row of {json_path} is left to train on ({len(skipped)} skipped for missing images)")
    return TrainData(kept, image_folder, source, skipped)
