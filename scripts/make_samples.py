#!/usr/bin/env python
"""Generate stf-bench's embedded sample datasets (the ten benchmarks, a few dozen rows each) into a directory.

    python scripts/make_samples.py            # into the cache `stf-bench run --data samples` reads
    python scripts/make_samples.py --out DIR  # anywhere; DIR can then be passed as `--data-dir DIR`

The layout, columns and dtypes are those of the real hub datasets (docs/protocols.md). The bytes are the same on
every run with the same Pillow/pyarrow; `--check` generates twice and compares.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

from stf_bench.data import samples


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every parquet file under root, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.parquet"))}


def main(argv: list[str] | None = None) -> int:
    """Write the samples, print one line per file (rows, bytes, sha256 prefix); exit 1 if --check finds a diff."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="target directory (default: the stf-bench sample cache)")
    parser.add_argument("--check", action="store_true", help="generate a second time and compare the bytes")
    args = parser.parse_args(argv)

    import pyarrow.parquet as pq

    if args.out is None:
        root = samples.ensure_samples()
    else:
        samples.write_samples(args.out)
        root = args.out
    digest = _digest(root)
    for rel, sha in digest.items():
        path = root / rel
        print(f"{rel:60s} {pq.read_metadata(path).num_rows:4d} rows {path.stat().st_size:8d} B  {sha[:12]}")
    print(f"{len(digest)} files, {sum((root / r).stat().st_size for r in digest)} bytes in {root}")
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            samples.write_samples(Path(tmp))
            again = _digest(Path(tmp))
        differ = [rel for rel in digest if again.get(rel) != digest[rel]]
        print("deterministic: identical bytes" if not differ else f"NOT deterministic: {differ}")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
