"""question-keep: keeps the tokens closest to the question's words, in order, never padding; no question: the first."""

import sys
from pathlib import Path

import pytest
import torch

try:
    from stf_question_keep import QuestionKeep, question_scores
except ImportError:  # not pip-installed: import it from this folder (the stf-bench suite runs it so)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from stf_question_keep import QuestionKeep, question_scores

from stf_bench.errors import StfBenchError
from stf_bench.methods import ModelShape, VisionContext


def _tokens() -> torch.Tensor:
    return torch.eye(8)[None].repeat(2, 1, 1)  # (2, 8, 8): token i points along axis i


def test_keeps_the_tokens_its_question_names_in_their_order():
    method = QuestionKeep(ModelShape(), keep=2)
    features = _tokens()
    questions = [torch.eye(8)[[5, 1]], torch.eye(8)[[6, 2]]]  # image 0 asks about axes 5 and 1, image 1 about 6, 2
    ctx = VisionContext(grid=24, question_ids=[torch.tensor([7, 9]), torch.tensor([3, 4])],
                        question_embeds=questions, padding=[[], []])
    out = method.reduce(features, ctx)
    assert torch.equal(out[0], features[0, [1, 5]]) and torch.equal(out[1], features[1, [2, 6]])


def test_padding_is_never_kept_and_no_question_keeps_the_first_tokens():
    method = QuestionKeep(ModelShape(), keep=3)
    ctx = VisionContext(grid=24, question_ids=[torch.tensor([1]), torch.zeros(0, dtype=torch.long)],
                        question_embeds=[torch.eye(8)[[0]], torch.zeros(0, 8)], padding=[[0], [0, 1]])
    out = method.reduce(_tokens(), ctx)
    assert 0 not in out[0].argmax(-1).tolist()  # the question's own token is padding: not kept
    assert out[1].argmax(-1).tolist() == [2, 3, 4]  # no question: the first unpadded tokens
    assert torch.equal(question_scores(torch.eye(3), torch.zeros(0, 3)), -torch.arange(3.0))


def test_declarations_and_impossible_keep():
    assert QuestionKeep.reads_question and QuestionKeep.after_projector and QuestionKeep.text_conditioned
    assert QuestionKeep.question_words("Is the cat black?") == ["Is", "the", "cat", "black?"]
    with pytest.raises(StfBenchError, match="valid: 1..576"):
        QuestionKeep(ModelShape(), keep=577)
