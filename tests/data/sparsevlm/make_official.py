"""Make `official.pt`: what SparseVLM's official code selects, recycles and keeps on fixed tensors.

Runs the authors' own code, Gumpest/SparseVLMs @ 91fb6d9 (`llava/model/language_model/score.py`: the whole module,
`attn_postprocess_rank`; `utils.py`: the whole module, `batch_index_select`, `cluster_and_merge`;
`modelling_sparse_llama.py`: the statements of `LlamaDynamicvitModel.forward` that choose the raters, lines
216-220, and that prune and recycle at a pruning layer, lines 237-293, cut out of the file and executed as they
are), from a directory outside the repository; only the outputs are committed (the official code is not).

A case is one prompt (B = 1, as the official code requires): `prefix` text tokens, `visual` image tokens, `text`
tokens after them, all (1, T, width) seeded random; four pruning layers in a row, each a stand-in layer whose
attention weights are softmax(causal(q k^T / sqrt(d))) over `heads` heads of the current sequence and whose
output is `hidden + tanh(hidden @ w_out)` (weights seeded, stored). The official noise of `cluster_and_merge` is
drawn from torch's global generator seeded with `SEED` once before the first layer (the test's generator seeded
alike gives the same draws). Stored per case: the inputs (under the first case of that shape: the three published settings share one prompt), the raters, and per layer the kept visual indices, the
rank branch taken (`s_flag`), the visual count after it and the visual part of the sequence after it.

The commands that made the committed file (2026-12-05):

    mkdir -p /tmp/svlm-official
    for f in score.py utils.py modelling_sparse_llama.py; do
        git --git-dir=<SparseVLMs git dir> show 91fb6d9:llava/model/language_model/$f > /tmp/svlm-official/$f; done
    .venv/bin/python -m pip install --target /tmp/svlm-site einops   # utils.py imports einops
    # from the repository root
    PYTHONPATH=/tmp/svlm-site .venv/bin/python tests/data/sparsevlm/make_official.py /tmp/svlm-official
"""

from __future__ import annotations

import argparse
import math
import runpy
import textwrap
from pathlib import Path

import torch

HERE = Path(__file__).parent
SEED = 91
HEADS, HEAD_DIM, WIDTH = 4, 4, 16  # the stand-in layer: WIDTH = HEADS * HEAD_DIM
# (name, prefix, visual, text, scale, bias): the three published settings on a LLaVA-sized image, and a small
# image where the rank reaches the visual count (nothing pruned) or the cap `visual - 1` applies
CASES = [("s192", 5, 576, 40, 13.5, 0.0), ("s128", 5, 576, 40, 9.0, 6.0), ("s64", 5, 576, 40, 0.8, 0.0),
         ("small", 3, 24, 30, 13.5, 0.0), ("few", 3, 6, 30, 9.0, 6.0)]
LAYERS = 4
RATERS = (216, 220, "v_t = hidden_states[:, v_token_start: text_token_start, :]")
PRUNE = (237, 293, "pred_score_vis, s_flag, relation_vis_text = attn_postprocess_rank(")


def _cut(lines: list[str], where: tuple[int, int, str]):
    """Lines first..last (1-based) of the official file, dedented and compiled; the first must be the one named."""
    first, last, text = where
    if lines[first - 1].strip() != text.strip() and not lines[first - 1].strip().startswith(text.strip()):
        raise SystemExit(f"line {first} is not {text!r}: another version of modelling_sparse_llama.py?")
    return compile(textwrap.dedent("".join(lines[first - 1:last])), f"modelling_sparse_llama.py:{first}", "exec")


def attention(hidden: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor) -> torch.Tensor:
    """(1, heads, T, T) causal softmax attention of the stand-in layer (the test computes it the same way)."""
    t = hidden.shape[1]
    q = (hidden @ wq).view(1, t, HEADS, HEAD_DIM).transpose(1, 2)
    k = (hidden @ wk).view(1, t, HEADS, HEAD_DIM).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(HEAD_DIM)
    future = torch.ones(t, t, dtype=torch.bool).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(-1)


def main() -> None:
    """Run the official statements on seeded tensors; write official.pt beside this file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("official", type=Path, help="directory with score.py, utils.py, modelling_sparse_llama.py")
    args = parser.parse_args()
    score, utils = (runpy.run_path(str(args.official / f"{name}.py")) for name in ("score", "utils"))
    lines = (args.official / "modelling_sparse_llama.py").read_text().splitlines(keepends=True)
    raters_code, prune_code = _cut(lines, RATERS), _cut(lines, PRUNE)
    generator = torch.Generator().manual_seed(27)
    out: dict[str, torch.Tensor] = {}
    inputs: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, prefix, visual, text, scale, bias in CASES:
        shape = (prefix, visual, text)
        if shape not in inputs:  # one prompt for the three published settings
            inputs[shape] = (torch.randn(1, prefix + visual + text, WIDTH, generator=generator),
                             torch.randn(LAYERS, 3, WIDTH, WIDTH, generator=generator))
            out[f"{name}.embeds"], out[f"{name}.weights"] = inputs[shape]
        embeds, weights = inputs[shape]
        ns = {"torch": torch, "hidden_states": embeds, "v_token_start": prefix, "text_token_start": prefix + visual,
              "image_shape": visual, "pre_prompt_length_list": [prefix], "B": 1, "scale": scale, "bias": bias,
              "attn_postprocess_rank": score["attn_postprocess_rank"], "batch_index_select": utils["batch_index_select"],
              "cluster_and_merge": utils["cluster_and_merge"]}
        exec(raters_code, ns)
        out[f"{name}.raters"] = ns["t_token_idx"][1]
        ns["v_token_num"] = visual
        hidden = embeds
        torch.manual_seed(SEED)
        for layer in range(LAYERS):
            wq, wk, wo = weights[layer]
            ns["attn_logits"] = attention(hidden, wq, wk)
            ns["layer_outputs"] = (hidden + torch.tanh(hidden @ wo), None)
            ns["position_ids"] = torch.arange(hidden.shape[1])[None]
            ns["hidden_states"] = hidden
            exec(prune_code, ns)
            hidden = ns["layer_outputs"][0]
            v_num = int(ns["v_token_num"])
            out[f"{name}.{layer}.kept"] = torch.nonzero(ns["pred_score_vis"][0])[:, 0]
            out[f"{name}.{layer}.pruned"] = torch.tensor(bool(ns["s_flag"]))
            out[f"{name}.{layer}.visual"] = torch.tensor(v_num)
            out[f"{name}.{layer}.tokens"] = hidden[0, prefix:prefix + v_num].clone()
            if ns["position_ids"].shape[1] != hidden.shape[1]:
                raise SystemExit(f"{name}: position ids and sequence lengths differ after layer {layer}")
    torch.save(out, HERE / "official.pt")


if __name__ == "__main__":
    main()
