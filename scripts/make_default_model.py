"""Train the default model of `stf-bench run` (`stf-tiny-trained`) and write its shipped weights.

    .venv/bin/python scripts/make_default_model.py                  # both stages, then copies the weights
    .venv/bin/python scripts/make_default_model.py --work-dir runs/default --no-install

What it runs is `stf-bench train` itself, twice, on the built-in training samples (`--data samples`,
stf_bench/train/samples.py): stage 1 (`pretrain`, the projector alone) and stage 2 (`finetune`, LLM + projector, from
the stage-1 projector), with the recipe flags in STAGES below: this model's recipe, not the paper's. They depart
from LLaVA-1.5's where a tiny model trained from random weights on about a thousand rows needs it: three stage-2
epochs at a learning rate of 3e-3 instead of 2e-5 (the LLM is not a pretrained Vicuna), the projector at 3e-4 in
stage 2 (`--projector-lr`) and gradient clipping at 1.0, batches of 16 and 8 instead of 256 and 128; stage 1 pads
images to square as stage 2 and the evaluation do, so that both stages see the same pixels. Why the projector's own
lr: at 3e-3 its visual tokens grew to a norm of about 580 (text embeddings: 0.3) and lost the colours a linear probe
reads from the stage-1 projector's tokens, and POPE stayed at 50 (docs/training.md, "The default model").
Both stages run from inside `--work-dir` with relative paths, so that each `training.json` records
`--output-dir finetune --projector pretrain` and `../pretrain/mm_projector.bin`, the same on every machine.

One speed-up, exact: the vision tower is frozen and runs without gradients (stf_bench/train/trainer.py), so its output
for an image never changes during training; `CachedTowerForward` computes it once per image and reuses it in later
epochs and in stage 2 (the same numbers, computed once instead of once per epoch), and keeps them in
`{work-dir}/tower-features.pt` for the next run with the same tower weights.

Then the stage-2 `model.safetensors` is copied to stf_bench/models/default/ (DEFAULT_WEIGHTS, float32, about 2 MB)
with its `training.json`; the `stf-tiny-trained` preset loads it. On CPU the same command writes the same weights
(tests/models/test_default_model.py, marked slow, runs it twice with one step a stage and compares the hashes, and
checks that the shipped model scores above the untrained stf-tiny and reads the image). 6 to 14 minutes on 2 shared
CPU cores, as loaded (2026-12-05: stages 1 and 2 40 s + 308 s, and 145 s + 689 s under load).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stf_bench.models.default_model import DEFAULT_PROVENANCE, DEFAULT_WEIGHTS, TRAINED_FROM  # noqa: E402

COMMON = ["--model", TRAINED_FROM, "--data", "samples", "--gradient-checkpointing", "off", "--warmup-ratio", "0",
          "--image-aspect-ratio", "pad", "--save-steps", "100000", "--seed", "42"]
STAGES = {
    "pretrain": ["--stage", "pretrain", "--epochs", "1", "--learning-rate", "1e-3", "--global-batch-size", "16",
                 "--per-device-batch-size", "16"],
    "finetune": ["--stage", "finetune", "--epochs", "3", "--learning-rate", "3e-3", "--projector-lr", "3e-4",
                 "--max-grad-norm", "1.0", "--global-batch-size", "8", "--per-device-batch-size", "8"],
}


def cached_tower_forward():
    """A TrainingForward whose frozen vision tower runs once per distinct image (keyed by its pixels)."""
    import torch

    from stf_bench.train.trainer import TrainingForward

    class CachedTowerForward(TrainingForward):
        cache: dict[str, torch.Tensor] = {}

        def visual(self, pixel_values: torch.Tensor) -> torch.Tensor:
            inner = self.llava.model
            keys = [hashlib.sha256(p.contiguous().numpy().tobytes()).hexdigest() for p in pixel_values]
            todo = [i for i, k in enumerate(keys) if k not in self.cache]
            if todo:
                with torch.no_grad():
                    dtype = inner.vision_tower.get_input_embeddings().weight.dtype
                    features = inner.vision_features(pixel_values[todo].to(dtype))
                for i, f in zip(todo, features):
                    self.cache[keys[i]] = f.clone()
            return inner.multi_modal_projector(torch.stack([self.cache[k] for k in keys]))

    return CachedTowerForward


def train(work: Path, stage_args: dict[str, list[str]], skip_pretrain: bool = False) -> Path:
    """Both stages into `work/pretrain` and `work/finetune` (stage 2 only, from the stage 1 already in `work`, if
    `skip_pretrain`); returns the stage-2 directory."""
    import torch

    import stf_bench.train.trainer as trainer_module
    from stf_bench.cli import main as stf_bench

    forward = cached_tower_forward()
    trainer_module.TrainingForward = forward  # what build_trainer instantiates (it imports it at call time)
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    features, tower = work / "tower-features.pt", tower_digest()
    if features.is_file():
        saved = torch.load(features, weights_only=True)
        forward.cache.update(saved["features"] if saved.get("tower") == tower else {})
    # Run from inside `work` with relative paths: the commands and paths each training.json records are then the
    # same on every machine (`--output-dir finetune --projector pretrain`, projector `../pretrain/mm_projector.bin`).
    with contextlib.chdir(work):
        for stage, extra in (("pretrain", []), ("finetune", ["--projector", "pretrain"])):
            if stage == "pretrain" and skip_pretrain:
                continue
            argv = ["train", *COMMON, *stage_args[stage], *extra, "--output-dir", stage, "--overwrite"]
            print(f"(in {work}) stf-bench " + " ".join(argv), file=sys.stderr)
            start = time.monotonic()
            code = stf_bench(argv)
            if code:
                raise SystemExit(code)
            print(f"{stage}: {time.monotonic() - start:.0f} s", file=sys.stderr)
            torch.save({"tower": tower, "features": forward.cache}, features)
    return work / "finetune"


def tower_digest() -> str:
    """SHA-256 of the trained preset's vision tower weights: the cached features belong to these."""
    from stf_bench.models import load_model

    model, _ = load_model(TRAINED_FROM, seed=42)
    digest = hashlib.sha256()
    for key, value in sorted(model.model.vision_tower.state_dict().items()):
        digest.update(key.encode() + value.contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=str(ROOT / "runs" / "default-model"),
                        help="where the two stages write (default runs/default-model)")
    parser.add_argument("--no-install", action="store_true",
                        help=f"train only; do not copy the weights to {DEFAULT_WEIGHTS.relative_to(ROOT)}")
    parser.add_argument("--max-steps", type=int, default=None, help="stop each stage after N steps (a quick try)")
    parser.add_argument("--skip-pretrain", action="store_true",
                        help="run stage 2 only, from the stage 1 an earlier run of this command left in --work-dir")
    args = parser.parse_args(argv)
    stage_args = {s: [*a, *(["--max-steps", str(args.max_steps)] if args.max_steps else [])] for s, a in STAGES.items()}
    out = train(Path(args.work_dir), stage_args, args.skip_pretrain)
    weights = out / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    print(f"weights: {weights} ({weights.stat().st_size:,} bytes, sha256 {digest})")
    if not args.no_install:
        DEFAULT_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, DEFAULT_WEIGHTS)
        record = json.loads((out / "training.json").read_text())
        record["made_by"] = "python scripts/make_default_model.py"  # the documented command that ran both stages
        DEFAULT_PROVENANCE.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        print(f"installed {DEFAULT_WEIGHTS} and {DEFAULT_PROVENANCE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
