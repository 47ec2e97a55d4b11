"""Writing a file whole or not at all: one helper for the report's tables and the GPU benchmark's step records.

(`stf_bench.run.runner.write_files_atomically` writes several files of one run, fsynced and renamed together.)
"""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through a temp file beside it renamed into place, so that a process killed
    mid-write leaves the previous version (or nothing), never half a file; a failed write removes the temp file.
    Returns `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
