"""What each stage trains, how images enter the sequence, and LLaVA-1.5's per-micro-batch loss averaging."""

from __future__ import annotations

import contextlib

import pytest
import torch

from stf_bench.models import load_model
from stf_bench.train.labels import IGNORE, IMAGE_INDEX
from stf_bench.train.trainer import StageTrainer, TrainingForward, set_trainable


@pytest.fixture(scope="module")
def llava():
    model, _ = load_model("llava-tiny")
    return model


def _trainable(model) -> set[str]:
    return {n.split(".")[1] if n.startswith("model.") else n.split(".")[0]
            for n, p in model.named_parameters() if p.requires_grad}


def test_stage_1_trains_the_projector_alone_and_stage_2_never_the_vision_tower(llava):
    set_trainable(llava, "pretrain")
    assert _trainable(llava) == {"multi_modal_projector"}
    set_trainable(llava, "finetune")
    assert _trainable(llava) == {"multi_modal_projector", "language_model", "lm_head"}
    set_trainable(llava, "finetune", unfreeze_vision_tower=True)  # --unfreeze-vision-tower
    assert _trainable(llava) == {"multi_modal_projector", "language_model", "lm_head", "vision_tower"}
    set_trainable(llava, "pretrain", unfreeze_vision_tower=True)
    assert _trainable(llava) == {"multi_modal_projector"}


def test_a_trained_vision_tower_gets_gradients_and_the_tower_and_projector_their_own_lr(llava, tmp_path):
    from transformers import TrainingArguments

    set_trainable(llava, "finetune", unfreeze_vision_tower=True)
    forward = TrainingForward(llava, pad_id=0, max_length=2048)
    size = llava.config.vision_config.image_size
    forward.visual(torch.rand(1, 3, size, size)).sum().backward()
    tower = llava.model.vision_tower  # its blocks up to the one read (the penultimate) get gradients
    assert all(p.grad is not None for p in [*tower.embeddings.parameters(), *tower.encoder.layers[0].parameters()])
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, report_to=[], use_cpu=True)
    optimizer = StageTrainer(model=forward, args=args, vision_tower_lr=1e-5, projector_lr=1e-4).create_optimizer()
    part = {id(p): "tower" for p in tower.parameters()}
    part.update({id(p): "projector" for p in llava.model.multi_modal_projector.parameters()})
    lrs = {(part.get(id(p), "llm"), group["lr"]) for group in optimizer.param_groups for p in group["params"]}
    assert lrs == {("tower", 1e-5), ("projector", 1e-4), ("llm", 1e-3)}  # LLaVA's mm_projector_lr, LLaVA-NeXT's
    assert sum(len(g["params"]) for g in optimizer.param_groups) == \
        sum(1 for p in llava.parameters() if p.requires_grad)
    llava.zero_grad(set_to_none=True)
    set_trainable(llava, "finetune")


def test_visual_tokens_replace_the_image_index_and_are_never_labels(llava):
    forward = TrainingForward(llava, pad_id=0, max_length=2048)
    n, h = llava.num_visual_tokens, llava.config.text_config.hidden_size
    visual = torch.randn(1, n, h)
    ids = torch.tensor([[1, 9, IMAGE_INDEX, 10, 11], [1, 12, 13, 0, 0]])
    labels = torch.tensor([[IGNORE, IGNORE, IGNORE, 10, 11], [IGNORE, 12, 13, IGNORE, IGNORE]])
    embeds, mask, out = forward.splice(ids, labels, visual, torch.tensor([0]))
    assert embeds.shape == (2, 4 + n, h)
    assert torch.equal(embeds[0, 2:2 + n], visual[0])
    assert out[0].tolist() == [IGNORE, IGNORE] + [IGNORE] * n + [10, 11]
    assert mask[1].tolist() == [1, 1, 1] + [0] * (1 + n)  # padding stripped, then the row padded on the right
    embed = llava.get_input_embeddings()
    assert torch.equal(embeds[1, :3], embed(torch.tensor([1, 12, 13])))
    cut, _, cut_labels = TrainingForward(llava, pad_id=0, max_length=5).splice(ids, labels, visual, torch.tensor([0]))
    assert cut.shape[1] == 5 and cut_labels[0].tolist() == [IGNORE] * 5  # cut inside the image, as LLaVA does


def test_each_row_keeps_its_own_image_when_another_row_lost_its_index(llava):
    """Row 0's -200 was cut off by the collator; row 1's image must still be row 1's, not row 0's."""
    forward = TrainingForward(llava, pad_id=0, max_length=2048)
    n, h = llava.num_visual_tokens, llava.config.text_config.hidden_size
    visual = torch.randn(2, n, h)
    ids = torch.tensor([[1, 9, 10], [1, IMAGE_INDEX, 11]])
    labels = torch.tensor([[IGNORE, 9, 10], [IGNORE, IGNORE, 11]])
    embeds, _, _ = forward.splice(ids, labels, visual, torch.tensor([0, 1]))
    assert torch.equal(embeds[1, 1:1 + n], visual[1])


def test_loss_is_each_micro_batch_mean_divided_by_the_accumulation_steps(llava, tmp_path):
    """transformers 5 would divide the summed token losses by the accumulated batch's label count
    (num_items_in_batch); LLaVA-1.5 (transformers 4.37) averaged each micro-batch, then divided by the steps."""
    from transformers import TrainingArguments

    set_trainable(llava, "finetune")
    forward = TrainingForward(llava, pad_id=0, max_length=2048)
    args = TrainingArguments(output_dir=str(tmp_path), gradient_accumulation_steps=2, report_to=[], use_cpu=True,
                             average_tokens_across_devices=False)
    trainer = StageTrainer(model=forward, args=args, train_dataset=[])
    trainer.current_gradient_accumulation_steps = 2
    batch = {"input_ids": torch.tensor([[1, 20, 21, 22, 23]]), "labels": torch.tensor([[IGNORE, IGNORE, 21, 22, 23]])}
    with torch.no_grad():
        mean = forward(**batch).loss
    step_loss = trainer.training_step(forward, dict(batch), num_items_in_batch=torch.tensor(100))
    assert torch.allclose(step_loss, mean / 2)
    llava.zero_grad(set_to_none=True)


def test_a_micro_batch_of_masked_rows_gives_a_zero_loss_not_nan(llava):
    """LLaVA's mean over no label token is NaN, which would poison every weight through the optimizer."""
    forward = TrainingForward(llava, pad_id=0, max_length=2048)
    out = forward(torch.tensor([[1, 20, 21]]), torch.tensor([[IGNORE, IGNORE, IGNORE]]))
    assert out.loss.item() == 0.0
    out.loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in llava.parameters())
    llava.zero_grad(set_to_none=True)


def test_under_zero3_a_text_only_micro_batch_still_runs_the_projector_on_a_zero_image(llava):
    """ZeRO-3 gathers each module's weights collectively: a process whose micro-batch is text-only must run the vision
    tower and projector too (LLaVA gives such rows a zero image), without changing the loss; the projector gets a
    zero gradient, as in LLaVA. The embedding is called once per micro-batch whatever the rows hold."""
    set_trainable(llava, "finetune")
    batch = (torch.tensor([[1, 20, 21, 22]]), torch.tensor([[IGNORE, IGNORE, 21, 22]]))
    calls = []
    hooks = [llava.model.multi_modal_projector.register_forward_hook(lambda *a: calls.append("projector")),
             llava.get_input_embeddings().register_forward_hook(lambda *a: calls.append("embed"))]
    try:
        plain = TrainingForward(llava, pad_id=0, max_length=2048)(*batch).loss
        assert calls == ["embed"]
        calls.clear()
        dummy = TrainingForward(llava, pad_id=0, max_length=2048, dummy_image=True)(*batch).loss
        assert calls == ["projector", "embed"]
        calls.clear()
        n = llava.num_visual_tokens
        ids = torch.tensor([[1, IMAGE_INDEX, 20, 21], [1, 9, IMAGE_INDEX, 22]])
        pixels = torch.zeros(2, 3, 336, 336)
        TrainingForward(llava, pad_id=0, max_length=2048)(ids, torch.full_like(ids, IGNORE), pixels,
                                                          torch.tensor([0, 1]))
        assert calls == ["projector", "embed"] and n > 0  # two image rows, three text pieces: one embedding call
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.equal(plain, dummy)
    dummy.backward()
    grads = [p.grad for p in llava.model.multi_modal_projector.parameters()]
    assert all(g is not None and not g.any() for g in grads)
    llava.zero_grad(set_to_none=True)


def test_gathered_does_nothing_without_zero3_and_the_group_of_one_restores_the_environment(llava, monkeypatch):
    import os

    import torch.distributed as dist

    from stf_bench.train.trainer import LAUNCHER_ENV, gathered, single_process_group

    before = [p.data_ptr() for p in llava.parameters()]
    with gathered(llava.parameters()):
        assert [p.data_ptr() for p in llava.parameters()] == before
    for key in LAUNCHER_ENV:
        monkeypatch.delenv(key, raising=False)
    with single_process_group(False):
        assert "WORLD_SIZE" not in os.environ  # no DeepSpeed: nothing to do
    for _ in range(2):  # the second time reuses the group (DeepSpeed caches it)
        with single_process_group(True):
            assert dist.is_initialized() and dist.get_world_size() == 1 and dist.get_backend() == "gloo"
            assert os.environ["RANK"] == "0" and os.environ["WORLD_SIZE"] == "1" and os.environ["LOCAL_RANK"] == "0"
        assert not any(k in os.environ for k in LAUNCHER_ENV)  # later code sees no launcher
    monkeypatch.setenv("WORLD_SIZE", "2")
    with single_process_group(True):
        assert "RANK" not in os.environ  # a launcher's run: its variables and group are the launcher's


@contextlib.contextmanager
def _zero3(tmp_path):
    """A one-process gloo group with the TrainingArguments of `--deepspeed zero3` made (transformers' HfDeepSpeedConfig
    set, as `build_trainer` makes them before the model); undone after (the config and ACCELERATE_ variables: with it
    set, every later build would be partly under zero.Init)."""
    import os

    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

    from stf_bench.train.recipe import DEEPSPEED_CONFIGS
    from stf_bench.train.trainer import LAUNCHER_ENV, single_process_group

    assert not any(k in os.environ for k in LAUNCHER_ENV)
    env = dict(os.environ)
    with single_process_group(True):
        args = TrainingArguments(output_dir=str(tmp_path / "out"), deepspeed=DEEPSPEED_CONFIGS["zero3"], use_cpu=True,
                                 report_to=[])
        assert is_deepspeed_zero3_enabled()
        try:
            yield args
        finally:
            unset_hf_deepspeed_config()
            for key in set(os.environ) - set(env):
                del os.environ[key]
            os.environ.update(env)


def _whole(model) -> dict[str, torch.Tensor]:
    """Every tensor of a (possibly ZeRO-3 partitioned) model, whole."""
    from stf_bench.train.trainer import gathered

    with gathered(model.parameters()):
        return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["llava-tiny", "stf-tiny", "stf-tiny-trained"])
def test_under_zero3_the_model_is_built_partitioned_with_the_weights_of_the_plain_build(name, tmp_path):
    """`partitioned_build` (train --deepspeed zero3): every parameter is split by deepspeed.zero.Init as it is built (an
    empty tensor here, its size in `ds_numel`), and gathered it equals the plain build of the same seed bit for bit:
    random weights (llava-tiny, stf-tiny: the constructors' draws and each post_init in the plain order) and shipped
    ones (stf-tiny-trained, written through gathered parameters). A stage-1 projector file loads into it too."""
    from stf_bench.train.outputs import save_projector
    from stf_bench.train.trainer import partitioned_build

    plain, _ = load_model(name, random_weights=True, seed=5)
    other, _ = load_model(name, random_weights=True, seed=6)
    save_projector(other, tmp_path)
    with _zero3(tmp_path):
        with partitioned_build(True):
            model, _ = load_model(name, random_weights=True, seed=5)
        _check_partitioned(model, plain, other, tmp_path)


def _check_partitioned(model, plain, other, tmp_path) -> None:
    from stf_bench.models.loading import load_projector_weights
    from stf_bench.train.trainer import numel

    params = list(model.parameters())
    assert all(hasattr(p, "ds_id") and p.numel() == 0 for p in params)
    assert sum(numel(p) for p in params) == sum(p.numel() for p in plain.parameters())
    ours, theirs = _whole(model), plain.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs), [k for k in theirs if not torch.equal(ours[k], theirs[k])]
    load_projector_weights(model, tmp_path / "mm_projector.bin")
    ours, theirs = _whole(model), other.state_dict()
    projector = [k for k in theirs if k.startswith("model.multi_modal_projector.")]
    assert projector and all(torch.equal(ours[k], theirs[k]) for k in projector)
    assert torch.equal(ours["lm_head.weight"], plain.state_dict()["lm_head.weight"])  # the rest untouched


def test_under_zero3_the_base_weights_are_written_into_the_partitioned_model(tmp_path, monkeypatch):
    """`load_base_model` with `partitioned_build` (train --deepspeed zero3 on a full-size preset, here llava-tiny's
    shapes): the LLM and vision tower are the base checkpoints' (written one gathered parameter at a time), the
    projector the seeded random one of the plain build; the model stays split."""
    from pathlib import Path

    from stf_bench.models import loading
    from stf_bench.train.trainer import partitioned_build

    source = load_model("llava-tiny", random_weights=True, seed=6)[0].state_dict()
    plain = load_model("llava-tiny", random_weights=True, seed=5)[0].state_dict()
    llm = {k.replace("model.language_model.", "model.", 1): v for k, v in source.items()
           if k.startswith(("model.language_model.", "lm_head."))}
    clip = {k.replace("model.vision_tower.", "vision_model.", 1): v for k, v in source.items()
            if k.startswith("model.vision_tower.")}
    monkeypatch.setattr(loading, "base_weight_dirs", lambda name: (Path("llm"), Path("clip")))
    monkeypatch.setattr(loading, "read_state_dict", lambda directory: llm if directory.name == "llm" else clip)
    with _zero3(tmp_path):
        model, _ = loading.load_base_model("llava-tiny", seed=5, build_context=partitioned_build(True))
        assert all(hasattr(p, "ds_id") and p.numel() == 0 for p in model.parameters())
        ours = _whole(model)
    assert ours.keys() == source.keys()
    for key, value in ours.items():
        expected = plain[key] if key.startswith("model.multi_modal_projector.") else source[key]
        assert torch.equal(value, expected), key
    assert not torch.equal(ours["lm_head.weight"], plain["lm_head.weight"])  # the base weights did replace them
