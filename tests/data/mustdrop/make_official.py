"""Make `official.pt`: what MustDrop's official code computes on fixed tensors.

Runs the authors' own code, liuting20/MustDrop @ 909afa5, read from a checkout outside the repository; only the
inputs (seeded, stored so that the test needs no random generator) and outputs are committed, not the official code:

- `conditional_pooling` + `merge_wavg` (`llava/model/multimodal_encoder/local_merge.py`), imported as a module, one
  image at a time (the official evaluation's batch of 1), window 3 x 3 and threshold 0.8 as `clip_encoder.py` calls
  them; one change to run on a CPU: `torch.tensor(threshold).cuda(sims.device)` becomes `.to(sims.device)`;
- the key set (`llava/model/multimodal_encoder/clip_encoder.py`, `custom_forward`, the `if idx==23:` block that
  computes `index`), its lines executed as they stand, on the attention weights of a seeded query/key pair;
- `dual_attention_filter` (`llava/model/language_model/modelling_sparse_llama.py`), its source executed as a plain
  function, and the three lines of `LlamaDynamicvitModel.forward` that add the key set, executed as they stand, with
  each published (global_thr, individual_thr).

The commands that made the committed file (2026-12-05), torch 2.13.0+cpu and einops in a scratch environment:

    python3.11 -m venv /tmp/md-venv
    /tmp/md-venv/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl einops numpy
    mkdir -p /tmp/md-official && cd /tmp/md-official
    for f in llava/model/multimodal_encoder/local_merge.py llava/model/multimodal_encoder/clip_encoder.py \\
             llava/model/language_model/modelling_sparse_llama.py; do
        git --git-dir=<MustDrop git dir> show 909afa5:$f > $(basename $f); done
    # from the repository root
    /tmp/md-venv/bin/python tests/data/mustdrop/make_official.py /tmp/md-official
"""

from __future__ import annotations

import argparse
import math
import textwrap
import types
from pathlib import Path

import torch

HERE = Path(__file__).parent
GRID, WIDTH = 24, 8
# (global_thr, individual_thr) of the README's 192 / 128 / 64-token scripts
THRESHOLDS = {"t192": (0.001, 0.001), "t128": (0.0012, 0.001), "t64": (0.011, 0.01)}
KEY_SET_UNION = """vis_indices = torch.cat((vis_indices, key_set))  # 先拼接
                vis_indices = torch.unique(vis_indices)  # 去重
                key_set = torch.nonzero(torch.isin(vis_indices, key_set)).squeeze() # 更新进行prune后的key_set索引"""


def _hidden(generator: torch.Generator, similar_windows: list[int]) -> torch.Tensor:
    """(1 + G*G, C) CLIP-like hidden states; the 3 x 3 windows listed are made of nearly equal tokens."""
    hidden = torch.randn(1 + GRID * GRID, WIDTH, generator=generator)
    side = GRID // 3
    for w in similar_windows:
        row, col = divmod(w, side)
        centre = torch.randn(WIDTH, generator=generator)
        for dr in range(3):
            for dc in range(3):
                spread = 0.05 + 0.3 * (w % 3)  # some windows score below 0.8
                hidden[1 + (3 * row + dr) * GRID + 3 * col + dc] = centre + spread * torch.randn(
                    WIDTH, generator=generator)
    return hidden


def _block(source: str, start: str, end: str) -> str:
    """The lines of `source` from the one holding `start` up to (not including) the first holding `end`."""
    lines = source.splitlines()
    first = next(i for i, line in enumerate(lines) if start in line)
    last = next(i for i in range(first + 1, len(lines)) if end in lines[i])
    return textwrap.dedent("\n".join(lines[first:last]))


def main() -> None:
    """Run the official functions on seeded tensors; write official.pt beside this file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("official", type=Path, help="directory with the three official files")
    args = parser.parse_args()
    merge_source = (args.official / "local_merge.py").read_text()
    assert merge_source.count(".cuda(sims.device)") == 1
    local_merge = types.ModuleType("local_merge")
    exec(compile(merge_source.replace(".cuda(sims.device)", ".to(sims.device)"), "local_merge.py", "exec"),
         local_merge.__dict__)
    clip_source = (args.official / "clip_encoder.py").read_text()
    key_lines = _block(clip_source, "B, N, C = hidden_states.shape", "if idx == 0:")
    llama_source = (args.official / "modelling_sparse_llama.py").read_text()
    filter_source = _block(llama_source, "def dual_attention_filter", "class LlamaDynamicvitSdpaAttention")
    assert KEY_SET_UNION in llama_source
    namespace = {"torch": torch}
    exec(filter_source, namespace)
    dual_attention_filter = namespace["dual_attention_filter"]

    generator = torch.Generator().manual_seed(27)
    out: dict = {"merge": [], "key_set": [], "filter": []}
    for similar in ([0, 1, 2, 3, 9, 10, 11, 20, 33, 40, 41, 42, 63], [5, 6], list(range(64))):
        hidden = _hidden(generator, similar)
        merge = local_merge.conditional_pooling(hidden[None], 0.8, (3, 3))
        merged, _ = local_merge.merge_wavg(merge, hidden[None], None)
        out["merge"].append({"hidden": hidden, "merged": merged[0]})
        # the key set on the merged tokens: attention of a seeded query/key pair (2 heads), `attn` as the block gives
        n = merged.shape[1]
        q, k = torch.randn(2, n, 4, generator=generator), torch.randn(2, n, 4, generator=generator)
        attn = (q @ k.transpose(-1, -2) / 2).softmax(-1)[None]
        scope = {"attn": attn, "hidden_states": merged, "self": types.SimpleNamespace(), "math": math,
                 "torch": torch, "layer_outputs": (merged, attn)}
        exec(key_lines, scope)
        out["key_set"].append({"q": q, "k": k, "index": scope["index"][0]})
    for name, (global_thr, individual_thr) in THRESHOLDS.items():
        for case in range(2):
            v_start, img_seq, text_seq = 5, 60 - 20 * case, 12
            total = v_start + img_seq + text_seq
            scores = torch.randn(1, 4, total, total, generator=generator) * (1.0 + case)
            # most visual tokens get little attention, a few a lot: some fall below the thresholds, some do not
            scores[..., v_start:v_start + img_seq] -= 12 * torch.rand(img_seq, generator=generator)
            scores = scores.masked_fill(torch.ones(total, total, dtype=torch.bool).triu(1), float("-inf"))
            attn = scores.softmax(-1)
            key_set = torch.randperm(img_seq, generator=generator)[:4 + case]
            vis_indices, _ = dual_attention_filter(None, attn, v_start, img_seq, global_thr, individual_thr)
            before = vis_indices
            scope = {"torch": torch, "vis_indices": vis_indices, "key_set": key_set}
            exec(textwrap.dedent("                " + KEY_SET_UNION), scope)
            seen = attn[0, :, v_start + img_seq:, v_start:v_start + img_seq]  # all the filter reads
            out["filter"].append({"name": f"{name}_{case}", "attention": seen.clone(), "img_seq": img_seq,
                                  "global_thr": global_thr, "individual_thr": individual_thr, "keys": key_set,
                                  "filtered": before, "kept": scope["vis_indices"], "new_keys": scope["key_set"]})
    torch.save(out, HERE / "official.pt")
    for entry in out["merge"]:
        print("merged tokens:", entry["merged"].shape[0] - 1)
    for entry in out["filter"]:
        print(entry["name"], "kept", len(entry["kept"]), "of", entry["img_seq"], "filtered", len(entry["filtered"]))


if __name__ == "__main__":
    main()
