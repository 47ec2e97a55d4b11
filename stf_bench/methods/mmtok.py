"""`mmtok`: MMTok (Dong et al., 2025): keep the projector outputs that best cover the question and the image.

Follows the authors' code, Ironieser/MMTok at commit d1522cd (facts carried over, code our own):

- where: after the projector, before the LLM (`mmtok/llava/clip_encoder_mmtok.py`, `CLIPVisionTower_MMTok.forward`:
  CLIP's penultimate hidden states without CLS go through `mm_projector`, then `apply_selection`);
- the question: the user's text after `<image>\\n` (`clip_encoder_mmtok.py`), with LLaVA's answer-format prompts
  removed and the stop words of `NON_VISUAL_WORDS` dropped (`mmtok/core/text_processor.py`,
  `extract_keywords_simple`; if every word is a stop word the text is kept), each remaining word tokenized alone
  by the LLM's tokenizer without BOS and embedded with the LLM's own embedding table
  (`mmtok/core/mmtok_core.py`, `_encode_text_with_token_pooling`: `is_split_into_words=True`, `embed_tokens`);
- the criterion (`mmtok/core/semantic_selector.py`, `mm_coverage_selection`): with L2-normalised rows,
  P = softmax(text . projected^T / 0.02, over tokens) / m (m question tokens) and Q = softmax(clip . clip^T / 0.2,
  over tokens) / n, Combined = [P; 0.5 Q]; greedy maximum coverage (`greedy_merged_jit_kernel`): at each step the
  token with the largest sum over rows of max(0, Combined - best so far) is taken (first index on ties), padding
  patches and taken tokens excluded; the `k` taken are sorted, so kept tokens stay in spatial order and exactly
  `k` come out (all tokens when there are no more than `k`);
- settings (`mmtok/llava/llava_inject.py`, `mmtok()`): alpha 0.5, text temperature 0.02, vision temperature 0.2;
  the published rows differ only in `target_vision_tokens` (64, 128, 192: `PRESETS`);
- padding: for LLaVA-1.5 (pad-to-square), patches wholly inside the padding are never chosen
  (`mmtok/llava/patch_llava.py`, `calculate_padding_patch_indices(include_overlap=False)`; here
  `stf_bench.methods.base.padding_patches`, applied when the model pads to square and the image size is known).

One deviation (docs/methods.md): when the image has fewer non-padding patches than `tokens`, the reference's argmax
over an all -inf row repeats index 0; here the padding exclusion is then dropped, so `tokens` distinct patches are
kept.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from stf_bench.errors import StfBenchError
from stf_bench.methods.base import Param, TokenMethod, VisionContext
from stf_bench.methods.registry import register

if TYPE_CHECKING:
    import torch

# The published LLaVA-1.5 rows, by visual tokens kept: the arguments each ran with (mmtok() defaults otherwise).
PRESETS = {64: {"tokens": 64, "alpha": 0.5, "text_temperature": 0.02, "vision_temperature": 0.2},
           128: {"tokens": 128, "alpha": 0.5, "text_temperature": 0.02, "vision_temperature": 0.2},
           192: {"tokens": 192, "alpha": 0.5, "text_temperature": 0.02, "vision_temperature": 0.2}}

# mmtok/core/text_processor.py @ d1522cd: NON_VISUAL_WORDS, WORD_REGEX, PROMPT_1, PROMPT_2
NON_VISUAL_WORDS = frozenset({
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "have", "has", "had", "do", "does", "did",
    "it", "they", "he", "she", "we", "you", "i", "what", "where", "when", "why", "how", "who", "which",
    "and", "or", "but", "so", "if", "then", "question", "answer",
    "to", "for", "with", "by", "from", "at", "into", "onto", "upon"})
WORD = re.compile(r"\b\w+\b")
FORMAT_PROMPTS = ("Answer the question using a single word or phrase.",
                  "Answer with the option's letter from the given choices directly.")
DEFAULT_QUESTION = "What do you see in this image?"  # clip_encoder_mmtok.py: when no question is found


def keywords(question: str) -> str:
    """The reference's `extract_keywords_simple`: format prompts removed, stop words dropped, words joined by
    spaces; the whole text when every word is a stop word."""
    if not question:
        return ""
    for prompt in FORMAT_PROMPTS:
        question = question.replace(prompt, "")
    words = [w for w in WORD.findall(question) if w.lower() not in NON_VISUAL_WORDS]
    return " ".join(words) if words else question


def coverage_select(text: torch.Tensor, projected: torch.Tensor, clip: torch.Tensor, k: int, alpha: float,
                    text_temperature: float, vision_temperature: float,
                    exclude: list[int] | None = None) -> torch.Tensor:
    """Indices (k,), ascending, of the tokens greedy maximum coverage keeps for one image: `text` (m, H) question
    embeddings, `projected` (n, H) projector outputs, `clip` (n, C) its inputs; `exclude`: padding patches."""
    import torch

    def unit(x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-8)

    x, xc, z = unit(projected).float(), unit(clip).float(), unit(text).float()
    p, q = z @ x.T, xc @ xc.T  # (m, n), (n, n)
    m, n = p.shape
    p = torch.softmax(p * (1.0 / text_temperature), dim=1) / m
    q = torch.softmax(q * (1.0 / vision_temperature), dim=1) / n
    combined = torch.cat([p, q * alpha], dim=0)
    k = min(k, n)
    best = torch.zeros(combined.shape[0], dtype=combined.dtype, device=combined.device)
    mask = torch.zeros(n, dtype=combined.dtype, device=combined.device)
    if exclude and n - len(set(exclude)) >= k:
        mask[torch.tensor(sorted(set(exclude)), dtype=torch.long, device=mask.device)] = float("-inf")
    chosen = torch.empty(k, dtype=torch.long, device=combined.device)
    for i in range(k):
        gain = (combined - best.unsqueeze(1)).clamp_min_(0).sum(dim=0) + mask
        pick = torch.argmax(gain)
        chosen[i] = pick
        best = torch.maximum(best, combined[:, pick])
        mask[pick] = float("-inf")
    return chosen.sort().values


@register
class MMTok(TokenMethod):
    """Keep the `tokens` projector outputs that best cover the question's keywords and the image (MMTok)."""

    name = "mmtok"
    text_conditioned = True
    reads_question = True
    after_projector = True
    presets = PRESETS
    summary = "MMTok: greedy coverage of the question's keywords and the image, after the projector"
    params = (Param("tokens", 64, int, "visual tokens kept (published: 64, 128, 192)", minimum=1),
              Param("alpha", 0.5, float, "weight of the image's self-coverage", minimum=0.0),
              Param("text_temperature", 0.02, float, "softmax temperature of question-token coverage", minimum=1e-6),
              Param("vision_temperature", 0.2, float, "softmax temperature of the image's self-coverage",
                    minimum=1e-6))

    def check(self) -> None:
        """`tokens` must not exceed the patches there are."""
        n = self.shape.grid ** 2
        if self.args["tokens"] > n:
            raise StfBenchError(f"mmtok: tokens={self.args['tokens']} is more than the {n} patches there are; "
                                f"valid: tokens in [1, {n}]")

    def tokens_out(self, tokens_in: int) -> int:
        """Exactly `tokens` (all of them when there are no more)."""
        return min(self.args["tokens"], tokens_in)

    @classmethod
    def question_words(cls, question: str) -> list[str]:
        """The question's keywords (`keywords`), split on whitespace: each is tokenized alone, as the reference's
        `is_split_into_words=True` does; the reference's default question when there is none."""
        return keywords(question or DEFAULT_QUESTION).split()

    def reduce(self, features: torch.Tensor, ctx: VisionContext) -> torch.Tensor:
        """(B, N, H) projector outputs -> (B, tokens, H): the chosen ones, in spatial order."""
        import torch

        k = self.tokens_out(features.shape[1])
        if features.is_meta:  # FLOPs counting on the meta device: only the shape is known
            return features[:, :k]
        if ctx.question_embeds is None or ctx.features is None:
            raise StfBenchError("mmtok reads the question and the projector's inputs; the model gave neither")
        args = self.args
        rows = []
        for b in range(features.shape[0]):
            exclude = ctx.padding[b] if ctx.padding else None
            chosen = coverage_select(ctx.question_embeds[b], features[b], ctx.features[b], k, args["alpha"],
                                     args["text_temperature"], args["vision_temperature"], exclude)
            rows.append(features[b, chosen])
        return torch.stack(rows)
