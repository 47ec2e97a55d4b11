"""Report tests: a store built from real lmms-eval output (tests/store/lmms_run.py), plus FLOPs/latency records."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# the lmms-eval fixture lives beside the store tests; one module object, so the output is produced once per process
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
import lmms_run  # noqa: E402

lmms_out = lmms_run.lmms_out  # session fixture: lmms-eval output of two tiny models
# Test modules import it from lmms_run, never `from conftest import ...`: the name `conftest` is whichever conftest
# pytest loaded last (tests/benchmarks' one when both folders are named on the command line).
results_file = lmms_run.results_file


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "results.sqlite"


@pytest.fixture
def filled_store(db_path, lmms_out):
    """oracle-b as ingested from its folder; oracle-a's files recorded as the tiny STF preset (to test placement by
    preset); FLOPs and latency rows as `stf-bench flops`/`latency` write them."""
    from stf_bench.store.db import ingest_paths, open_store

    with open_store(db_path) as store:
        ingest_paths(store, [lmms_out / "oracle-b"])
        store.record_lmms_eval(results_file(lmms_out, "oracle-a"), model="stf-tiny", model_args="data=hub",
                               protocol="llava", checkpoint_fingerprint="sha256:0123456789abcdef")
        store.record_flops({"model": "stf-tiny", "convention": "paper", "visual_tokens": 144, "tflops": 2.5e-5})
        store.record_flops({"model": "stf-7b", "convention": "paper", "visual_tokens": 144, "tflops": 1.876})
        store.record_flops({"model": "stf-7b (k=4,e=8)", "convention": "paper", "visual_tokens": 288,
                            "tflops": 3.774})
        store.record_flops({"model": "llava-1.5-7b", "convention": "prefill", "visual_tokens": 576, "tflops": 9.9})
        store.record_latency({"kind": "latency", "device": {"type": "cpu", "name": "test-cpu"}, "dtype": "float32",
                              "batch_size": 16, "baseline": "llava-tiny",
                              "models": {"llava-tiny": {"visual_tokens": 576, "ttft_per_sample_ms": {"mean": 8.0}},
                                         "stf-tiny": {"visual_tokens": 144, "ttft_per_sample_ms": {"mean": 2.0}}},
                              "speedup": 4.0})
        yield store
