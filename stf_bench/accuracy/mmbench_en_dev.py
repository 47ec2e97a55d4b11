"""MMBench-EN dev (circular copies included): its declaration, the llava protocol's prompt (English
suffix) and data; circular scoring, bootstrap and the rest are MMBench's (`stf_bench.accuracy.mmbench`)."""

from __future__ import annotations

from stf_bench.accuracy import mmbench
from stf_bench.accuracy.declaration import Benchmark, Source
from stf_bench.accuracy.mmbench import bootstrap_units, local_process_docs  # noqa: F401  (this benchmark's hooks)
from stf_bench.accuracy.rules import MC as SUFFIX
from stf_bench.accuracy.sampling import SampleFiles

BENCHMARK = Benchmark(
    "mmbench_en_dev", "MMB", Source("lmms-lab-encoder/MMBench", "MMBench", "en", "dev"),
    (mmbench.CIRCULAR,), (mmbench.LMMS_CIRCULAR,), "mmbench", tolerance=1.0, paper8=True, aliases=("mmbench_en_dev_static",),
    position=5, module=__name__, columns=mmbench.COLUMNS,
    scorer_version="2")  # 2: VLMEvalKit's can_infer (issue 12)


def doc_to_text(doc: dict) -> str:
    """MMBench-EN: hint, question, options, English MC suffix."""
    return mmbench.prompt(doc, SUFFIX)


def task_overrides(protocol: str, judge: bool) -> dict:
    """MMBench's scoring choices under `protocol` (`mmbench.task_overrides`)."""
    return mmbench.task_overrides(BENCHMARK.name, protocol, judge)


def sample_files() -> SampleFiles:
    """MMBench's sample rows in English."""
    return mmbench.sample_files(BENCHMARK.source, "en")
