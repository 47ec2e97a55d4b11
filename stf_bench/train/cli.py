"""`stf-bench train`: one stage of LLaVA-1.5's recipe (pretrain: the projector; finetune: LLM + projector) on a preset.

Everything that can be refused is checked before a model is built: the stage, the recipe values, DeepSpeed, the
model name, every data row and image, the output directory. `--dump-examples FILE` writes the labels of every row
and stops, without loading any weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from stf_bench.errors import StfBenchError
from stf_bench.train.data import STAGES
from stf_bench.train.recipe import add_recipe_arguments

INITS = ("base", "random")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `stf-bench train`."""
    parser.add_argument("--stage", default=None, help="pretrain (stage 1: projector) or finetune (stage 2: LLM + "
                                                      "projector); required")
    parser.add_argument("--model", default="stf-tiny", help="preset to train (default stf-tiny; `stf-bench models`)")
    parser.add_argument("--model-args", default="", help="k=v,... preset overrides, e.g. k=4,e=8,mbtf_blocks=16")
    parser.add_argument("--init", default="base", choices=INITS,
                        help="base (default): a full-size preset starts from its LLM's and CLIP ViT-L/14-336's hub "
                             "weights (lmsys/vicuna-7b-v1.5, openai/clip-vit-large-patch14-336, ...) and a random "
                             "projector, as LLaVA does; random: random weights (wiring runs, benchmarks); tiny "
                             "presets always start from random weights")
    parser.add_argument("--random-weights", action="store_true",
                        help="the same as --init random (the flag `stf-bench latency` and `run` take)")
    parser.add_argument("--projector", default=None,
                        help="finetune: the stage-1 output directory (or its mm_projector.bin) to start from")
    parser.add_argument("--data", default="samples", help="samples (default: small built-in sets) or hub "
                                                          "(LLaVA-Pretrain / LLaVA-Instruct)")
    parser.add_argument("--data-path", default=None, help="a LLaVA-format JSON file (overrides --data)")
    parser.add_argument("--image-folder", default=None, help="the folder the rows' `image` paths are relative to")
    parser.add_argument("--skip-missing-images", action="store_true",
                        help="skip (and count) rows whose image file is missing instead of stopping")
    parser.add_argument("--output-dir", default=None, help="where the checkpoint goes; required unless "
                                                           "--dump-examples")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its last "
                                                              "checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="start over in an --output-dir that holds a run")
    parser.add_argument("--dump-examples", default=None, metavar="FILE",
                        help="write one JSON line per row ({id, input_ids, labels}; image = -200, ignored = -100) "
                             "and stop; no weights are loaded")
    add_recipe_arguments(parser)


def _check_model(args: argparse.Namespace) -> dict:
    """The preset overrides; a StfBenchError for a model train cannot start from."""
    from stf_bench.args import parse_model_args
    from stf_bench.models.presets import PRESETS, check_model_name, split_overrides

    check_model_name(args.model)
    if args.model not in PRESETS:
        raise StfBenchError(f"--model {args.model}: stf-bench train starts from a preset (`stf-bench models`); "
                            f"continuing from a checkpoint directory is not supported yet")
    overrides = parse_model_args(args.model_args)
    split_overrides(overrides)  # unknown keys named now
    return overrides


def prepare(args: argparse.Namespace) -> tuple:
    """(recipe, preset overrides, data) of the flags, every refusal raised before a model is built."""
    from stf_bench.train.data import load, resolve
    from stf_bench.train.recipe import resolve_recipe

    if args.stage not in STAGES:
        raise StfBenchError(f"unknown or missing --stage {args.stage!r}; use --stage pretrain or --stage finetune")
    recipe = resolve_recipe(args)
    overrides = _check_model(args)
    if args.projector is not None and args.stage != "finetune":
        raise StfBenchError("--projector is the stage-1 result a finetune starts from; drop it for --stage pretrain")
    json_path, image_folder, source = resolve(args.stage, args.data, args.data_path, args.image_folder)
    return recipe, overrides, load(recipe.template, json_path, image_folder, source, args.skip_missing_images)


def run(args: argparse.Namespace) -> int:
    recipe, overrides, data = prepare(args)
    if args.dump_examples is None and args.output_dir is None:
        raise StfBenchError("--output-dir is required (where the checkpoint goes), unless --dump-examples FILE")
    if args.dump_examples is not None:
        return _dump(args, recipe, data, overrides)
    if _from_base(args):
        from stf_bench.models.loading import base_weight_dirs

        base_weight_dirs(args.model)  # offline and not cached: one line naming the repos, before anything is written
    return _train(args, recipe, data, overrides)


def _from_base(args: argparse.Namespace) -> bool:
    """Whether the run starts from the preset's base weights (full-size presets unless --init random)."""
    from stf_bench.models.presets import get_preset

    return args.init == "base" and not args.random_weights and not get_preset(args.model).tiny


def _tokenization_note(processor) -> str:
    """What built the ids, for the dump's message and training.json."""
    if processor.slow_tokenizer is not None:
        return (f"official: LLaVA's tokenizer_image_token with transformers 4.37.2's slow LlamaTokenizer on the "
                f"checkpoint's tokenizer.model (legacy={processor.slow_tokenizer.legacy})")
    return "official rule (LLaVA's tokenizer_image_token) on the preset's byte-level tokenizer (no tokenizer.model)"


def _examples(data, recipe, processor):
    from stf_bench.train.labels import build_example, tokenization

    tok = tokenization(processor, recipe.model_max_length)
    return [build_example(row, recipe.template, tok) for row in data.rows], tok


def _dump(args, recipe, data, overrides: dict) -> int:
    """`--dump-examples`: the processor of a model on `meta` (no weights), the labels, one JSON line per row."""
    from stf_bench.models import load_model

    _, processor = load_model(args.model, random_weights=True, device="meta", **overrides)
    examples, _ = _examples(data, recipe, processor)
    out = Path(args.dump_examples).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")
    masked = sum(ex.masked for ex in examples)
    print(f"wrote {len(examples)} rows to {out} ({recipe.template} template, {masked} masked entirely by the "
          f"tokenization-mismatch rule, {len(data.skipped)} skipped for missing images); ids before image "
          f"expansion, as LLaVA's preprocess() returns them (image rows are cut to --model-max-length only by the "
          f"collator); tokenization: {_tokenization_note(processor)}")
    return 0


@dataclass
class Built:
    """What `build_trainer` made: the Trainer and what `_train` reports and saves after it."""

    trainer: object
    model: object
    processor: object
    examples: list
    masked: int
    trainable: int
    projector: Path | None


def build_trainer(args, recipe, data, overrides: dict, out: Path, **load_kwargs) -> Built:
    """The model, its stage's trainable parameters and the StageTrainer of one run, as `stf-bench train` builds them
    (benchmarks/train_step.py times its steps). `load_kwargs` go to `load_model` (`dtype`, `device`)."""
    from stf_bench.errors import writable_dir
    from stf_bench.models import load_model
    from stf_bench.models.loading import load_base_model, load_projector_weights
    from stf_bench.train.batches import Collator, LlavaRows
    from stf_bench.train.outputs import projector_file
    from stf_bench.train.recipe import training_arguments
    from stf_bench.train.trainer import StageTrainer, TrainingForward, numel, partitioned_build, set_trainable

    projector = projector_file(args.projector) if args.projector is not None else None
    # The TrainingArguments first: under ZeRO-3 their DeepSpeed config (transformers' HfDeepSpeedConfig) is what
    # the model is built partitioned with, as LLaVA's train.py makes them before from_pretrained.
    training_args = training_arguments(recipe, out)
    build = partitioned_build(recipe.zero_stage == 3)
    if _from_base(args):
        model, processor = load_base_model(args.model, seed=recipe.seed, build_context=build, **load_kwargs,
                                           **overrides)
    else:
        with build:
            model, processor = load_model(args.model, random_weights=True, seed=recipe.seed, **load_kwargs,
                                          **overrides)
    if projector is not None:
        load_projector_weights(model, projector)  # a mismatch names the key and both shapes
    elif args.stage == "finetune" and _rank_zero():
        print("note: finetuning without a stage-1 projector (--projector): the projector starts from random weights",
              file=sys.stderr)
    writable_dir(out)
    examples, tok = _examples(data, recipe, processor)
    set_trainable(model, args.stage, recipe.unfreeze_vision_tower)
    model.config.use_cache = False
    if recipe.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    dataset = LlavaRows(data.rows, examples, data.image_folder, processor, recipe.image_aspect_ratio == "pad")
    trainer = StageTrainer(
        model=TrainingForward(model, tok.pad_id, recipe.model_max_length, dummy_image=recipe.zero_stage == 3),
        args=training_args,
        train_dataset=dataset, data_collator=Collator(tok.pad_id, recipe.model_max_length),
        group_by_modality=recipe.group_by_modality, vision_tower_lr=recipe.vision_tower_lr,
        projector_lr=recipe.projector_lr)
    return Built(trainer, model, processor, examples, sum(ex.masked for ex in examples),
                 sum(numel(p) for p in model.parameters() if p.requires_grad), projector)


def _train(args, recipe, data, overrides: dict) -> int:
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from stf_bench.train.trainer import single_process_group

    accelerate_env = {k: v for k, v in os.environ.items() if k.startswith("ACCELERATE_")}
    with single_process_group(recipe.deepspeed is not None):
        try:
            return _train_stage(args, recipe, data, overrides)
        finally:  # what a DeepSpeed run leaves for the process (tests run several): later runs must not inherit it
            unset_hf_deepspeed_config()  # its ZeRO-3 config would put later model builds under zero.Init
            for key in [k for k in os.environ if k.startswith("ACCELERATE_")]:  # ACCELERATE_USE_DEEPSPEED=true
                if key not in accelerate_env:
                    del os.environ[key]
            os.environ.update(accelerate_env)


def _train_stage(args, recipe, data, overrides: dict) -> int:
    import torch

    from stf_bench import __version__
    from stf_bench.train.outputs import prepare_output_dir, save_model, save_projector, write_provenance
    from stf_bench.train.trainer import gathered, numel

    out = Path(args.output_dir).expanduser()
    resume_from = prepare_output_dir(out, args.resume, args.overwrite)
    built = build_trainer(args, recipe, data, overrides, out)
    if _rank_zero():  # after every refusal (a projector that does not fit), before training
        print(memory_line(recipe, sum(numel(p) for p in built.model.parameters()), built.trainable), file=sys.stderr)
    trainer, model, processor, examples, masked, trainable, projector = (
        built.trainer, built.model, built.processor, built.examples, built.masked, built.trainable, built.projector)
    main = trainer.is_world_process_zero()  # with several processes, the first one alone writes and reports
    if main:
        print(f"stf-bench train: {args.stage} {args.model} on {data.source}: {len(examples)} rows ({masked} masked "
              f"entirely by the tokenization-mismatch rule, {len(data.skipped)} skipped); {recipe.batch_line()}; "
              f"lr {recipe.learning_rate}; {trainable:,} trainable parameters"
              + (f"; model built split over {trainer.args.world_size} process(es) by ZeRO-3's zero.Init"
                 if any(hasattr(p, "ds_id") for p in model.parameters()) else ""), file=sys.stderr)
    torch.manual_seed(recipe.seed)
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    model.config.image_aspect_ratio = "pad" if recipe.image_aspect_ratio == "pad" else "square"
    processor.pad_to_square = recipe.image_aspect_ratio == "pad"
    model.config.use_cache = True
    if args.stage == "finetune" and recipe.gradient_checkpointing:
        model.activation_checkpointing_disable()
    saved = model.model.multi_modal_projector if args.stage == "pretrain" else model
    with gathered(saved.parameters()):  # ZeRO-3: every process gathers the whole weights, the first one writes them
        if not main:
            return 0
        if args.stage == "pretrain":
            written = save_projector(model, out)
        else:
            save_model(model, processor, out)
            written = out
    trainer.save_state()
    write_provenance(out, {
        "stage": args.stage, "preset": args.model, "model_args": overrides, "projector": str(projector or ""),
        "recipe": recipe.to_json(), "data": {"source": data.source, "rows": len(examples), "masked_rows": masked,
                                             "skipped_rows": len(data.skipped)},
        "steps": trainer.state.global_step, "train_loss": result.training_loss, "stf_bench_version": __version__,
        "tokenization": _tokenization_note(processor), "command": command_line(args)})
    print(f"stf-bench train: {trainer.state.global_step} steps, loss {result.training_loss:.4f}; wrote {written} "
          f"(provenance in {out / 'training.json'}); {masked} rows masked entirely, {len(data.skipped)} skipped",
          file=sys.stderr)
    return 0


def command_line(args: argparse.Namespace) -> list[str]:
    """The `stf-bench train` command this run's flags spell (every flag that differs from its default, in the
    parser's order): what `training.json` records as `command`. Not `sys.argv`, which is the launcher's or the
    calling script's when `train` runs in-process (scripts/make_default_model.py recorded its own argv)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    line = ["stf-bench", "train"]
    for action in parser._actions:
        value = getattr(args, action.dest, action.default)
        if not action.option_strings or value == action.default:
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            line.append(flag)
        else:
            line += [flag, str(value)]
    return line


def memory_line(recipe, total: int, trainable: int) -> str:
    """The estimated model-state memory per process of this run (stf_bench/train/memory.py) for its ZeRO stage and
    process count, from the parameter counts of the built model (`total`, `trainable` in this stage)."""
    from stf_bench.train.memory import estimate

    return estimate(total, trainable, zero_stage=recipe.zero_stage, processes=recipe.processes,
                    mixed_precision=recipe.mixed_precision, deepspeed=recipe.deepspeed is not None).line()


def _rank_zero() -> bool:
    """Whether this is the first process of the run (or the only one), before the Trainer says so."""
    return os.environ.get("RANK", "0") == "0"
