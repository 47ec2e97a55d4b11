"""`question-keep`: keep the `keep` visual tokens closest to the question's words (a question-aware example).

A training-free method that acts on the projector's outputs (`after_projector`), in the LLM's embedding space, and
reads the question (`reads_question`): stf-bench hands it, per image, the ids of the question's words (each word
tokenized alone, `question_words`), their rows of the LLM's embedding table, and the pad-to-square padding patches
(`VisionContext.question_ids`, `.question_embeds`, `.padding`). Each visual token is scored by its largest cosine
similarity to a word of the question; padding patches are never kept; the `keep` best are kept in their original
order. Without a question (no words) the first `keep` unpadded tokens are kept. Declaring `reads_question` is what
turns off the adapter's visual-token cache and shared prefill for it: its tokens depend on the question.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stf_bench.errors import StfBenchError
from stf_bench.methods import Param, TokenMethod, VisionContext

__all__ = ["QuestionKeep", "question_scores"]


def question_scores(tokens: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
    """(N,) score of each of `tokens` (N, H): its largest cosine similarity to a row of `question` (T, H); with no
    question (T = 0), -position, so that the first tokens rank first."""
    if question.shape[0] == 0:
        return -torch.arange(tokens.shape[0], device=tokens.device, dtype=tokens.dtype)
    return (F.normalize(tokens, dim=-1) @ F.normalize(question.to(tokens.dtype), dim=-1).T).amax(-1)


class QuestionKeep(TokenMethod):
    name = "question-keep"
    summary = "keep the visual tokens closest to the question's words (after the projector)"
    text_conditioned = True
    reads_question = True
    after_projector = True
    params = (Param("keep", 64, int, "visual tokens kept", minimum=1),)

    @classmethod
    def question_words(cls, question: str) -> list[str]:
        """Each whitespace-separated word of the question is tokenized alone (no BOS)."""
        return question.split()

    def check(self) -> None:
        n = self.shape.grid ** 2
        if self.args["keep"] > n:
            raise StfBenchError(f"question-keep: keep={self.args['keep']} is more than the {n} vision tokens; "
                                f"valid: 1..{n}")

    def tokens_out(self, tokens_in: int) -> int:
        return min(self.args["keep"], tokens_in)

    def reduce(self, features: torch.Tensor, ctx: VisionContext) -> torch.Tensor:
        """(B, N, H) projector outputs -> (B, keep, H); static shapes only (the FLOPs count runs it on `meta`)."""
        keep = self.tokens_out(features.shape[1])
        out = []
        for b in range(features.shape[0]):
            question = ctx.question_embeds[b] if ctx.question_embeds else features.new_zeros(0, features.shape[-1])
            scores = question_scores(features[b], question).clone()
            padding = ctx.padding[b] if ctx.padding else []
            if padding and len(padding) <= features.shape[1] - keep:  # never keep padding while enough is left
                scores[padding] = float("-inf")
            out.append(features[b, scores.topk(keep).indices.sort().values])
        return torch.stack(out)
