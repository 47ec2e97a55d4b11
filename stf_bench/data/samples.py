"""Embedded sample data: a few dozen rows per benchmark, generated deterministically, in the real column schema.

`write_samples(root)` lays the datasets out exactly as `hf download --repo-type dataset ... --local-dir
root/<Folder>` lays out the real ones (same folder, config and split file names, same columns and dtypes, images
as `datasets.Image` {bytes, path} structs), so the embedded default and `--data-dir` share one code path. The rows
come from each benchmark module's `sample_files()` (`stf_bench.accuracy`): every image is drawn so that the
builder knows its answer, and an oracle answering `Benchmark.target(doc)` scores 100 (OCRBench: 1000).
`ensure_samples()` writes them once into a cache directory (atomically; safe with several processes) and reuses
them. Bump `stf_bench.accuracy.sampling.SAMPLES_VERSION` whenever a row or a drawing changes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from stf_bench.accuracy import BENCHMARKS, names
from stf_bench.accuracy.sampling import SAMPLES_VERSION, samples_dirname
from stf_bench.errors import StfBenchError

_MARKER = "SAMPLES_COMPLETE"


# ---------------------------------------------------------------- writing and caching


def write_samples(root: Path, benchmarks: tuple[str, ...] | None = None) -> list[Path]:
    """Write the sample parquet files under `root/<Folder>/...` (the hub layout); returns the files written."""
    import pyarrow.parquet as pq
    from datasets import Dataset, Features

    chosen = list(benchmarks or names())
    builders = {b: BENCHMARKS[b].hook("sample_files") for b in chosen}
    missing = [b for b, build in builders.items() if build is None]
    if missing:
        raise StfBenchError(f"no sample-data maker for benchmark {missing[0]!r}; define `sample_files()` in its "
                            f"module, {BENCHMARKS[missing[0]].module or '(none declared)'} (docs/protocols.md, "
                            f"'Adding a benchmark')")
    written = []
    for bench in chosen:
        folder = root / BENCHMARKS[bench].source.folder
        for rel, (features, rows) in builders[bench]().items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            feats = Features(features)
            columns = {name: [row[name] for row in rows] for name in feats}
            # the Arrow table carries the `huggingface` features metadata, as the hub's parquet files do
            pq.write_table(Dataset.from_dict(columns, features=feats).data.table, str(path))
            written.append(path)
    return written


def cache_root() -> Path:
    """Where generated data lives: $STF_BENCH_CACHE, else the user cache directory."""
    env = os.environ.get("STF_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("stf-bench"))


def ensure_samples(root: Path | None = None) -> Path:
    """The sample data directory, generated on first use; concurrent callers never see a half-written one."""
    return build_once((root or cache_root()) / samples_dirname(), write_samples, _MARKER,
                      f"stf-bench samples v{SAMPLES_VERSION}\n")


def build_once(target: Path, write: Callable[[Path], object], marker: str, marker_text: str) -> Path:
    """`target`, written by `write(folder)` into a staging folder and renamed into place with a `marker` file, unless
    already complete; concurrent callers never see a half-written one (the evaluation and training samples)."""
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        (staging / marker).write_text(marker_text)
        try:
            staging.rename(target)
        except OSError:  # another process finished first (target exists and is non-empty): use theirs
            if not (target / marker).exists():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
