"""`export_llava_hf`: what it writes runs in lmms-eval's own `llava_hf` adapter and answers as `stf-bench run` does.

The end-to-end test drives lmms-eval's command line (`python -m lmms_eval --model llava_hf`, its default chat mode)
in a subprocess on an exported tiny model with the project's task files (`stf-bench lmms-tasks`), ingests its
`--log_samples` output with `stf-bench ingest`, and compares every answer with `stf-bench run` on the same
checkpoint, the same pixels (`image_aspect_ratio=resize`: llava-hf's processor resizes and centre-crops, it cannot
pad to square) and the same prompts. lmms-eval's `llava_hf` imports `decord` (in the `test` extra).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stf_bench import load_model
from stf_bench.models.conversation import vicuna_v1
from stf_bench.models.export import export_llava_hf
from stf_bench.store.db import open_store

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("pope", "gqa")  # both stop at end of sequence only: llava_hf ignores a task's `until`
LIMIT = 4


def _input_sensitive_llava_tiny():
    """llava-tiny with the LLM, projector and lm_head redrawn at std 0.3 (fixed seed): the preset's 0.02 init
    answers the same string to every prompt, which would make equal answers prove nothing."""
    model, processor = load_model("llava-tiny")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2 and ("language_model" in name or "projector" in name or "lm_head" in name):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model, processor


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    model, processor = _input_sensitive_llava_tiny()
    return export_llava_hf(model, processor, tmp_path_factory.mktemp("export") / "llava-tiny-hf")


def test_exported_processor_formats_llava_1_5_s_conversation(exported):
    from transformers import AutoProcessor, AutoTokenizer

    processor, tokenizer = AutoProcessor.from_pretrained(exported), AutoTokenizer.from_pretrained(exported)
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it red?\nAnswer."}]}]
    # lmms-eval's llava_hf, chat mode (its default): the processor's template on typed parts, images first
    assert processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == vicuna_v1(
        "Is it red?\nAnswer.")
    # simple mode (llava_hf with is_simple): the tokenizer's template on a string that already holds <image>
    assert tokenizer.apply_chat_template([{"role": "user", "content": "<image>\nIs it red?"}], tokenize=False,
                                         add_generation_prompt=True) == vicuna_v1("<image>\nIs it red?")
    # LLaVA's conv_vicuna_v1 separators over turns: " " after a user turn, "</s>" after an assistant turn
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Yes"}, {"role": "user", "content": "Why?"}]
    assert processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=True) == \
        "Be brief. USER: Hi ASSISTANT: Yes</s>USER: Why? ASSISTANT:"


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{argv[:4]} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_lmms_eval_s_own_llava_hf_answers_as_stf_bench_run(exported, tmp_path):
    cli = [sys.executable, "-m", "stf_bench.cli"]
    db = tmp_path / "store.sqlite"
    _run([*cli, "lmms-tasks", "tasks"], tmp_path)
    lmms = _run([sys.executable, "-m", "lmms_eval", "--model", "llava_hf", "--model_args",
                 f"pretrained={exported},device=cpu,device_map=cpu", "--tasks", ",".join(f"stf_{t}" for t in TASKS),
                 "--include_path", "tasks", "--limit", str(LIMIT), "--output_path", "lmms-out", "--log_samples"],
                tmp_path)
    # lmms-eval exits 0 even when it fails (old main: "No module named 'filelock._api'"): its output must exist
    assert list((tmp_path / "lmms-out").rglob("*_results.json")), f"lmms-eval wrote no results:\n{lmms.stderr[-3000:]}"
    _run([*cli, "ingest", "lmms-out", "--db", str(db)], tmp_path)
    _run([*cli, "run", "--model", str(exported), "--model-args", "image_aspect_ratio=resize", "--tasks",
          ",".join(TASKS), "--limit", str(LIMIT), "--batch-size", "1", "--output-dir", "ours", "--db", str(db),
          "--no-progress", "--format", "json"], tmp_path)

    with open_store(db) as store:
        runs = store.runs()
        assert len(runs) == 2, [r.source_path for r in runs]
        theirs = next(r for r in runs if "lmms-out" in (r.source_path or ""))
        ours = next(r for r in runs if r is not theirs)
        for task in TASKS:
            their_answers = {s.doc_id: s.response for s in store.samples(theirs.id, f"stf_{task}")}
            our_answers = {s.doc_id: s.response for s in store.samples(ours.id, f"stf_{task}")}
            assert sorted(their_answers) == list(range(LIMIT)), (task, sorted(their_answers))
            assert their_answers == our_answers, task
            assert len({json.dumps(a) for a in our_answers.values()}) > 1, f"{task}: one answer to every prompt"
