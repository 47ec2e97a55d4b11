"""What a training stage leaves in its output directory, and the refusal to write over an earlier run.

- stage 1: `mm_projector.bin` in the layout of LLaVA's released stage-1 files (keys `model.mm_projector.*`; for
  MBTF+STF also `model.mm_projector_crosslayer.*`: the projector's `checkpoint_keys["original"]`), a plain tensor dict
  saved with `torch.save` (loads with `weights_only=True`), plus the model's `config.json`;
- stage 2: the whole model by `save_pretrained` (model_type stf_llava) and its processor, loadable by `load_model`
  and `stf-bench run` as they are;
- both: `training.json` (provenance: preset, model arguments, the resolved recipe, data, steps, masked and skipped
  rows, stf-bench version) and the Trainer's `trainer_state.json`; `checkpoint-N/` folders for `--resume`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from stf_bench.errors import StfBenchError
from stf_bench.models.loading import stage1_keys
from stf_bench.store.ingest import TRAINING_FILE as PROVENANCE_FILE
from stf_bench.store.ingest import read_training

PROJECTOR_FILE = "mm_projector.bin"
RUN_MARKERS = (PROVENANCE_FILE, PROJECTOR_FILE, "trainer_state.json", "model.safetensors", "config.json")


def last_checkpoint(output_dir: Path) -> Path | None:
    """The Trainer checkpoint with the highest step in `output_dir`, or None."""
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def holds_run(output_dir: Path) -> bool:
    """Whether `output_dir` already holds a training run (finished, or checkpoints of an interrupted one)."""
    return output_dir.is_dir() and (last_checkpoint(output_dir) is not None
                                     or any((output_dir / m).exists() for m in RUN_MARKERS))


def prepare_output_dir(output_dir: Path, resume: bool, overwrite: bool) -> Path | None:
    """Refuse a directory holding a run unless `resume` (-> the checkpoint to continue from, if any) or `overwrite`
    (-> what an earlier run wrote there is removed)."""
    if not holds_run(output_dir):
        return None
    if resume:
        return last_checkpoint(output_dir)
    if overwrite:
        if os.environ.get("RANK", "0") != "0":  # with several processes, the first one alone removes
            return None
        for child in output_dir.glob("checkpoint-*"):
            shutil.rmtree(child)
        for name in RUN_MARKERS:
            if (output_dir / name).is_file():
                (output_dir / name).unlink()
        return None
    raise StfBenchError(f"--output-dir {output_dir} already holds a training run; pass --resume to continue it from "
                        f"its last checkpoint, --overwrite to start over, or another --output-dir")


def projector_state(model) -> dict[str, torch.Tensor]:
    """The projector's tensors under their stage-1 file keys (contiguous CPU copies: a plain tensor dict)."""
    keys = stage1_keys(model.config.projector_method)
    inverse = sorted(((new, old) for old, new in keys.items()), key=lambda kv: len(kv[0]), reverse=True)
    out = {}
    for key, value in model.model.multi_modal_projector.state_dict().items():
        new, old = next(((n, o) for n, o in inverse if key.startswith(n)), (None, None))
        if new is None:
            raise StfBenchError(f"projector key {key} has no place in the stage-1 layout {keys}; its projector's "
                                f"checkpoint_keys['original'] must cover every key")
        out[old + key[len(new):]] = value.detach().to("cpu").clone().contiguous()
    return out


def save_projector(model, output_dir: Path) -> Path:
    """`mm_projector.bin` + `config.json` (stage 1)."""
    path = output_dir / PROJECTOR_FILE
    torch.save(projector_state(model), path)
    model.config.save_pretrained(output_dir)
    return path


def projector_file(spec: str | Path) -> Path:
    """`--projector`: a stage-1 output directory or the file itself."""
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / PROJECTOR_FILE
    if not path.is_file():
        raise StfBenchError(f"--projector {spec}: no {PROJECTOR_FILE} there; pass the output directory of "
                            f"`stf-bench train --stage pretrain` or the file")
    return path


def save_model(model, processor, output_dir: Path) -> None:
    """The whole model and its processor (stage 2)."""
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)


def write_provenance(output_dir: Path, record: dict) -> Path:
    """`training.json`: what made the checkpoint (`record`), written atomically (a temp file renamed into place, as
    `stf-bench run` writes its results), so that a checkpoint never carries a half-written provenance. A finetune
    started from a stage-1 output that carries its own record gets it under `pretrain`, so that the checkpoint
    alone says how both stages were made. `record["projector"]` (the stage-1 file as found) is written relative to
    `output_dir` (`../pretrain/mm_projector.bin`: the same wherever the two outputs are moved together, never the
    absolute or working-directory path of the machine that trained) with its SHA-256 (`projector_sha256`), which
    names the weights wherever they go. `stf-bench run` reads it back (`stf_bench.store.ingest.read_training`)."""
    from stf_bench.files import write_files_atomically

    record = dict(record)
    if record.get("projector"):
        stage1 = Path(record["projector"])
        if "pretrain" not in record:
            earlier = read_training(stage1.parent if stage1.is_file() else stage1)
            if earlier is not None:
                record["pretrain"] = earlier
        record["projector"] = Path(os.path.relpath(stage1.resolve(), output_dir.resolve())).as_posix()
        record["projector_sha256"] = hashlib.sha256(stage1.read_bytes()).hexdigest()
    path = output_dir / PROVENANCE_FILE
    write_files_atomically([(path, [json.dumps(record, indent=2, ensure_ascii=False) + "\n"])], output_dir)
    return path
