"""LLaVA-1.5's two-stage recipe as defaults, every value a flag, and what it resolves to for one run.

Sources (haotian-liu/LLaVA @ c121f04): `scripts/v1_5/pretrain.sh`, `scripts/v1_5/finetune.sh`, `scripts/zero2.json`,
`scripts/zero3.json`, `llava/train/train.py`; docs/training.md lists each value with its source and the traps of
transformers 5 / DeepSpeed 0.19 (no gradient clipping, per-micro-batch loss averaging).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from stf_bench.errors import StfBenchError

# stage -> LLaVA-1.5's value (pretrain.sh / finetune.sh: 8 GPUs x 32 or 16 per device x 1 accumulation)
STAGE_DEFAULTS: dict[str, dict] = {
    "pretrain": dict(learning_rate=1e-3, global_batch_size=256, per_device_batch_size=32, template="plain",
                     image_aspect_ratio="crop", group_by_modality=False, save_steps=24000),
    "finetune": dict(learning_rate=2e-5, global_batch_size=128, per_device_batch_size=16, template="v1",
                     image_aspect_ratio="pad", group_by_modality=True, save_steps=50000),
}
COMMON_DEFAULTS: dict = dict(epochs=1.0, lr_scheduler="cosine", warmup_ratio=0.03, weight_decay=0.0, max_grad_norm=0.0,
                             model_max_length=2048, gradient_checkpointing=True, bf16="auto", tf32="auto",
                             optim="adamw_torch", seed=42, logging_steps=1, save_total_limit=1, max_steps=-1,
                             dataloader_workers=0)
TEMPLATES = ("plain", "v1")
ASPECTS = ("crop", "pad")
SWITCHES = ("auto", "on", "off")

# LLaVA's scripts/zero2.json and zero3.json, plus the gradient clipping DeepSpeed 0.12.6 defaulted to (none).
_ZERO_COMMON = {
    "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
             "hysteresis": 2, "min_loss_scale": 1},
    "bf16": {"enabled": "auto"},
    "train_micro_batch_size_per_gpu": "auto",
    "train_batch_size": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": 0.0,
}
DEEPSPEED_CONFIGS: dict[str, dict] = {
    "zero2": {**_ZERO_COMMON, "zero_optimization": {
        "stage": 2, "overlap_comm": True, "contiguous_gradients": True, "sub_group_size": 1e9,
        "reduce_bucket_size": "auto"}},
    "zero3": {**_ZERO_COMMON, "zero_optimization": {
        "stage": 3, "overlap_comm": True, "contiguous_gradients": True, "sub_group_size": 1e9,
        "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
        "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": 1e9,
        "stage3_max_reuse_distance": 1e9, "stage3_gather_16bit_weights_on_model_save": True}},
}


@dataclass
class Recipe:
    """Everything that decides how a stage trains; written beside the checkpoint as `training.json`'s `recipe`."""

    stage: str
    learning_rate: float
    global_batch_size: int
    per_device_batch_size: int
    gradient_accumulation_steps: int
    processes: int
    epochs: float
    max_steps: int
    lr_scheduler: str
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    model_max_length: int
    gradient_checkpointing: bool
    bf16: bool
    tf32: bool
    optim: str
    seed: int
    template: str
    image_aspect_ratio: str
    group_by_modality: bool
    loss_averaging: str
    save_steps: int
    save_total_limit: int
    logging_steps: int
    dataloader_workers: int
    deepspeed: dict | None
    unfreeze_vision_tower: bool = False  # LLaVA-NeXT's unfreeze_mm_vision_tower (the paper's Table 13)
    vision_tower_lr: float | None = None  # LLaVA-NeXT's mm_vision_tower_lr; None: the run's learning rate
    projector_lr: float | None = None  # LLaVA's mm_projector_lr; None: the run's learning rate

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def zero_stage(self) -> int:
        """The DeepSpeed ZeRO stage of the run (0: no DeepSpeed, or a config without `zero_optimization`)."""
        return int((self.deepspeed or {}).get("zero_optimization", {}).get("stage", 0))

    @property
    def mixed_precision(self) -> bool:
        """bf16 on, or a DeepSpeed config that turns bf16 or fp16 on explicitly (its `auto` follows `--bf16`)."""
        ds = self.deepspeed or {}
        return self.bf16 or any(ds.get(kind, {}).get("enabled") is True for kind in ("bf16", "fp16"))

    def batch_line(self) -> str:
        """`global batch 256 = 32 per device x 8 accumulation x 1 process`."""
        return (f"global batch {self.global_batch_size} = {self.per_device_batch_size} per device x "
                f"{self.gradient_accumulation_steps} accumulation x {self.processes} "
                f"process{'es' if self.processes != 1 else ''}")


def _stage_default(key: str) -> str:
    return " (pretrain) / ".join(str(STAGE_DEFAULTS[s][key]) for s in STAGE_DEFAULTS) + " (finetune)"


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The recipe flags; defaults that depend on the stage are None here and resolved by `resolve_recipe`."""
    g = parser.add_argument_group("recipe (LLaVA-1.5's by default; docs/training.md)")
    g.add_argument("--learning-rate", type=float, default=None, help=f"peak lr (default {_stage_default('learning_rate')})")
    g.add_argument("--global-batch-size", type=int, default=None,
                   help=f"rows per optimizer step, all processes (default {_stage_default('global_batch_size')})")
    g.add_argument("--per-device-batch-size", type=int, default=None,
                   help=f"rows per forward pass per process (default {_stage_default('per_device_batch_size')}, "
                        f"capped at the global batch / processes); accumulation = global / (per device x processes)")
    g.add_argument("--epochs", type=float, default=COMMON_DEFAULTS["epochs"], help="epochs (default 1)")
    g.add_argument("--max-steps", type=int, default=COMMON_DEFAULTS["max_steps"],
                   help="stop after this many optimizer steps, for a quick try (default -1: the epochs)")
    g.add_argument("--lr-scheduler", default=COMMON_DEFAULTS["lr_scheduler"], help="lr schedule (default cosine)")
    g.add_argument("--warmup-ratio", type=float, default=COMMON_DEFAULTS["warmup_ratio"],
                   help="linear warmup, fraction of the steps (default 0.03)")
    g.add_argument("--weight-decay", type=float, default=COMMON_DEFAULTS["weight_decay"], help="(default 0)")
    g.add_argument("--max-grad-norm", type=float, default=COMMON_DEFAULTS["max_grad_norm"],
                   help="gradient clipping norm; 0 = none, as LLaVA-1.5 trained (default 0)")
    g.add_argument("--model-max-length", type=int, default=COMMON_DEFAULTS["model_max_length"],
                   help="rows are cut to this many tokens (default 2048)")
    g.add_argument("--gradient-checkpointing", default="on", choices=("on", "off"), help="(default on)")
    g.add_argument("--bf16", default="auto", choices=SWITCHES, help="bf16 mixed precision (default auto: where the "
                                                                     "device has it)")
    g.add_argument("--tf32", default="auto", choices=SWITCHES, help="TF32 matmuls (default auto: where the device has "
                                                                     "them)")
    g.add_argument("--optim", default=COMMON_DEFAULTS["optim"], help="optimizer (default adamw_torch, LLaVA's)")
    g.add_argument("--seed", type=int, default=COMMON_DEFAULTS["seed"], help="(default 42)")
    g.add_argument("--template", default=None, choices=TEMPLATES,
                   help=f"conversation template and labels (default {_stage_default('template')})")
    g.add_argument("--image-aspect-ratio", default=None, choices=ASPECTS,
                   help=f"crop: CLIP resize + centre crop; pad: square with the CLIP mean first "
                        f"(default {_stage_default('image_aspect_ratio')})")
    g.add_argument("--group-by-modality", default=None, choices=("on", "off"),
                   help="batches of image rows apart from text-only rows (default off (pretrain) / on (finetune))")
    g.add_argument("--save-steps", type=int, default=None,
                   help=f"checkpoint every N steps, for --resume (default {_stage_default('save_steps')})")
    g.add_argument("--save-total-limit", type=int, default=COMMON_DEFAULTS["save_total_limit"],
                   help="checkpoints kept (default 1)")
    g.add_argument("--logging-steps", type=int, default=COMMON_DEFAULTS["logging_steps"], help="(default 1)")
    g.add_argument("--dataloader-workers", type=int, default=COMMON_DEFAULTS["dataloader_workers"],
                   help="data loading processes (default 0: in the training process)")
    g.add_argument("--unfreeze-vision-tower", action="store_true",
                   help="finetune: train the vision tower too (LLaVA-NeXT's unfreeze_mm_vision_tower; the paper's "
                        "Table 13 'tuning vision encoder'); default off: frozen and run without gradients, as "
                        "LLaVA-1.5")
    g.add_argument("--vision-tower-lr", type=float, default=None,
                   help="the vision tower's own peak lr with --unfreeze-vision-tower (LLaVA-NeXT's "
                        "mm_vision_tower_lr; default: --learning-rate)")
    g.add_argument("--projector-lr", type=float, default=None,
                   help="the projector's own peak lr (LLaVA's mm_projector_lr; default: --learning-rate)")
    g.add_argument("--deepspeed", default=None,
                   help="zero2, zero3 (LLaVA's configs + gradient_clipping 0) or a DeepSpeed JSON file (default: none)")


def _switch(value: str, available: bool) -> bool:
    return available if value == "auto" else value == "on"


def device_has_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def device_has_tf32() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


def deepspeed_config(spec: str | None) -> dict | None:
    """The DeepSpeed config `--deepspeed` names (zero2, zero3 or a JSON file); a StfBenchError when the file does not
    parse or DeepSpeed is not installed, before any model is built."""
    if spec is None:
        return None
    if spec in DEEPSPEED_CONFIGS:
        config = copy.deepcopy(DEEPSPEED_CONFIGS[spec])
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise StfBenchError(f"--deepspeed {spec}: neither zero2, zero3 nor a file; pass one of those")
        try:
            config = json.loads(path.read_text())
        except ValueError as exc:
            raise StfBenchError(f"--deepspeed {path} is not valid JSON ({exc}); fix the file or use zero2/zero3"
                                ) from None
        if not isinstance(config, dict):
            raise StfBenchError(f"--deepspeed {path} holds a JSON {type(config).__name__}, not a DeepSpeed config "
                                f"object")
    if importlib.util.find_spec("deepspeed") is None:
        raise StfBenchError("--deepspeed needs DeepSpeed, which is not installed; install it with `pip install "
                            "deepspeed` (docs/training.md), or drop --deepspeed to train without it")
    return config


def world_size() -> int:
    """Processes of this run: what torchrun / deepspeed / accelerate launch set, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_recipe(args: argparse.Namespace) -> Recipe:
    """The flags with the stage's defaults filled in, the accumulation computed; a StfBenchError for impossible
    values."""
    stage = STAGE_DEFAULTS[args.stage]

    def pick(name: str):
        value = getattr(args, name)
        return stage[name] if value is None else value

    global_batch = pick("global_batch_size")
    processes = world_size()
    per_device = min(pick("per_device_batch_size"), max(global_batch // processes, 1)) \
        if args.per_device_batch_size is None else args.per_device_batch_size
    if global_batch < 1 or per_device < 1 or global_batch % (per_device * processes):
        raise StfBenchError(f"--global-batch-size {global_batch} is not a multiple of --per-device-batch-size "
                            f"{per_device} x {processes} process(es); choose sizes that divide")
    for name in ("epochs", "model_max_length", "logging_steps"):
        if getattr(args, name) <= 0:
            raise StfBenchError(f"--{name.replace('_', '-')} must be positive")
    if not 0 <= args.warmup_ratio < 1:
        raise StfBenchError(f"--warmup-ratio {args.warmup_ratio} must be in [0, 1)")
    save_steps = pick("save_steps")
    if save_steps < 1:
        raise StfBenchError("--save-steps must be at least 1")
    group = stage["group_by_modality"] if args.group_by_modality is None else args.group_by_modality == "on"
    unfreeze, tower_lr = getattr(args, "unfreeze_vision_tower", False), getattr(args, "vision_tower_lr", None)
    if unfreeze and args.stage != "finetune":
        raise StfBenchError("--unfreeze-vision-tower needs --stage finetune: stage 1 writes the projector alone "
                            "(mm_projector.bin), so a tuned vision tower would be lost")
    if tower_lr is not None and not unfreeze:
        raise StfBenchError("--vision-tower-lr sets the lr of a vision tower that trains; add "
                            "--unfreeze-vision-tower or drop it")
    projector_lr = getattr(args, "projector_lr", None)
    for flag, value in (("--vision-tower-lr", tower_lr), ("--projector-lr", projector_lr)):
        if value is not None and value <= 0:
            raise StfBenchError(f"{flag} {value} must be positive")
    return Recipe(
        stage=args.stage, learning_rate=pick("learning_rate"), global_batch_size=global_batch,
        per_device_batch_size=per_device, gradient_accumulation_steps=global_batch // (per_device * processes),
        processes=processes, epochs=args.epochs, max_steps=args.max_steps, lr_scheduler=args.lr_scheduler,
        warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
        model_max_length=args.model_max_length, gradient_checkpointing=args.gradient_checkpointing == "on",
        bf16=_switch(args.bf16, device_has_bf16()), tf32=_switch(args.tf32, device_has_tf32()), optim=args.optim,
        seed=args.seed, template=pick("template"), image_aspect_ratio=pick("image_aspect_ratio"),
        group_by_modality=group, loss_averaging="per micro-batch (LLaVA-1.5 / transformers 4.37)",
        save_steps=save_steps, save_total_limit=args.save_total_limit, logging_steps=args.logging_steps,
        dataloader_workers=args.dataloader_workers, deepspeed=deepspeed_config(args.deepspeed),
        unfreeze_vision_tower=unfreeze, vision_tower_lr=tower_lr if unfreeze else None, projector_lr=projector_lr)


def training_arguments(recipe: Recipe, output_dir: Path):
    """transformers 5's TrainingArguments for the recipe (the renames of docs/training.md applied)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=recipe.per_device_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps, learning_rate=recipe.learning_rate,
        num_train_epochs=recipe.epochs, max_steps=recipe.max_steps, lr_scheduler_type=recipe.lr_scheduler,
        warmup_steps=recipe.warmup_ratio, weight_decay=recipe.weight_decay, max_grad_norm=recipe.max_grad_norm,
        bf16=recipe.bf16, tf32=recipe.tf32 or None, optim=recipe.optim, seed=recipe.seed, data_seed=recipe.seed,
        save_strategy="steps", save_steps=recipe.save_steps, save_total_limit=recipe.save_total_limit,
        logging_steps=recipe.logging_steps, eval_strategy="no", report_to=[], remove_unused_columns=False,
        dataloader_num_workers=recipe.dataloader_workers, average_tokens_across_devices=False,
        deepspeed=recipe.deepspeed, use_cpu=not _cuda(), disable_tqdm=False)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
