"""MMBench-CN dev (circular copies included): its declaration, the llava protocol's prompt (Chinese
suffix) and data; circular scoring, bootstrap and the rest are MMBench's (`stf_bench.accuracy.mmbench`)."""

from __future__ import annotations

from stf_bench.accuracy import mmbench
from stf_bench.accuracy.declaration import Benchmark, Source
from stf_bench.accuracy.mmbench import bootstrap_units, local_process_docs  # noqa: F401  (this benchmark's hooks)
from stf_bench.accuracy.sampling import SampleFiles

BENCHMARK = Benchmark(
    "mmbench_cn_dev", "MMB^CN", Source("lmms-lab-encoder/MMBench", "MMBench", "cn", "dev"),
    (mmbench.CIRCULAR,), (mmbench.LMMS_CIRCULAR,), "mmbench", tolerance=1.0, paper8=True,
    position=6, module=__name__, columns=mmbench.COLUMNS,
    scorer_version="2")  # 2: VLMEvalKit's can_infer (issue 12)


SUFFIX = "\n请直接回答选项字母。"


def doc_to_text(doc: dict) -> str:
    """MMBench-CN: hint, question, options, Chinese MC suffix."""
    return mmbench.prompt(doc, SUFFIX)


def task_overrides(protocol: str, judge: bool) -> dict:
    """MMBench's scoring choices under `protocol` (`mmbench.task_overrides`)."""
    return mmbench.task_overrides(BENCHMARK.name, protocol, judge)


def sample_files() -> SampleFiles:
    """MMBench's sample rows in Chinese."""
    return mmbench.sample_files(BENCHMARK.source, "cn")
