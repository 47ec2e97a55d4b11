"""Benchmark: how many greedy answers change when a model is evaluated in bfloat16 instead of float32.

Each tiny preset is saved once in float32 (`save_pretrained`), then evaluated from that checkpoint by the adapter
that `stf-bench run` uses, in float32 and in bfloat16 (the weights cast on loading, as an evaluation of a real
checkpoint in bf16 does), on the generate_until requests lmms-eval builds for the embedded samples of the ten tasks
(llava protocol). Answers are compared after `strip()`, per task. The tiny presets' weights are a fixed-seed draw,
so their logits are close together and bf16's rounding flips more argmaxes than a trained model's would: the count
bounds what bf16 changes on the code path, not on a trained 7B.

    .venv/bin/python benchmarks/precision.py                      # CPU (bf16 on CPU is slow but exact to define)
    .venv/bin/python benchmarks/precision.py --device cuda --presets llava-tiny,stf-tiny
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adapter_throughput import build_requests, positive, timed  # noqa: E402  (benchmarks/adapter_throughput.py)

DTYPES = ("float32", "bfloat16")


def compare_precision(presets: list[str], device: str, tasks: str, limit: int, batch_size: int) -> Iterator[dict]:
    """For each preset in turn: requests, answers changed (in all and per task) and a few examples, yielded as soon
    as that preset is done."""
    from stf_bench import load_model
    from stf_bench.adapter.lmms_model import StfBenchLmms

    datasets, requests = build_requests(tasks, limit)
    for preset in presets:
        answers, loaded = {}, {}
        with tempfile.TemporaryDirectory() as tmp:
            model, processor = load_model(preset, dtype="float32")
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
            del model
            for dtype in DTYPES:
                lm = StfBenchLmms(pretrained=tmp, device=device, dtype=dtype, batch_size=batch_size)
                lm.show_progress = False
                lm.task_dict = datasets
                answers[dtype], _ = timed(lm, requests)
                loaded[dtype] = str(next(lm.model.parameters()).dtype).removeprefix("torch.")
                del lm
                gc.collect()
        pairs = list(zip(answers["float32"], answers["bfloat16"]))
        changed = [i for i, (a, b) in enumerate(pairs) if a.strip() != b.strip()]
        per_task = Counter(requests[i].task_name for i in changed)
        yield {"preset": preset, "loaded_as": loaded, "requests": len(requests), "changed": len(changed),
               "changed_fraction": len(changed) / len(requests),
               "per_task": {t: {"requests": sum(r.task_name == t for r in requests), "changed": per_task.get(t, 0)}
                            for t in sorted({r.task_name for r in requests})},
               "examples": [{"task": requests[i].task_name, "float32": pairs[i][0], "bfloat16": pairs[i][1]}
                            for i in changed[:3]]}


def markdown_row(result: dict) -> str:
    """One preset's line of the Markdown table."""
    worst = sorted(result["per_task"].items(), key=lambda kv: -kv[1]["changed"])[:3]
    tasks = ", ".join(f"{t} {v['changed']}/{v['requests']}" for t, v in worst if v["changed"]) or "none"
    return (f"| {result['preset']} | {result['requests']} | {result['changed']} ({result['changed_fraction']:.1%}) | "
            f"{tasks} |")


HEADER = ("| preset (saved in float32) | requests | greedy answers changed in bfloat16 | most changed tasks |\n"
          "|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    """Compare, print the Markdown table (JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="llava-tiny,stf-tiny", help="comma list of tiny presets")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tasks", default="all")
    parser.add_argument("--limit", type=positive, default=1000, help="rows per task (default: all samples)")
    parser.add_argument("--batch-size", type=positive, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = []
    if not args.json:
        print(HEADER)
    for result in compare_precision(args.presets.split(","), args.device, args.tasks, args.limit, args.batch_size):
        results.append(result)
        if not args.json:
            print(markdown_row(result), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
